"""docker-compose.yml and compose/*.yml, checked by Debian's docker-compose (`config -q`, no
engine needed) and read back resolved: the services, their commands (ops/entrypoint.sh
roles), Redis persistence, the private bindings of the three-node files, secrets only from
the env file."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from app.settings import Settings
from rotator.endpoint import endpoint_from_url
from tests.e2e.private_stores import PrivatePostgres, deployment_initdb_args

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "SECRET_KEY": "secret-key",
    "CREDENTIALS_KEY": "ZmRlcGxveS10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE=",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
    "REPLICATION_PASSWORD": "replication-secret",
    "COMPANY_ADDRESS": "Example Ltd, 1 Example Street, Berlin",
}
NODES = {
    "PRIVATE_ADDR": "10.0.0.2",
    "NODE1_ADDR": "10.0.0.1",
    "NODE_NAME": "node2",
    "SENDFLEET_IMAGE": "registry.example.com/sendfleet:abc123",
    "REPLICATION_USER": "replicator",
    "PRIMARY_ADDR": "10.0.0.1",
    "POSTFIX_HOSTNAME": "mx1.example.com",
    "POSTFIX_SENDER_DOMAINS": "example.com",
    "POSTFIX_MYNETWORKS": "10.0.0.0/24",
}
APP_ROLES = {"migrate", "api", "worker", "control", "beat"}

pytestmark = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed (debs.txt)"
)


def project(tmp_path: Path, values: dict[str, str]) -> Path:
    """A copy laid out as on a host: the compose files, ops/, and .env beside them."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    example = (ROOT / ".env.example").read_text()
    lines = [line for line in example.splitlines() if line.split("=")[0] not in values]
    lines += [f"{k}={v}" for k, v in values.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path


def compose(
    where: Path, *args: str, files: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", "-p", "sendfleet", "--env-file", str(where / ".env")]
    for file in files:
        command += ["-f", str(where / file)]
    return subprocess.run([*command, *args], cwd=where, capture_output=True, text=True, timeout=60)


def resolved(where: Path, *files: str, profile: str | None = None) -> dict[str, Any]:
    args = ("--profile", profile, "config") if profile else ("config",)
    done = compose(where, *args, files=files)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]  # type: ignore[no-any-return]


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for port in service.get("ports", []):
        host, number = str(port).split("/")[0].rsplit(":", 2)[:2]
        out.append((host, int(number)))
    return out


@pytest.mark.parametrize("profile", [None, "monitoring"])
def test_one_host_file_validates(tmp_path: Path, profile: str | None) -> None:
    where = project(tmp_path, SECRETS)
    args = ("--profile", profile, "config", "-q") if profile else ("config", "-q")
    done = compose(where, *args, files=("docker-compose.yml",))
    assert done.returncode == 0, done.stderr


def test_one_host_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    where = project(tmp_path, {})  # .env.example as it is: the secrets are empty
    done = compose(where, "config", "-q", files=("docker-compose.yml",))
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


def test_one_host_services(tmp_path: Path) -> None:
    services = resolved(project(tmp_path, SECRETS), "docker-compose.yml", profile="monitoring")
    assert set(services) == {
        "postgres", "redis", "migrate", "api", "worker", "control", "beat", "mailpit",
        "prometheus", "alertmanager", "grafana",
    }  # fmt: skip
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert_runs_the_shipped_postgres_configuration(services["postgres"], tmp_path)
    redis_command = services["redis"]["command"][-1]
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
                 '--requirepass "$$REDIS_PASSWORD"'):  # fmt: skip
        assert flag in redis_command
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "control", "beat"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    for name in APP_ROLES:
        assert services[name]["command"] == [name]
        assert services[name]["image"] == "sendfleet:latest"
    assert services["migrate"]["environment"]["FIRST_LOGIN_FILE"].startswith("/var/lib/sendfleet/")
    # Warm shutdown: SIGTERM, and longer than a send task may run (its soft limit plus the
    # hard minute).
    assert services["worker"]["stop_signal"] == "SIGTERM"
    limit = Settings.model_fields["send_task_time_limit_seconds"].default
    assert int(services["worker"]["stop_grace_period"].removesuffix("m")) * 60 > limit + 60
    # Every account sends to Mailpit until SANDBOX_SMTP_URL is set empty.
    sandbox = services["worker"]["environment"]["SANDBOX_SMTP_URL"]
    endpoint = endpoint_from_url(sandbox)
    assert (endpoint.host, endpoint.port) == ("mailpit", 1025)
    assert published(services["mailpit"]) == [("127.0.0.1", 8025)]
    assert services["worker"]["environment"]["DATABASE_URL"] == (
        "postgresql://sendfleet:pg-secret@postgres:5432/sendfleet"
    )
    # The api, published on loopback behind the host's TLS proxy, believes that one proxy's
    # X-Forwarded-For; its other settings are every app service's.
    assert services["api"]["environment"]["TRUSTED_PROXIES"] == "1"
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    assert api["DATABASE_URL"] == worker["DATABASE_URL"]
    assert "TRUSTED_PROXIES" not in services["worker"]["environment"]


