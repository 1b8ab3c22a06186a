"""The three-node deploy for real: ops/deploy.sh over SSH to three hosts (network
namespaces, tests/deploy/cluster.py) whose COMPOSE_CMD runs the compose files' services as
native processes (tests/deploy/native_compose.py). Node 1 gets PostgreSQL, Redis, the
migrations, the API, the control worker and beat; nodes 2 and 3 a send worker each, pointed
at node 1 over the bridge. Then: the same deploy again changes nothing; a new tag drains
each worker before it stops (warm); a broken tag fails its health check on node 1 and the
node goes back to the previous tag, the workers untouched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.api.auth import create_key
from tests.deploy.cluster import Cluster, Node, build_cluster, unavailable_reason
from tests.smtp_server import ScriptedSMTPServer

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.test/sendfleet"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-test",
    "REDIS_PASSWORD": "redis-secret-test",
    "REPLICATION_PASSWORD": "replication-secret-test",
    "SECRET_KEY": "deploy-test-secret",
    "CREDENTIALS_KEY": "ZmRlcGxveS10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE=",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test",
}

RECIPIENTS = [f"reader{n}@example{n}.com" for n in range(4)]
SLOW_REPLY = 4.0  # seconds before the server answers each message's final dot

pytestmark = pytest.mark.skipif((reason := unavailable_reason()) is not None, reason=reason or "")


def build_release(releases: Path, tag: str, broken: bool = False) -> None:
    """What the image holds: the Dockerfile's COPY lines, applied to a folder."""
    target = releases / tag
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        *sources, dest = [word for word in line.split()[1:] if not word.startswith("--")]
        for source in sources:
            place = target / dest / Path(source).name if dest.endswith("/") else target / dest
            place.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, place, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / source, place)
    (target / ".venv").symlink_to(ROOT / ".venv")  # the image's /opt/venv
    if broken:
        with (target / "app" / "__init__.py").open("a") as module:
            module.write('\nraise RuntimeError("this release is broken on purpose")\n')
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    built = build_cluster()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def deploy(cluster: Cluster) -> Iterator[object]:
    releases = cluster.root / "releases"
    for tag in ("v1", "v2"):
        build_release(releases, tag)
    build_release(releases, "broken", broken=True)
    node1 = cluster.nodes[0]
    envs = cluster.root / "envs"
    envs.mkdir()
    common = {
        **SECRETS,
        "SENDFLEET_ENV": "production",
        "PUBLIC_BASE_URL": "https://sendfleet.test",
        "COMPANY_ADDRESS": "Sendfleet Test Ltd, 1 Test Street, 10115 Berlin",
        "LOG_FORMAT": "text",
        "PROMETHEUS_MULTIPROC_DIR": f"{cluster.deploy_dir}/prometheus",
        "API_BIND": "0.0.0.0:8000",
        "DRAIN_TIMEOUT_SECONDS": "120",
    }
    inventory = []
    for node in cluster.nodes:
        (node.home / "prometheus").mkdir()
        shutil.chown(node.home / "prometheus", cluster.user)
        values = {**common, "PRIVATE_ADDR": node.address, "NODE1_ADDR": node1.address}
        values["NODE_NAME"] = node.name
        env_file = envs / f"{node.name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        role = "node1" if node is node1 else "worker"
        inventory.append(f"{node.name} {role} {cluster.target(node)} {env_file}\n")
    (cluster.root / "inventory").write_text("# name role target env\n" + "".join(inventory))
    runtime = (
        f"{sys.executable} {ROOT}/tests/deploy/native_compose.py "
        f"--state {cluster.deploy_dir}/native --releases {releases}"
    )
    env = {
        **os.environ,
        "IMAGE": IMAGE,
        "COMPOSE_CMD": runtime,
        "DEPLOY_DIR": str(cluster.deploy_dir),
        "HEALTH_TIMEOUT_SECONDS": "60",
        "SSH_OPTS": cluster.ssh_opts,
    }

    def run(tag: str, *extra: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            [
                ROOT / "ops" / "deploy.sh",
                "--inventory",
                cluster.root / "inventory",
                "--tag",
                tag,
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        print(f"deploy {tag} {' '.join(extra)}: {time.monotonic() - started:.1f}s")
        return done

    yield run


def start_campaign(node1: Node, dsn: str, smtp_port: int) -> int:
    """A running campaign on node 1 through its API, sending to the test's SMTP server."""
    engine = create_engine(dsn)
    with Session(engine) as session:
        _, key = create_key(session, "deploy test", is_admin=True)
        session.commit()
    engine.dispose()

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"http://{node1.address}:8000/api/v1{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)  # type: ignore[no-any-return]

    post("/accounts", {
        "name": "relay", "provider": "smtp", "email": "sender@sendfleet.test",
        "host": node1.address.rsplit(".", 1)[0] + ".254", "port": smtp_port,
        "security": "none", "warmup": False, "per_minute_limit": 60,
    })  # fmt: skip
    campaign = post("/campaigns", {
        "name": "during the deploy", "subject": "Hello", "body_text": "Hello {{ email }}",
        "recipients": [{"email": email} for email in RECIPIENTS],
    })  # fmt: skip
    post(f"/campaigns/{campaign['id']}/start", {})
    return int(campaign["id"])  # type: ignore[call-overload]


def wait_for_status(dsn: str, campaign: int, status: str, every: bool = False) -> None:
    deadline = time.monotonic() + 120
    while True:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM recipients WHERE campaign_id = %s", (campaign,))
            statuses = [row[0] for row in cur.fetchall()]
        if statuses and (all if every else any)(s == status for s in statuses):
            return
        assert time.monotonic() < deadline, f"recipients {statuses}, waiting for {status}"
        time.sleep(0.3)


def pids(node: Node) -> dict[str, int]:
    state = node.home / "native"
    return {p.stem: json.loads(p.read_text())["pid"] for p in state.glob("*.json")}


def images(node: Node) -> dict[str, str]:
    state = node.home / "native"
    return {p.stem: json.loads(p.read_text())["image"] for p in state.glob("*.json")}


def events(node: Node) -> str:
    return (node.home / "native" / "events.log").read_text()


def api_health(node: Node) -> dict[str, str]:
    with urllib.request.urlopen(f"http://{node.address}:8000/api/v1/health", timeout=5) as reply:
        return json.load(reply)  # type: ignore[no-any-return]


def explain(done: subprocess.CompletedProcess[str], cluster: Cluster) -> str:
    logs = []
    for node in cluster.nodes:
        for log in sorted((node.home / "native" / "logs").glob("*.log")):
            logs.append(f"--- {node.name} {log.name}\n{log.read_text(errors='replace')[-1500:]}")
    return f"{done.stdout}\n{done.stderr}\n" + "\n".join(logs)


@pytest.mark.timeout(900)
def test_three_node_deploy_then_again_then_upgrade_then_rollback(cluster: Cluster, deploy) -> None:  # type: ignore[no-untyped-def]
    node1, node2, node3 = cluster.nodes

    # Dry run: the plan, nothing on the nodes.
    plan = deploy("v1", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "dry run: nothing is changed" in plan.stdout
    assert (
        plan.stdout.index("node1 (") < plan.stdout.index("node2 (") < plan.stdout.index("node3 (")
    )
    assert not (node1.home / "releases").exists()

    # First deploy on fresh nodes: node 1 migrates a new database, everything healthy.
    first = deploy("v1")
    assert first.returncode == 0, explain(first, cluster)
    for node in cluster.nodes:
        assert f"deploy: {node.name}: healthy on {IMAGE}:v1" in first.stdout
    assert first.stdout.index("node1: healthy") < first.stdout.index("node2: release")
    assert first.stdout.index("node2: healthy") < first.stdout.index("node3: release")
    assert api_health(node1) == {"status": "ok", "database": "ok", "redis": "ok"}
    dsn = f"postgresql://sendfleet:{SECRETS['POSTGRES_PASSWORD']}@{node1.address}:5432/sendfleet"
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        heads = ScriptDirectory(str(ROOT / "app" / "migrations")).get_heads()
        assert [row[0] for row in cur.fetchall()] == heads
        # Made as node1.yml's POSTGRES_INITDB_ARGS say, not in the image's en_US.utf8.
        cur.execute(
            "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
        )
        assert cur.fetchone() == ("C", "C.UTF-8")
    assert set(pids(node1)) == {"postgres", "redis", "migrate", "api", "control", "beat"}
    assert set(pids(node2)) == set(pids(node3)) == {"worker"}
    # The workers on nodes 2 and 3 are Celery nodes of node 1's broker, by their names.
    assert "started worker" in events(node2) and "started worker" in events(node3)

    # The same deploy again: nothing is uploaded, stopped or started.
    before = {node.name: pids(node) for node in cluster.nodes}
    before_events = {node.name: events(node) for node in cluster.nodes}
    again = deploy("v1")
    assert again.returncode == 0, explain(again, cluster)
    for node in cluster.nodes:
        assert f"deploy: {node.name}: already runs release" in again.stdout
        assert "nothing to do" in again.stdout
        assert pids(node) == before[node.name]
        assert events(node) == before_events[node.name]

    # A new tag for the workers while a batch is being sent (each message's final reply
    # takes SLOW_REPLY seconds): each worker is drained, its batch finishes, it stops warm.
    with ScriptedSMTPServer(host=cluster.gateway) as smtp:
        smtp.delay_data_reply(SLOW_REPLY, times=len(RECIPIENTS))
        campaign = start_campaign(node1, dsn, smtp.port)
        wait_for_status(dsn, campaign, "sending")
        workers = deploy("v2", "--only", "node2", "--only", "node3")
        assert workers.returncode == 0, explain(workers, cluster)
        wait_for_status(dsn, campaign, "sent", every=True)
        received = sorted(r for message in smtp.received for r in message.recipients)
    assert received == sorted(RECIPIENTS)  # each once: nothing lost, nothing sent twice
    for node in (node2, node3):
        assert f"deploy: {node.name}: draining the worker of release" in workers.stdout
        assert re.search(r"worker pid \d+ stopped by SIGTERM within 1920s", events(node))
        assert images(node)["worker"] == f"{IMAGE}:v2"
    waited = re.findall(
        r"drain: send@node\d takes no new tasks; its (\d+) task\(s\) in flight finished after",
        workers.stdout,
    )
    assert waited and int(waited[0]) >= 1, workers.stdout
    assert workers.stdout.index("node3: healthy") > workers.stdout.index("node2: healthy")

    # Then node 1: its services are replaced, PostgreSQL and Redis stay up; the workers,
    # already on v2, are left alone.
    upgrade = deploy("v2")
    assert upgrade.returncode == 0, explain(upgrade, cluster)
    assert images(node1)["api"] == f"{IMAGE}:v2"
    assert pids(node1)["postgres"] == before["node1"]["postgres"]
    assert pids(node1)["redis"] == before["node1"]["redis"]
    assert "node2: already runs release" in upgrade.stdout

    # A broken tag: node 1 is not healthy, goes back to v2 and says so; the deploy stops
    # there and the workers keep v2.
    worker_pids = {node.name: pids(node) for node in (node2, node3)}
    broken = deploy("broken")
    assert broken.returncode != 0
    said = broken.stdout + broken.stderr
    assert f"node1: {IMAGE}:broken did NOT come up healthy: rolling back to v2" in said
    assert "node1: rolled back to v2, which is healthy; the deploy of broken stopped here" in said
    assert "node2: release" not in said
    assert api_health(node1)["status"] == "ok"
    assert images(node1)["api"] == f"{IMAGE}:v2"
    assert {node.name: pids(node) for node in (node2, node3)} == worker_pids
    # After the rollback, deploying v2 again is a no-op: the node is where it was.
    settled = deploy("v2")
    assert settled.returncode == 0, explain(settled, cluster)
    assert settled.stdout.count("nothing to do") == 3
