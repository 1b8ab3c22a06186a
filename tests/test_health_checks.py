"""Health checks against real SMTP servers (aiosmtpd, AUTH only over STARTTLS with a
self-signed certificate the accounts trust through SMTP_CA_FILE): results are stored and
shown; a paused account whose pause has run out returns to rotation only once its check
passes, and one that fails stays paused with the reason; the API runs a check now and
returns the transcript with the password masked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Event, HealthCheck
from tests.health_smtp import AuthSMTPServer, TlsFiles, closed_port, self_signed


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("health-tls"))


@pytest.fixture
def trusting(app: Any, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app's settings with SMTP_CA_FILE naming the test servers' certificate."""
    settings = app.extensions["settings"].model_copy(update={"smtp_ca_file": str(tls.cert)})
    monkeypatch.setitem(app.extensions, "settings", settings)
    return settings


@pytest.fixture
def server(tls: TlsFiles) -> Iterator[AuthSMTPServer]:
    with AuthSMTPServer("starttls", tls) as running:
        yield running


def _account(factory: Any, server: AuthSMTPServer, password: str | None = None,
             **values: Any) -> Account:  # fmt: skip
    return factory.create_account(
        host=server.host,
        port=server.port,
        security="starttls",
        username=server.username,
        password=password or server.password,
        **values,
    )


def _fresh(account_id: int) -> Account:
    db.session.expire_all()
    account = db.session.get(Account, account_id)
    assert account is not None
    return account


def _set_password(app: Any, account_id: int, password: str) -> None:
    from app.crypto import SecretBox

    box = SecretBox(app.extensions["settings"].credentials_key.get_secret_value())
    db.session.get(Account, account_id).secret_encrypted = box.encrypt(password)
    db.session.commit()


def _run(app: Any, job: str, now: datetime | None = None) -> Any:
    from worker.jobs import health

    with app.app_context():
        return getattr(health, job)(clock=(lambda: now) if now else None)


def test_every_account_is_checked_and_the_result_stored(app, factory, trusting, server):
    good = _account(factory, server)
    bad = _account(factory, server, password="wrong-password")
    down = factory.create_account(host="127.0.0.1", port=closed_port(), security="starttls",
                                  username="u", password="p")  # fmt: skip
    disabled = _account(factory, server, status="disabled")
    run = _run(app, "run_health_checks")
    assert run.checked == 3
    assert sorted(run.failed) == sorted([bad.id, down.id])
    assert _fresh(good.id).last_health_ok is True
    assert _fresh(good.id).last_health_check_at is not None
    assert _fresh(bad.id).last_health_ok is False
    assert _fresh(bad.id).last_health_error.startswith("535")
    assert "connect_failed" in _fresh(down.id).last_health_error
    assert _fresh(disabled.id).last_health_check_at is None
    history = {c.account_id: c for c in db.session.scalars(select(HealthCheck))}
    assert set(history) == {good.id, bad.id, down.id}
    assert history[bad.id].stage == "auth" and not history[bad.id].ok
    assert history[down.id].stage == "connect"
    # The failed ones are out of rotation by last_health_ok; active ones are not paused.
    assert _fresh(bad.id).status == "active"


def test_paused_account_returns_only_after_its_check_passes(app, factory, trusting, server):
    now = datetime.now(UTC)
    account = _account(factory, server, password="wrong-password", status="paused",
                       paused_until=now - timedelta(minutes=1), paused_by="failures",
                       paused_reason="3 consecutive failures", consecutive_failures=3)  # fmt: skip
    run = _run(app, "run_resume_checks", now)
    assert run.kept_paused == [account.id] and run.resumed == []
    held = _fresh(account.id)
    assert held.status == "paused"
    assert held.paused_by == "health"
    assert held.paused_reason.startswith("health check failed at auth: 535")
    assert held.paused_until == now + timedelta(seconds=trusting.health_check_interval_seconds)
    assert held.pause_details["previous_reason"] == "3 consecutive failures"
    assert held.pause_details["previous_by"] == "failures"

    # Not due again before the new paused_until, even with the password fixed meanwhile.
    _set_password(app, account.id, server.password)
    assert _run(app, "run_resume_checks", now + timedelta(minutes=5)).checked == 0
    assert _fresh(account.id).status == "paused"

    later = now + timedelta(seconds=trusting.health_check_interval_seconds + 1)
    run = _run(app, "run_resume_checks", later)
    assert run.resumed == [account.id]
    back = _fresh(account.id)
    assert back.status == "active"
    assert back.paused_until is None and back.paused_by is None and back.paused_reason is None
    assert back.consecutive_failures == 0
    assert back.last_health_ok is True
    resumed = db.session.scalars(
        select(Event).where(Event.type == "account_resumed", Event.account_id == account.id)
    ).all()
    assert [e.data["reason"] for e in resumed] == ["pause over and health check passed"]
    assert app.extensions["redis"].exists(f"sf:alert:account-resumed:{account.id}")


