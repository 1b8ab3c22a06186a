"""Three test hosts for the deploy proof: network namespaces joined by a bridge, each with
its own hostname, its own DEPLOY_DIR (a bind mount in its own mount namespace), an
/etc/hosts naming node 1's `postgres` and `redis` as Compose's network would, and an
OpenSSH server that lets a throwaway user in with a throwaway key.

Everything is torn down by close(): every process left in the namespaces, the sshd
servers, the namespaces, the bridge, the user. Needs root, iproute2 and openssh-server."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def unavailable_reason() -> str | None:
    """Why the cluster cannot be built here, or None."""
    if os.geteuid() != 0:
        return "the three-node deploy test needs root (network namespaces, sshd)"
    for tool in ("ip", "unshare", SSHD, "ssh", "ssh-keygen", "docker-compose", "initdb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (ops/dev/debs.txt)"
    probe = f"sfprobe{secrets.token_hex(3)}"
    try:
        run("ip", "netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"network namespaces are unavailable here: {exc.stderr.strip()}"
    run("ip", "netns", "del", probe)
    return None


@dataclass
class Node:
    name: str
    address: str
    netns: str
    home: Path  # what this node sees at the cluster's deploy_dir
    sshd: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    root: Path
    deploy_dir: Path
    user: str
    key: Path
    known_hosts: Path
    nodes: list[Node] = field(default_factory=list)
    bridge: str = ""
    gateway: str = ""  # the test's own address on the bridge (the deployer, test servers)
    created_user: bool = False

    @property
    def ssh_opts(self) -> str:
        return (
            f"-i {self.key} -o UserKnownHostsFile={self.known_hosts} "
            "-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR"
        )

    def target(self, node: Node) -> str:
        return f"{self.user}@{node.address}"

    def close(self) -> None:
        for node in self.nodes:
            # Every process in the namespace: app processes, databases, sshd and sessions.
            for _ in range(3):
                pids = subprocess.run(
                    ["ip", "netns", "pids", node.netns], capture_output=True, text=True
                ).stdout.split()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                if not pids:
                    break
                time.sleep(0.3)
            if node.sshd is not None:
                with contextlib.suppress(Exception):
                    node.sshd.kill()
                    node.sshd.wait(timeout=5)
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True)
            subprocess.run(["ip", "link", "del", f"{node.netns}h"], capture_output=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self.created_user:
            subprocess.run(["userdel", self.user], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def build_cluster(names: tuple[str, ...] = ("node1", "node2", "node3")) -> Cluster:
    suffix = secrets.token_hex(2)
    subnet = f"10.218.{int(suffix, 16) % 200 + 20}"
    # The nodes' user reads the releases and its own folders below: no 0700 parent.
    root = Path(tempfile.mkdtemp(prefix="sendfleet-deploy-", dir="/tmp"))
    root.chmod(0o755)
    user = f"sfdeploy{suffix}"
    cluster = Cluster(
        root=root,
        deploy_dir=root / "deploy",
        user=user,
        key=root / "deploy_key",
        known_hosts=root / "known_hosts",
        bridge=f"sfbr{suffix}",
        gateway=f"{subnet}.254",
    )
    try:
        _create_user(cluster)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(cluster.key))
        (root / "authorized_keys").write_text(Path(f"{cluster.key}.pub").read_text())
        (root / "authorized_keys").chmod(0o644)
        cluster.deploy_dir.mkdir()
        run("ip", "link", "add", cluster.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{subnet}.254/24", "dev", cluster.bridge)
        run("ip", "link", "set", cluster.bridge, "up")
        for index, name in enumerate(names, start=1):
            node = Node(name, f"{subnet}.{index}", f"sf{suffix}n{index}", root / "nodes" / name)
            cluster.nodes.append(node)
            _start_node(cluster, node, hosts=f"{subnet}.1")
        lines = []
        for node in cluster.nodes:
            public = (root / f"hostkey_{node.name}.pub").read_text().split()[:2]
            lines.append(f"{node.address} {' '.join(public)}\n")
        cluster.known_hosts.write_text("".join(lines))
        for node in cluster.nodes:
            _wait_for_ssh(cluster, node)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _create_user(cluster: Cluster) -> None:
    home = cluster.root / "home"
    # "*": no password can log in, yet the account is not locked (sshd refuses locked ones).
    run(
        "useradd",
        "--home-dir",
        str(home),
        "--create-home",
        "--shell",
        "/bin/bash",
        "--password",
        "*",
        cluster.user,
    )
    cluster.created_user = True
    home.chmod(0o755)


def _start_node(cluster: Cluster, node: Node, hosts: str) -> None:
    root = cluster.root
    node.home.mkdir(parents=True)
    shutil.chown(node.home, cluster.user)
    run("ip", "netns", "add", node.netns)
    run(
        "ip",
        "link",
        "add",
        f"{node.netns}h",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        node.netns,
    )
    run("ip", "link", "set", f"{node.netns}h", "master", cluster.bridge, "up")
    run("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
    run("ip", "-n", node.netns, "link", "set", "eth0", "up")
    run("ip", "-n", node.netns, "link", "set", "lo", "up")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / f"hostkey_{node.name}"))
    hosts_file = root / f"hosts_{node.name}"
    hosts_file.write_text(
        f"127.0.0.1 localhost\n{node.address} {node.name}\n{hosts} postgres redis\n"
    )
    config = root / f"sshd_{node.name}.conf"
    config.write_text(
        f"ListenAddress {node.address}\nPort 22\nHostKey {root}/hostkey_{node.name}\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd_{node.name}.pid\n"
        f"AllowUsers {cluster.user}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin no\nX11Forwarding no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    # Own hostname (Celery node names), own DEPLOY_DIR and /etc/hosts, then sshd in front.
    script = (
        f"hostname {node.name} && mount --bind {node.home} {cluster.deploy_dir} && "
        f"mount --bind {hosts_file} /etc/hosts && {_reachable_python(root, node)}"
        f"exec {SSHD} -D -e -f {config}"
    )
    node.sshd = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            node.netns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / f"sshd_{node.name}.log").open("w"),
    )


def _reachable_python(root: Path, node: Node) -> str:
    """Mounts that let the nodes' user run this interpreter when it lives in a folder only
    root may enter (pyenv under /root): that folder, in the node's mount namespace only,
    becomes an open one holding just the interpreter's installation."""
    home = Path(os.path.realpath(sys.executable)).parents[1]
    blocked = next((p for p in reversed(home.parents) if not os.stat(p).st_mode & 0o001), None)
    if blocked is None:
        return ""
    stash, cover = root / f"python_{node.name}", root / f"cover_{node.name}"
    stash.mkdir()
    (cover / home.relative_to(blocked)).mkdir(parents=True)
    for folder in [cover, *(cover / home.relative_to(blocked)).parents]:
        if folder.is_relative_to(cover):
            folder.chmod(0o755)
    return (
        f"mount --bind {home} {stash} && mount --bind {cover} {blocked} && "
        f"mount --bind {stash} {blocked / home.relative_to(blocked)} && "
    )


def _wait_for_ssh(cluster: Cluster, node: Node, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            [
                "ssh",
                *cluster.ssh_opts.split(),
                "-o",
                "BatchMode=yes",
                cluster.target(node),
                "hostname",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0 and done.stdout.strip() == node.name:
            return
        if time.monotonic() > deadline:
            log = (cluster.root / f"sshd_{node.name}.log").read_text()[-2000:]
            raise RuntimeError(f"sshd on {node.name} does not answer: {done.stderr}\n{log}")
        time.sleep(0.3)