def test_sandbox_can_be_turned_off_in_the_env_file(tmp_path: Path) -> None:
    services = resolved(
        project(tmp_path, {**SECRETS, "SANDBOX_SMTP_URL": ""}), "docker-compose.yml"
    )
    assert services["worker"]["environment"]["SANDBOX_SMTP_URL"] in ("", None)


def test_monitoring_services_mount_the_operations_files(tmp_path: Path) -> None:
    services = resolved(project(tmp_path, SECRETS), "docker-compose.yml", profile="monitoring")
    mounts = {
        name: {
            str(v).split(":")[0].removeprefix(str(tmp_path) + "/")
            for v in services[name]["volumes"]
        }
        for name in ("prometheus", "alertmanager", "grafana")
    }
    assert {"ops/prometheus/prometheus.yml", "ops/prometheus/rules"} <= mounts["prometheus"]
    assert {"ops/alertmanager/alertmanager.yml", "ops/alertmanager/run.sh"} <= mounts[
        "alertmanager"
    ]
    assert {"ops/grafana/provisioning", "ops/grafana/dashboards"} <= mounts["grafana"]
    for name in ("prometheus", "alertmanager", "grafana"):
        assert yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name][
            "profiles"
        ] == ["monitoring"]


@pytest.mark.parametrize("files", [("docker-compose.yml",), ("compose/node1.yml",)])
def test_alertmanager_takes_the_telegram_settings_of_the_env_file(
    tmp_path: Path, files: tuple[str, ...]
) -> None:
    telegram = {"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_CHAT_ID": "-100123"}
    where = project(tmp_path, {**SECRETS, **NODES, **telegram})
    alertmanager = resolved(where, *files, profile="monitoring")["alertmanager"]
    assert alertmanager["entrypoint"] == ["/bin/sh", "/etc/alertmanager/run.sh"]
    environment = alertmanager["environment"]
    assert {k: environment[k] for k in telegram} == telegram
    assert environment["TELEGRAM_API_BASE"] == "https://api.telegram.org"
    # Only what run.sh needs: no database or Redis password.
    assert set(environment) == {*telegram, "TELEGRAM_API_BASE", "ALERTMANAGER_RUN_DIR"}
    assert "env_file" not in alertmanager


@pytest.mark.parametrize(
    "files",
    [
        ("compose/node1.yml",),
        ("compose/worker.yml",),
        ("compose/worker.yml", "compose/replica.yml"),
        ("compose/postfix.yml",),
    ],
)
def test_node_files_validate(tmp_path: Path, files: tuple[str, ...]) -> None:
    where = project(tmp_path, {**SECRETS, **NODES})
    for args in (("config", "-q"), ("--profile", "monitoring", "config", "-q")):
        done = compose(where, *args, files=files)
        assert done.returncode == 0, done.stderr


