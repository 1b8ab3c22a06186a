"""The warm-up ramp over a simulated fortnight (the clock injected, days local to
Europe/Berlin, across the change to summer time): one day over the bounce rate and one day
with the domain's DKIM failing hold the ramp; every other day advances it by WARMUP_STEP;
running the daily task twice the same day advances once; the API shows each day and
today's cap, and the dispatcher's daily window uses that same cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Account, Event, HealthCheck, WarmupDay
from app.services.limits import LimitTable, account_day_window

ZONE = ZoneInfo("Europe/Berlin")
FIRST_DAY = date(2026, 3, 20)  # Berlin moves to summer time on 29 March 2026
DAYS = 14
BAD_BOUNCES_DAY = 4  # index in the fortnight
DKIM_FAILS_DAY = 8
DOMAIN = "ramp.example"


@pytest.fixture
def berlin(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = app.extensions["settings"].model_copy(
        update={"warmup_timezone": "Europe/Berlin", "warmup_hour": 6}
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    return settings


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


def _send(account: Account, day: date, sent: int, bounced: int = 0) -> None:
    rows = [{"type": "sent"}] * sent + [{"type": "bounced"}] * bounced
    db.session.add_all(
        Event(
            type=row["type"],
            account_id=account.id,
            client_id=account.client_id,
            created_at=_local(day, 12) + timedelta(seconds=n),
        )
        for n, row in enumerate(rows)
    )
    db.session.commit()


def _auth_check(domain: str, at: datetime, *, spf: str = "pass", dkim: str = "pass") -> None:
    db.session.execute(
        text(
            "INSERT INTO sender_auth_checks (domain, spf, dkim, dmarc, mx, checked_at) "
            "VALUES (:domain, :spf, :dkim, 'pass', 'pass', :at)"
        ),
        {"domain": domain, "spf": spf, "dkim": dkim, "at": at},
    )
    db.session.commit()


def _ramp(app: Any, at: datetime) -> Any:
    from worker.jobs.warmup import run_warmup_ramp

    with app.app_context():
        return run_warmup_ramp(clock=lambda: at)


def _account(factory: Any, **values: Any) -> Account:
    values.setdefault("email", f"sender@{DOMAIN}")
    values.setdefault("daily_limit", 1000)
    created = _local(FIRST_DAY, 0) - timedelta(hours=1)
    return factory.create_account(warmup_enabled=True, created_at=created, **values)


def _fresh(account_id: int) -> Account:
    db.session.expire_all()
    account = db.session.get(Account, account_id)
    assert account is not None
    return account


def test_a_fortnight_holds_on_the_bad_days_and_continues_after(app, api, factory, berlin):
    account = _account(factory)
    expected_caps, advances = [], 0
    for index in range(DAYS):
        day = FIRST_DAY + timedelta(days=index)
        cap = 50 + 50 * advances
        expected_caps.append(cap)
        assert api.get(f"/api/v1/accounts/{account.id}").get_json()["cap_today"] == cap
        _send(account, day, sent=min(40, cap), bounced=5 if index == BAD_BOUNCES_DAY else 1)
        run_at = _local(day + timedelta(days=1), berlin.warmup_hour)
        dkim = "fail" if index == DKIM_FAILS_DAY else "pass"
        _auth_check(DOMAIN, run_at - timedelta(minutes=50), dkim=dkim)
        result = _ramp(app, run_at)
        assert result.day == day
        if index in (BAD_BOUNCES_DAY, DKIM_FAILS_DAY):
            assert list(result.held) == [account.id]
        else:
            assert result.advanced == [account.id]
            advances += 1
        if index == 2:  # the task again the same day (a second beat, a retry): no change
            again = _ramp(app, run_at + timedelta(hours=3))
            assert again.advanced == [] and again.held == {} and again.already == 1

    final = _fresh(account.id)
    assert final.warmup_day == 1 + DAYS - 2
    assert advances == DAYS - 2
    assert final.warmup_hold_reason is None  # the last day advanced

    shown = api.get(f"/api/v1/accounts/{account.id}").get_json()
    assert shown["warmup_day"] == 13 and shown["cap_today"] == 650
    assert shown["warmup_hold_reason"] is None
    # The dispatcher's daily window and limit use the same cap.
    limits = LimitTable(settings=berlin)
    assert limits.account(final).per_day == 650
    assert account_day_window(final, berlin).limit == 650

    ramp = api.get(f"/api/v1/accounts/{account.id}/warmup").get_json()
    assert ramp["cap_today"] == 650 and ramp["warmup_day"] == 13 and not ramp["complete"]
    days = ramp["days"]
    assert [d["day"] for d in days] == [
        (FIRST_DAY + timedelta(days=i)).isoformat() for i in range(DAYS)
    ]
    assert [d["cap"] for d in days] == expected_caps
    assert [d["sent"] for d in days] == [min(40, c) for c in expected_caps]
    outcomes = [d["outcome"] for d in days]
    assert outcomes.count("held") == 2
    assert outcomes[BAD_BOUNCES_DAY] == "held" and outcomes[DKIM_FAILS_DAY] == "held"
    assert "bounce rate 11.1 % (5 of 45)" in days[BAD_BOUNCES_DAY]["reason"]
    assert days[DKIM_FAILS_DAY]["reason"] == f"SPF or DKIM of {DOMAIN} fails"
    assert all(d["reason"] is None for i, d in enumerate(days)
               if i not in (BAD_BOUNCES_DAY, DKIM_FAILS_DAY))  # fmt: skip
    # The held days' caps repeat the day before's; the day after continues the ramp.
    assert expected_caps[BAD_BOUNCES_DAY + 1] == expected_caps[BAD_BOUNCES_DAY]
    assert expected_caps[DKIM_FAILS_DAY + 2] == expected_caps[DKIM_FAILS_DAY] + 50


def test_a_held_day_is_shown_on_the_account(app, api, factory, berlin):
    account = _account(factory)
    _send(account, FIRST_DAY, sent=20, bounced=2)
    _auth_check(DOMAIN, _local(FIRST_DAY, 23))
    _ramp(app, _local(FIRST_DAY + timedelta(days=1), 6))
    shown = api.get(f"/api/v1/accounts/{account.id}").get_json()
    assert shown["warmup_day"] == 1 and shown["cap_today"] == 50
    assert shown["warmup_hold_reason"].startswith("2026-03-20: bounce rate 9.1 %")
    assert shown["warmup_held_at"] is not None


def _judge_one_day(app: Any, factory: Any, **account_values: Any) -> tuple[Account, WarmupDay]:
    account = _account(factory, **account_values)
    _send(account, FIRST_DAY, sent=30)
    _ramp(app, _local(FIRST_DAY + timedelta(days=1), 6))
    row = db.session.scalars(select(WarmupDay).where(WarmupDay.account_id == account.id)).one()
    return _fresh(account.id), row


def test_a_blacklist_listing_holds(app, factory, berlin):
    _auth_check(DOMAIN, _local(FIRST_DAY, 23))
    db.session.execute(
        text("INSERT INTO blacklist_checks (target, target_kind, listed, lists_hit, status) "
             "VALUES (:d, 'domain', true, ARRAY['dbl.spamhaus.org'], 'listed')"),
        {"d": DOMAIN},
    )  # fmt: skip
    db.session.commit()
    account, row = _judge_one_day(app, factory)
    assert row.outcome == "held" and account.warmup_day == 1
    assert row.reason == "its domain or IP is listed on a blacklist"


def test_an_authentication_failure_that_day_holds(app, factory, berlin):
    _auth_check(DOMAIN, _local(FIRST_DAY, 23))
    account = _account(factory)
    db.session.add(HealthCheck(account_id=account.id, ok=False, stage="auth",
                               error="535 5.7.8 Authentication credentials invalid",
                               transcript=[], duration_ms=3,
                               checked_at=_local(FIRST_DAY, 9)))  # fmt: skip
    db.session.commit()
    _send(account, FIRST_DAY, sent=30)
    _ramp(app, _local(FIRST_DAY + timedelta(days=1), 6))
    assert _fresh(account.id).warmup_day == 1
    assert "failed to authenticate" in _fresh(account.id).warmup_hold_reason


def test_no_verdict_on_the_domain_yet_holds(app, factory, berlin):
    account, row = _judge_one_day(app, factory)
    assert row.outcome == "held" and account.warmup_day == 1
    assert "not shown passing yet" in row.reason


def test_a_freemail_address_is_not_held_for_its_providers_dns(app, factory, berlin):
    account, row = _judge_one_day(app, factory, email="someone@gmail.com")
    assert row.outcome == "advanced" and account.warmup_day == 2


def test_a_day_without_sends_holds(app, factory, berlin):
    _auth_check(DOMAIN, _local(FIRST_DAY, 23))
    account = _account(factory)
    _ramp(app, _local(FIRST_DAY + timedelta(days=1), 6))
    assert _fresh(account.id).warmup_day == 1
    assert "0 sent, fewer than WARMUP_MIN_SENDS (1)" in _fresh(account.id).warmup_hold_reason


def test_own_start_and_step_and_the_end_of_the_ramp(app, api, factory, berlin):
    _auth_check(DOMAIN, _local(FIRST_DAY, 23))
    account = _account(factory, warmup_start=100, warmup_step=150, daily_limit=300)
    assert api.get(f"/api/v1/accounts/{account.id}").get_json()["cap_today"] == 100
    for index, expected in enumerate((250, 300, 300)):
        day = FIRST_DAY + timedelta(days=index)
        _send(account, day, sent=10)
        _ramp(app, _local(day + timedelta(days=1), 7))
        assert api.get(f"/api/v1/accounts/{account.id}").get_json()["cap_today"] == expected
    # At its daily limit the ramp is complete: no more days are judged.
    assert db.session.scalar(select(func.count()).select_from(WarmupDay)) == 2
    assert api.get(f"/api/v1/accounts/{account.id}/warmup").get_json()["complete"] is True


def test_per_account_ramp_is_set_through_the_api(api):
    created = api.post("/api/v1/accounts", json={
        "name": "ramped", "provider": "smtp", "host": "relay.example", "email": "a@b.example",
        "warmup_start": 20, "warmup_step": 10,
    })  # fmt: skip
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["cap_today"] == 20 and body["warmup_start"] == 20 and body["warmup_step"] == 10
    bad = api.patch(f"/api/v1/accounts/{body['id']}", json={"warmup_start": 0})
    assert bad.status_code in (400, 422)
    assert "warmup_start" in bad.get_data(as_text=True)
    reset = api.patch(f"/api/v1/accounts/{body['id']}", json={"warmup_start": None})
    assert reset.get_json()["cap_today"] == 50
