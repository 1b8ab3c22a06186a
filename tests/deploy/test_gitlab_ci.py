""".gitlab-ci.yml: yamllint clean and shaped as issue 18 says: lint, test (PostgreSQL and
Redis services, `make test`), build (the commit's image and :latest), deploy (manual, main
only): node 1 first, then the workers; SSH key and host keys from CI variables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CI: dict[str, Any] = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
MAIN = '$CI_COMMIT_BRANCH == "main"'


def script(job: dict[str, Any]) -> str:
    base = CI.get(job.get("extends", ""), {})
    return "\n".join(base.get("before_script", []) + job.get("before_script", []) + job["script"])


def test_yamllint_strict() -> None:
    files = [".gitlab-ci.yml", "docker-compose.yml", "compose/"]
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stages_in_order() -> None:
    assert CI["stages"] == ["lint", "test", "build", "deploy"]
    assert CI["lint"]["stage"] == "lint" and "ruff check" in script(CI["lint"])


def test_test_job_runs_make_test_with_postgres_and_redis() -> None:
    job = CI["test"]
    assert job["stage"] == "test"
    images = [service["name"].split(":")[0] for service in job["services"]]
    assert images == ["postgres", "redis"]
    assert "make test" in job["script"]
    # The services answer where the suite looks for them, 127.0.0.1.
    text = script(job)
    assert "TCP-LISTEN:5432,bind=127.0.0.1" in text and "TCP:postgres:5432" in text
    assert "TCP-LISTEN:6379,bind=127.0.0.1" in text and "TCP:redis:6379" in text


def test_build_pushes_the_commit_and_latest() -> None:
    text = script(CI["build"])
    assert CI["build"]["stage"] == "build"
    assert 'docker push "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA"' in text
    assert 'docker push "$CI_REGISTRY_IMAGE:latest"' in text


def test_deploy_is_manual_on_main_node1_first_then_the_workers() -> None:
    node1, workers = CI["deploy:node1"], CI["deploy:workers"]
    for job in (node1, workers):
        assert CI[job["extends"]]["stage"] == "deploy"
        rules = job.get("rules", CI[job["extends"]]["rules"])
        assert all(MAIN in rule["if"] for rule in rules)
        assert "ops/deploy.sh" in script(job)
    assert node1["rules"] == [{"if": MAIN, "when": "manual"}]
    assert node1["needs"] == ["build"]
    assert workers["needs"] == ["deploy:node1"]
    assert "--only node1" in script(node1)
    assert "--only node2 --only node3" in script(workers)
    assert CI[".deploy"]["resource_group"] == "production"


def test_ssh_key_and_host_keys_come_from_ci_variables() -> None:
    text = script(CI["deploy:node1"])
    assert '"$SSH_PRIVATE_KEY"' in text and '"$SSH_KNOWN_HOSTS"' in text
    assert "StrictHostKeyChecking=yes" in text
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    for path in tracked.split():
        file = ROOT / path
        if file.is_file() and file.stat().st_size < 1_000_000:
            assert not re.search(
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----", file.read_text(errors="ignore")
            ), path
