"""GET /metrics: send outcomes per account and reply class, recipients by status, queue
depth, capacity, warm-up, blacklist, limiter refusals and dispatcher ticks, read from the
real database and Redis after real sends (in-process send path, aiosmtpd)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from celery import Celery
from pydantic import SecretStr
from sqlalchemy import text

from app.extensions import db
from app.metrics import counters, event_totals
from app.models import BlacklistCheck
from tests.metrics_scrape import database_outcomes, family, outcome_counts, parse
from tests.pipeline import run_until_idle, smtp_account
from worker.celery_app import celery_config
from worker.jobs.heartbeat import Heartbeat


def _scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.data[:500]
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def _send_with_bounces(app, factory, smtp_server, emails, bounced):
    for email in bounced:
        smtp_server.fail_rcpt(email, 550, "5.1.1 user unknown")
    campaign = factory.create_running_campaign(emails)
    run_until_idle(app)
    return campaign


def test_outcomes_per_account_and_reply_class_match_the_events(app, client, factory, smtp_servers):
    first = factory.create_account(
        **smtp_account(smtp_servers[0]), per_minute_limit=1000, name="first"
    )
    second = factory.create_account(
        **smtp_account(smtp_servers[1]), per_minute_limit=1000, name="second", provider="postfix"
    )
    smtp_servers[0].fail_rcpt("b1@bounce.example", 550, "5.1.1 user unknown")
    smtp_servers[1].fail_rcpt("b1@bounce.example", 550, "5.1.1 user unknown")
    smtp_servers[0].fail_rcpt("d1@grey.example", 451, "4.7.1 greylisted", times=1)
    smtp_servers[1].fail_rcpt("d1@grey.example", 451, "4.7.1 greylisted", times=1)
    emails = [f"r{i}@dest{i % 4}.example" for i in range(12)] + [
        "b1@bounce.example",
        "d1@grey.example",
    ]
    factory.create_running_campaign(emails)
    run_until_idle(app)

    samples = _scrape(client)
    database = database_outcomes(db.session)
    assert outcome_counts(samples) == database
    assert sum(n for (_, outcome, _), n in database.items() if outcome == "sent") == 12
    assert {o for (_, o, _) in database} == {"sent", "bounced", "deferred"}
    assert (
        database[(str(first.id), "sent", "2xx")] + database[(str(second.id), "sent", "2xx")] == 12
    )
    assert sum(n for (_, o, c), n in database.items() if o == "bounced" and c == "5xx") == 1
    assert sum(n for (_, o, c), n in database.items() if o == "deferred" and c == "4xx") == 1
    providers = {
        dict(labels)["account_id"]: dict(labels)["provider"]
        for labels in family(samples, "sendfleet_send_outcomes_total")
    }
    assert providers == {str(first.id): "smtp", str(second.id): "postfix"}

    statuses = {dict(k)["status"]: v for k, v in family(samples, "sendfleet_recipients").items()}
    assert statuses["sent"] == 12 and statuses["bounced"] == 1 and statuses["deferred"] == 1
    assert statuses["pending"] == 0 and "unknown" in statuses
    up = {dict(k)["part"]: v for k, v in family(samples, "sendfleet_metrics_part_up").items()}
    assert set(up.values()) == {1.0}, up


def test_totals_survive_folds_and_a_redis_loss_and_only_grow(app, client, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    _send_with_bounces(app, factory, smtp_server, ["a@x.example", "b@y.example"], [])
    before = outcome_counts(_scrape(client))
    # Several scrapes fold the settled events into Redis (the watermark moves); the figures
    # stay the database's.
    for _ in range(3):
        assert outcome_counts(_scrape(client)) == before
    redis = app.extensions["redis"]
    stored = redis.hgetall(event_totals.TOTALS_KEY)
    assert int(stored[event_totals.THROUGH.encode()]) >= 2, stored

    _send_with_bounces(
        app, factory, smtp_server, ["c@z.example", "gone@z.example"], ["gone@z.example"]
    )
    after = outcome_counts(_scrape(client))
    assert after == database_outcomes(db.session)
    assert all(after[key] >= n for key, n in before.items())
    assert sum(after.values()) == sum(before.values()) + 2

    redis.delete(event_totals.TOTALS_KEY)  # Redis lost its data: today's events count again
    assert outcome_counts(_scrape(client)) == after


def test_an_event_committed_after_a_newer_one_is_still_counted(app, client, factory, smtp_server):
    """Ids are handed out at insert, rows become visible at commit: a transaction holding a
    lower id that commits after the watermark passed a higher one must not be lost."""
    account = factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    _scrape(client)  # totals begin
    slow = db.engine.connect()
    slow_tx = slow.begin()
    insert = text(
        "INSERT INTO events (type, account_id, data) VALUES ('sent', :a, CAST(:d AS jsonb))"
    )
    slow.execute(insert, {"a": account.id, "d": json.dumps({"smtp_code": 250})})
    with db.engine.begin() as fast:
        fast.execute(insert, {"a": account.id, "d": json.dumps({"smtp_code": 250})})
    for _ in range(4):
        assert outcome_counts(_scrape(client))[(str(account.id), "sent", "2xx")] == 1
    slow_tx.commit()
    slow.close()
    for _ in range(3):
        assert outcome_counts(_scrape(client))[(str(account.id), "sent", "2xx")] == 2


def test_capacity_warmup_and_account_info(app, client, factory, smtp_server):
    account = factory.create_account(
        **smtp_account(smtp_server), warmup_enabled=True, warmup_day=3, daily_limit=500
    )
    _send_with_bounces(app, factory, smtp_server, [f"p{i}@q{i}.example" for i in range(5)], [])
    samples = _scrape(client)
    label = frozenset({("account_id", str(account.id))})
    assert family(samples, "sendfleet_account_cap_today")[label] == 150  # 50 + 2 x 50
    assert family(samples, "sendfleet_account_sent_today")[label] == 5
    assert family(samples, "sendfleet_account_capacity_used_ratio")[label] == 5 / 150
    assert family(samples, "sendfleet_account_warmup_day")[label] == 3
    [info] = family(samples, "sendfleet_account_info")
    assert dict(info)["status"] == "active" and dict(info)["provider"] == "smtp"


def test_blacklist_state_is_the_latest_check_per_target(app, client):
    with app.app_context():
        db.session.add_all(
            [
                BlacklistCheck(target="203.0.113.7", target_kind="ip", listed=False, lists_hit=[]),
                BlacklistCheck(
                    target="send.example", target_kind="domain", listed=False, status="unknown"
                ),
            ]
        )
        db.session.commit()
        db.session.add(
            BlacklistCheck(
                target="203.0.113.7",
                target_kind="ip",
                listed=True,
                lists_hit=["zen.spamhaus.org", "bl.spamcop.net"],
                checked_at=db.session.execute(text("SELECT now() + interval '1 minute'")).scalar(),
            )
        )
        db.session.commit()
    samples = _scrape(client)
    listed = {
        dict(k)["target"]: v for k, v in family(samples, "sendfleet_blacklist_listed").items()
    }
    assert listed == {"203.0.113.7": 1, "send.example": 0}
    hits = {
        dict(k)["target"]: v for k, v in family(samples, "sendfleet_blacklist_lists_hit").items()
    }
    assert hits == {"203.0.113.7": 2, "send.example": 0}
    unknown = {
        dict(k)["target"]: v for k, v in family(samples, "sendfleet_blacklist_unknown").items()
    }
    assert unknown == {"203.0.113.7": 0, "send.example": 1}


def test_queue_depth_counts_tasks_waiting_in_each_celery_queue(app, client, settings):
    celery = Celery("metrics-test")
    celery.config_from_object(celery_config(settings))
    for i in range(3):
        celery.send_task("sendfleet.send_batch", args=[1, [i]], queue="sendfleet.send")
    celery.send_task("sendfleet.send_batch", args=[1, [9]], queue="sendfleet.send", priority=5)
    celery.send_task("sendfleet.dispatch", queue="sendfleet.dispatch")
    depth = {
        dict(k)["queue"]: v for k, v in family(_scrape(client), "sendfleet_queue_depth").items()
    }
    assert depth == {"sendfleet.send": 4, "sendfleet.dispatch": 1}


def test_limiter_refusals_and_dispatch_ticks_from_redis(app, client, redis_client):
    counters.count_limiter_refusals(redis_client, {"account": 3, "recipient_domain": 2})
    counters.count_limiter_refusals(redis_client, {"account": 1, "system": 0})
    counters.record_dispatch_tick(redis_client, 0.25, queued=7, at=1_700_000_000.0)
    counters.record_dispatch_tick(redis_client, 0.75, queued=3, at=1_700_000_005.0)
    samples = _scrape(client)
    refusals = {
        dict(k)["scope"]: v for k, v in family(samples, "sendfleet_limiter_refusals_total").items()
    }
    assert refusals["account"] == 4 and refusals["recipient_domain"] == 2
    assert refusals["system"] == 0 and refusals["sending_domain"] == 0
    assert family(samples, "sendfleet_dispatch_ticks_total")[frozenset()] == 2
    assert family(samples, "sendfleet_dispatch_seconds_total")[frozenset()] == 1.0
    assert family(samples, "sendfleet_dispatch_queued_total")[frozenset()] == 10
    assert family(samples, "sendfleet_dispatch_last_tick_seconds")[frozenset()] == 0.75
    last = family(samples, "sendfleet_dispatch_last_tick_timestamp_seconds")[frozenset()]
    assert last == 1_700_000_005.0


def test_live_send_processes_are_counted_by_host(app, client, redis_client):
    beats = [
        Heartbeat(redis_client, identity, interval=1, ttl=60)
        for identity in ("node-a:101:abc", "node-a:102:def", "node-b:7:xyz", "node-c:9:gone")
    ]
    for heartbeat in beats:
        heartbeat.beat()
    beats[3].stop()  # a clean exit: gone at once
    Heartbeat(redis_client, "node-d:5:old", interval=1, ttl=0.001).beat()  # expired
    time.sleep(0.01)
    workers = {
        dict(k)["host"]: v for k, v in family(_scrape(client), "sendfleet_worker_processes").items()
    }
    # (This test process's own send path may be beating too, under the machine's name.)
    assert {h: n for h, n in workers.items() if h.startswith("node-")} == {"node-a": 2, "node-b": 1}


def test_a_part_that_fails_is_reported_and_the_rest_still_answers(app, client, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database away")

    monkeypatch.setattr("app.metrics.collector._blacklist", broken)
    samples = _scrape(client)
    up = {dict(k)["part"]: v for k, v in family(samples, "sendfleet_metrics_part_up").items()}
    assert up["blacklist"] == 0 and up["recipients"] == 1
    assert family(samples, "sendfleet_recipients")


def test_the_api_request_metrics_count_responses_by_status(app, client):
    assert client.get("/api/v1/campaigns").status_code == 401
    samples = _scrape(client)
    statuses = {
        dict(k)["status"]: v for k, v in family(samples, "flask_http_request_total").items()
    }
    assert statuses.get("401", 0) >= 1


def test_a_metrics_token_when_set_is_required(settings, database_url):
    from app import create_app

    token = SecretStr("s3cret-token")
    guarded = create_app(settings.model_copy(update={"metrics_bearer_token": token}))
    with guarded.test_client() as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        wrong = anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "s3cret" not in wrong.get_data(as_text=True)
        right = anonymous.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and "sendfleet_recipients" in right.get_data(as_text=True)


def test_after_a_redis_loss_the_totals_start_again_at_the_days_first_event(
    app, client, factory, redis_client
):
    account = factory.create_account(per_minute_limit=1000)
    insert = text(
        "INSERT INTO events (type, account_id, data, created_at) "
        "VALUES (:type, :a, CAST(:d AS jsonb), :at)"
    )
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    code = json.dumps({"smtp_code": 250})
    with db.engine.begin() as conn:
        for kind, at in [
            ("sent", midnight - timedelta(hours=50)),
            ("bounced", midnight - timedelta(hours=6)),
            ("sent", midnight - timedelta(seconds=1)),
            ("sent", now - timedelta(seconds=3)),
            ("sent", now - timedelta(seconds=2)),
            ("sent", now - timedelta(seconds=1)),
        ]:
            conn.execute(insert, {"type": kind, "a": account.id, "d": code, "at": at})
    counts = outcome_counts(_scrape(client))
    assert counts == {(str(account.id), "sent", "2xx"): 3}
    redis_client.delete(event_totals.TOTALS_KEY)
    assert outcome_counts(_scrape(client)) == counts
