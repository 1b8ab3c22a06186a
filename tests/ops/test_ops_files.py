"""The replica, failover and backup files checked by the tools that run here: shellcheck on
every script, Debian's docker-compose on compose/replica.yml (no Docker engine runs on this
machine; what the container runs is run natively by test_replica_failover.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "ops/failover.sh",
    "ops/backup.sh",
    "ops/restore.sh",
    "ops/backup_settings.sh",
    "ops/postgres/replica-init.sh",
    "ops/postgres/init-replication-user.sh",
]
REPLICA_ENV = {
    "PRIMARY_ADDR": "10.20.0.1",
    "PRIVATE_ADDR": "10.20.0.2",
    "REPLICATION_USER": "replicator",
    "REPLICATION_PASSWORD": "s3cret",
}


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose/replica.yml"), *args],
        cwd=ROOT / "compose",
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_shellcheck_clean(script: str) -> None:
    done = subprocess.run(
        ["shellcheck", "-x", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.endswith("_settings.sh")])
def test_script_stops_at_the_first_error(script: str) -> None:
    assert "\nset -euo pipefail\n" in (ROOT / script).read_text()


def test_replica_compose_file_is_valid() -> None:
    done = _compose("config", "-q", env=REPLICA_ENV)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("missing", sorted(REPLICA_ENV))
def test_replica_compose_file_requires_its_addresses_and_credentials(missing: str) -> None:
    env = {k: v for k, v in REPLICA_ENV.items() if k != missing}
    done = _compose("config", "-q", env=env)
    assert done.returncode != 0
    assert missing in done.stderr or "Missing mandatory value" in done.stderr


def test_replica_publishes_postgres_on_the_private_address_only() -> None:
    done = _compose("config", env=REPLICA_ENV)
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["postgres-replica"]
    # docker-compose 1.29 prints the short forms: host_ip:published:target/protocol.
    assert service["ports"] == ["10.20.0.2:5432:5432/tcp"]
    assert service["environment"]["PRIMARY_ADDR"] == "10.20.0.1"
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    for target, source in {
        "/etc/postgresql/replica-init.sh": ROOT / "ops/postgres/replica-init.sh",
        "/etc/postgresql/postgresql.conf": ROOT / "ops/postgres/primary.conf",
        "/etc/postgresql/pg_hba.conf": ROOT / "ops/postgres/pg_hba.conf",
    }.items():
        assert Path(mounted[target]) == source and source.exists()
    assert service["entrypoint"][-1] == "/etc/postgresql/replica-init.sh"
