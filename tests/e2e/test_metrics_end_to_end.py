"""Metrics proof: a campaign sent by two real Celery worker instances (and beat), then
/metrics: sends per account and reply class equal the database's events, recipients by
status equal the table, and the dispatcher's ticks and the send processes are counted."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from app.extensions import db
from tests.e2e.conftest import make_stack, settled, status_counts, wait_until
from tests.metrics_scrape import database_outcomes, family, outcome_counts, parse
from tests.pipeline import smtp_account


@pytest.fixture
def two_workers(settings_env: dict[str, str], app: Any, tmp_path: Any):
    stack = make_stack(settings_env, tmp_path)
    stack.concurrency = 1
    stack.start_worker("worker-a")
    stack.start_worker("worker-b")
    stack.start_beat()
    yield stack
    stack.stop()


def _scrape(client: Any) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def test_metrics_after_a_campaign_sent_by_two_workers_match_the_database(
    two_workers, client, factory, smtp_servers
):
    accounts = [
        factory.create_account(**smtp_account(server), daily_limit=500) for server in smtp_servers
    ]
    bounced = [f"gone{i}@bounce.example" for i in range(6)]
    for server in smtp_servers:
        for email in bounced:
            server.fail_rcpt(email, 550, "5.1.1 user unknown")
    emails = [f"reader{i}@d{i % 7}.example" for i in range(90)] + bounced
    campaign = factory.create_running_campaign(emails)

    seen_processes: set[str] = set()

    def done_and_watch() -> bool:
        for labels, value in family(_scrape(client), "sendfleet_worker_processes").items():
            if value:
                seen_processes.add(dict(labels)["host"])
        return settled(campaign.id)()

    wait_until(done_and_watch, 120, "the campaign to be sent")
    counts = status_counts(campaign.id)
    assert counts == {"sent": 90, "bounced": 6}

    # Both workers sent: each one's log has outcomes of its own.
    for name in ("worker-a", "worker-b"):
        assert two_workers.log(name).count("send.outcome") > 0, f"{name} sent nothing"

    samples = _scrape(client)
    db.session.rollback()
    database = database_outcomes(db.session)
    assert outcome_counts(samples) == database
    per_outcome: Counter[str] = Counter()
    for (_, outcome, reply_class), n in outcome_counts(samples).items():
        per_outcome[f"{outcome} {reply_class}"] += n
    assert per_outcome["sent 2xx"] == 90 and per_outcome["bounced 5xx"] == 6
    accounts_seen = {account for (account, outcome, _), n in database.items() if n}
    assert accounts_seen <= {str(a.id) for a in accounts} and len(accounts_seen) >= 2

    statuses = {dict(k)["status"]: v for k, v in family(samples, "sendfleet_recipients").items()}
    assert statuses["sent"] == 90 and statuses["bounced"] == 6 and statuses["pending"] == 0
    sent_today = sum(family(samples, "sendfleet_account_sent_today").values())
    assert sent_today == 96  # every attempt that reached a server holds a day-window slot
    assert family(samples, "sendfleet_dispatch_ticks_total")[frozenset()] > 0
    assert family(samples, "sendfleet_dispatch_queued_total")[frozenset()] >= 96
    assert seen_processes, "no send process was ever seen alive"

    # Idle now: the dispatcher keeps ticking (every 0.5 s here) and says nothing at INFO.
    names = ("worker-a", "worker-b", "beat")
    before = {name: len(two_workers.log(name)) for name in names}
    ticks = family(_scrape(client), "sendfleet_dispatch_ticks_total")[frozenset()]
    time.sleep(4)
    assert family(_scrape(client), "sendfleet_dispatch_ticks_total")[frozenset()] >= ticks + 3
    for name in names:
        idle = two_workers.log(name)[before[name] :]
        assert "sendfleet.dispatch" not in idle and "dispatch.tick" not in idle, idle[-2000:]
