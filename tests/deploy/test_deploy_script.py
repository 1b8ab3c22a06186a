"""ops/deploy.sh without hosts: shellcheck clean, strict mode, a dry run prints the plan in
deploy order (node 1, then the workers) and contacts nobody, bad arguments are refused.
The deploy itself is proven against three hosts in test_three_nodes.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "ops" / "deploy.sh"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean() -> None:
    done = subprocess.run(["shellcheck", str(DEPLOY), str(ROOT / "ops" / "entrypoint.sh")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "set -euo pipefail" in DEPLOY.read_text()


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # No SSH server anywhere: a dry run must not try (ssh is replaced by one that fails loudly).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ssh").write_text("#!/bin/sh\necho 'ssh was called' >&2\nexit 99\n")
    (bin_dir / "ssh").chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    return subprocess.run([str(DEPLOY), *args], capture_output=True, text=True, env=environment)


def inventory(tmp_path: Path) -> Path:
    for name in ("node1", "node2", "node3"):
        (tmp_path / f"{name}.env").write_text("POSTGRES_PASSWORD=x\n")
    path = tmp_path / "inventory"
    path.write_text(
        "# name role target env extra\n"
        f"node3 worker deploy@node3.example {tmp_path}/node3.env\n"
        f"node2 worker deploy@node2.example {tmp_path}/node2.env compose/replica.yml\n"
        f"node1 node1 deploy@node1.example {tmp_path}/node1.env\n"
    )
    return path


def test_dry_run_prints_the_plan_in_order_and_contacts_nobody(tmp_path: Path) -> None:
    done = run(tmp_path, "--inventory", str(inventory(tmp_path)), "--tag", "abc123", "--dry-run",
               IMAGE="registry.example.com/sendfleet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ssh was called" not in done.stderr
    # Node 1 first, then the workers in the inventory's order.
    assert out.index("node1 (") < out.index("node3 (") < out.index("node2 (")
    assert "registry.example.com/sendfleet:abc123" in out
    assert "compose/node1.yml" in out and "ops/postgres/primary.conf" in out
    assert "compose/replica.yml" in out and "ops/postgres/replica-init.sh" in out
    assert out.count("drain the running worker") == 2
    assert "wait up to 180s for health: api control" in out


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    assert "--tag TAG is required" in run(tmp_path, "--inventory", str(inventory(tmp_path))).stderr
    done = run(tmp_path, "--inventory", str(inventory(tmp_path)), "--tag", "a b", IMAGE="r/s")
    assert done.returncode != 0 and "not an image tag" in done.stderr
    done = run(tmp_path, "--inventory", str(tmp_path / "none"), "--tag", "t", IMAGE="r/s")
    assert done.returncode != 0 and "--inventory FILE is required" in done.stderr
    done = run(tmp_path, "--inventory", str(inventory(tmp_path)), "--tag", "t", "--only", "node9",
               IMAGE="r/s")  # fmt: skip
    assert done.returncode != 0 and "no node to deploy" in done.stderr