def test_node1_binds_its_stores_to_the_private_address_only(tmp_path: Path) -> None:
    values = {**SECRETS, **NODES, "PRIVATE_ADDR": "10.0.0.1"}
    services = resolved(project(tmp_path, values), "compose/node1.yml", profile="monitoring")
    assert published(services["postgres"]) == [("10.0.0.1", 5432)]
    assert published(services["redis"]) == [("10.0.0.1", 6379)]
    for name, service in services.items():
        for host, _ in published(service):
            assert host in ("10.0.0.1", "127.0.0.1"), f"{name} publishes on {host}"
    assert {"migrate", "api", "control", "beat", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    assert "worker" not in services
    assert services["api"]["image"] == NODES["SENDFLEET_IMAGE"]
    assert services["api"]["environment"]["TRUSTED_PROXIES"] == "1"
    api, control = services["api"]["environment"], services["control"]["environment"]
    assert api["DATABASE_URL"] == control["DATABASE_URL"]
    assert_runs_the_shipped_postgres_configuration(services["postgres"], tmp_path)


def assert_runs_the_shipped_postgres_configuration(service: dict[str, Any], where: Path) -> None:
    """ops/postgres/primary.conf as the whole configuration, with its pg_hba.conf."""
    assert service["command"] == [
        "postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"
    ]  # fmt: skip
    mounted = {
        str(v).split(":")[1]: Path(str(v).split(":")[0]).resolve() for v in service["volumes"]
    }
    for target, name in {
        "/etc/postgresql/postgresql.conf": "primary.conf",
        "/etc/postgresql/pg_hba.conf": "pg_hba.conf",
    }.items():
        assert mounted[target] == (where / "ops/postgres" / name).resolve()


@pytest.mark.parametrize(
    "missing", ["PRIVATE_ADDR", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "SENDFLEET_IMAGE"]
)
def test_node1_requires_its_address_and_passwords(tmp_path: Path, missing: str) -> None:
    values = {k: v for k, v in {**SECRETS, **NODES}.items() if k != missing}
    done = compose(project(tmp_path, values), "config", "-q", files=("compose/node1.yml",))
    assert done.returncode != 0
    assert missing in done.stderr


def test_workers_point_at_node1(tmp_path: Path) -> None:
    services = resolved(project(tmp_path, {**SECRETS, **NODES}), "compose/worker.yml")
    assert set(services) == {"worker"}
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert worker["hostname"] == "node2"
    assert (
        worker["environment"]["DATABASE_URL"]
        == "postgresql://sendfleet:pg-secret@10.0.0.1:5432/sendfleet"
    )
    assert worker["environment"]["REDIS_URL"] == "redis://:redis-secret@10.0.0.1:6379/0"
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["stop_grace_period"] == "32m"
    assert "ports" not in worker


def api_graceful_timeout_default() -> int:
    """API_GRACEFUL_TIMEOUT's default, as ops/entrypoint.sh sets it."""
    found = re.search(
        r"^API_GRACEFUL_TIMEOUT=\$\{API_GRACEFUL_TIMEOUT:-(\d+)\}$",
        (ROOT / "ops" / "entrypoint.sh").read_text(),
        re.MULTILINE,
    )
    assert found, "ops/entrypoint.sh sets no API_GRACEFUL_TIMEOUT default"
    return int(found.group(1))


def seconds(duration: str) -> int:
    """A Compose duration ("130s", "2m10s", "32m") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    hours, minutes, secs = (int(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + secs


@pytest.mark.parametrize("file", ["docker-compose.yml", "compose/node1.yml"])
def test_the_api_is_given_longer_to_stop_than_its_requests_in_flight(
    tmp_path: Path, file: str
) -> None:
    """Docker's default is 10 s, then SIGKILL: an upload or import in flight at a deploy was
    cut off. The api's stop period outlasts gunicorn's graceful timeout, with room for the
    master to reap its workers."""
    services = resolved(project(tmp_path, {**SECRETS, **NODES}), file)
    api = services["api"]
    assert api["stop_signal"] == "SIGTERM"
    assert seconds(api["stop_grace_period"]) >= api_graceful_timeout_default() + 5


def test_every_new_cluster_sorts_bytewise_with_utf8_character_classes(tmp_path: Path) -> None:
    """The one-host file, node 1 and the GitLab job's service make their clusters alike,
    and initdb with those options makes what the app is tested on, with the "C"
    collation's fast comparisons: bytewise order (a UTF-8 string's code points), UTF-8
    case mapping."""
    (tmp_path / "one").mkdir()
    (tmp_path / "node1").mkdir()
    one_host = resolved(project(tmp_path / "one", SECRETS), "docker-compose.yml")
    node1 = resolved(project(tmp_path / "node1", {**SECRETS, **NODES}), "compose/node1.yml")
    job = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["test"]["variables"]
    args = one_host["postgres"]["environment"]["POSTGRES_INITDB_ARGS"]
    assert node1["postgres"]["environment"]["POSTGRES_INITDB_ARGS"] == args
    assert job["POSTGRES_INITDB_ARGS"] == args
    assert deployment_initdb_args() == shlex.split(args)

    cluster = PrivatePostgres(locale_args=deployment_initdb_args()).init()
    try:
        with psycopg2.connect(cluster.dsn()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT datcollate, datctype, pg_encoding_to_char(encoding) FROM pg_database "
                "WHERE datname = 'template1'"
            )
            assert cur.fetchone() == ("C", "C.UTF-8", "UTF8")
            cur.execute(
                "SELECT lower('ÜBER@MÜNCHEN.DE'), array_agg(v ORDER BY v) "
                "FROM unnest(ARRAY['b', 'B', 'ä', 'a', 'z']) v"
            )
            assert cur.fetchone() == ("über@münchen.de", ["B", "a", "b", "z", "ä"])
        conn.close()
    finally:
        cluster.destroy()


def test_no_secret_is_written_in_a_compose_file() -> None:
    secret_names = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN|AUTH)", re.I)
    for path in [ROOT / "docker-compose.yml", *sorted((ROOT / "compose").glob("*.yml"))]:
        for service in yaml.safe_load(path.read_text())["services"].values():
            environment = service.get("environment") or {}
            for name, value in environment.items():
                if secret_names.search(name):
                    assert str(value).startswith("${"), f"{path.name}: {name} = {value!r}"