def test_pause_set_to_now_by_a_delisting_returns_through_the_check(app, factory, trusting,
                                                                    server):  # fmt: skip
    now = datetime.now(UTC)
    account = _account(factory, server, status="paused", paused_until=now, paused_by="blacklist",
                       paused_reason="listed on zen.spamhaus.org")  # fmt: skip
    waiting = _account(factory, server, status="paused", paused_until=now + timedelta(hours=1))
    by_hand = _account(factory, server, status="paused", paused_until=None,
                       paused_reason="paused by operator")  # fmt: skip
    run = _run(app, "run_resume_checks", now)
    assert run.resumed == [account.id]
    assert _fresh(account.id).status == "active"
    assert _fresh(waiting.id).status == "paused"
    assert _fresh(by_hand.id).status == "paused"
    # The full pass checks the untimed pause too, and shows it, but never lifts it.
    _run(app, "run_health_checks", now)
    assert _fresh(by_hand.id).last_health_ok is True
    assert _fresh(by_hand.id).status == "paused"
    assert _fresh(waiting.id).status == "paused"


def test_server_that_is_down_keeps_the_account_paused(app, factory, trusting):
    now = datetime.now(UTC)
    account = factory.create_account(host="127.0.0.1", port=closed_port(), security="starttls",
                                     username="u", password="p", status="paused",
                                     paused_until=now - timedelta(seconds=5))  # fmt: skip
    run = _run(app, "run_resume_checks", now)
    assert run.kept_paused == [account.id]
    assert "connect_failed" in _fresh(account.id).paused_reason


def test_api_runs_the_check_now_and_masks_the_password(app, api, factory, trusting, server):
    account = _account(factory, server)
    response = api.post(f"/api/v1/accounts/{account.id}/check")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"] is True and body["stage"] == "quit" and body["error"] is None
    assert body["account_id"] == account.id and body["status"] == "active"
    text = "\n".join(body["transcript"])
    assert "C: STARTTLS" in text and "C: AUTH PLAIN ****" in text
    for secret in (server.password, base64.b64encode(
            f"\0{server.username}\0{server.password}".encode()).decode()):  # fmt: skip
        assert secret not in text
        assert secret not in response.get_data(as_text=True)
    assert _fresh(account.id).last_health_ok is True
    assert db.session.scalar(select(HealthCheck.ok).where(HealthCheck.account_id == account.id))


def test_api_check_with_bad_credentials_reports_the_auth_failure(app, api, factory, trusting,
                                                                 server):  # fmt: skip
    account = _account(factory, server, password="wrong-Pa55word")
    body = api.post(f"/api/v1/accounts/{account.id}/check").get_json()
    assert body["ok"] is False and body["stage"] == "auth"
    assert body["error"].startswith("535")
    assert "wrong-Pa55word" not in "\n".join(body["transcript"])
    assert _fresh(account.id).last_health_ok is False


def test_api_check_of_a_missing_account_is_404(api):
    response = api.post("/api/v1/accounts/999999/check")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"]


def test_history_older_than_the_setting_is_pruned(app, factory, trusting, server):
    account = _account(factory, server)
    old = datetime.now(UTC) - timedelta(days=trusting.health_history_days + 1)
    db.session.add(HealthCheck(account_id=account.id, ok=True, stage="quit", transcript=[],
                               duration_ms=1, checked_at=old))  # fmt: skip
    db.session.commit()
    run = _run(app, "run_health_checks")
    assert run.pruned == 1
    assert db.session.scalar(select(HealthCheck.checked_at)) > old


def test_a_pass_still_running_makes_the_next_one_a_no_op(app, factory, trusting, server):
    from worker.jobs.locks import RedisLock

    account = _account(factory, server)
    running = RedisLock(app.extensions["redis"], "health_checks", 60)
    assert running.acquire()
    assert _run(app, "run_health_checks").skipped is True
    assert _fresh(account.id).last_health_check_at is None
    running.release()
    assert _run(app, "run_health_checks").checked == 1
