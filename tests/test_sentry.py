"""Sentry against a local stand-in of its ingestion endpoint (the DSN's host): an exception in
an API request and one in a task run by a real Celery worker each arrive as an event, and
neither envelope holds a recipient address, a subject or body, or a secret."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from pydantic import SecretStr

from app import observability
from tests import redis_urls
from tests.sentry_server import SentryStandIn
from worker.celery_app import celery_config

ROOT = Path(__file__).resolve().parents[1]
RECIPIENT = "jane.doe.private@customer-mail.example"
ACCOUNT_PASSWORD = "Acct-Passw0rd-q8Zr"
API_KEY_MARKER = "Bearer"
BODY = "Dear Jane, your confidential offer code is ZX-4471-SECRETBODY"
SUBJECT = "Private subject line 7731"


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    stand_in = SentryStandIn().start()
    yield stand_in
    stand_in.stop()


def _assert_clean(raw: bytes, *secrets: str) -> None:
    text = raw.decode("utf-8", "replace")
    assert "jane.doe.private" not in text
    for secret in secrets:
        assert secret not in text, secret
    for content in ("ZX-4471-SECRETBODY", SUBJECT):
        assert content not in text, content


@pytest.fixture
def sentry_app(settings, sentry, app) -> Iterator[object]:
    import sentry_sdk

    from app import create_app

    configured = settings.model_copy(update={"sentry_dsn": SecretStr(sentry.dsn())})
    application = create_app(configured)
    # As in production: an unhandled error becomes the JSON 500 (TESTING would re-raise it).
    application.config["PROPAGATE_EXCEPTIONS"] = False
    yield application
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # no DSN: the rest of the run reports nothing
    observability._initialised_dsn = None


def test_an_api_exception_arrives_without_addresses_bodies_or_secrets(
    sentry_app, sentry, settings, api_key, monkeypatch
):
    import sentry_sdk

    def explode(*args, **kwargs):
        password = ACCOUNT_PASSWORD  # noqa: F841 - a local the report must not carry
        logging.getLogger("app.services.campaigns").warning(
            "import.trouble", extra={"email": RECIPIENT, "password": ACCOUNT_PASSWORD}
        )
        raise RuntimeError(
            f"could not import <{RECIPIENT}> (marker-api-failure); "
            f"database {settings.database_url} secret_key={settings.secret_key.get_secret_value()}"
        )

    monkeypatch.setattr("app.api.campaigns.campaigns.create_campaign", explode)
    client = sentry_app.test_client()
    response = client.post(
        f"/api/v1/campaigns?notify={RECIPIENT}",
        json={
            "name": "n",
            "subject": SUBJECT,
            "body_text": BODY,
            "recipients": [{"email": RECIPIENT}],
        },
        headers={"Authorization": f"Bearer {api_key}", "Cookie": f"session={api_key}"},
    )
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal"
    sentry_sdk.flush(timeout=5)
    event = sentry.wait_for_event("marker-api-failure")
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "customer-mail.example" in str(event["exception"])  # the domain stays, for triage
    assert event["request"]["url"].endswith("/api/v1/campaigns")
    _assert_clean(
        sentry.raw(),
        api_key,
        ACCOUNT_PASSWORD,
        settings.secret_key.get_secret_value(),
        settings.credentials_key.get_secret_value(),
    )


def test_a_task_exception_in_a_real_worker_arrives_clean(
    app, settings_env, settings, sentry, tmp_path
):
    env = {
        **os.environ,
        **settings_env,
        "SENTRY_DSN": sentry.dsn(),
        "CELERY_BROKER_URL": redis_urls.BROKER_URL,
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "worker", "worker", "-I", "tests.sentry_tasks"),
            *("--pool", "prefork", "-c", "1", "-Q", "sendfleet.dispatch", "--loglevel", "INFO"),
            *("-n", f"sentry-{os.getpid()}@%h", "--without-gossip", "--without-mingle"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while b" ready." not in log_path.read_bytes():
            assert worker.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        client = Celery("sentry-test")
        client.config_from_object({**celery_config(settings), "broker_url": redis_urls.BROKER_URL})
        client.send_task(
            "sendfleet.test_sentry_failure",
            kwargs={"recipient": RECIPIENT, "password": ACCOUNT_PASSWORD, "body_text": BODY},
            queue="sendfleet.dispatch",
        )
        event = sentry.wait_for_event("marker-task-failure", timeout=60)
        assert event["exception"]["values"][-1]["type"] == "RuntimeError"
        assert "celery" in event.get("contexts", {}) or "celery-job" in event.get("extra", {})
        _assert_clean(sentry.raw(), ACCOUNT_PASSWORD, settings.secret_key.get_secret_value())
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
