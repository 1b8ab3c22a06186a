"""A worker killed with SIGKILL mid-campaign: nobody gets two copies, nobody is lost, and
the rows its processes held are recovered within a minute with the shipped defaults."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import select

from app.extensions import db
from app.models import Event, Recipient
from tests.e2e.conftest import make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account
from worker.jobs.recovery import run_recovery

FINAL = {"sent", "bounced", "failed", "suppressed", "unsubscribed", "unknown"}
CLAIM_GROUP = 3


def test_sigkill_mid_campaign_leaves_no_duplicate_and_at_most_a_group_unknown_per_process(
    app, settings_env, factory, smtp_servers, tmp_path
):
    # The killed worker's rows come back through its processes' heartbeats (shortened here to
    # keep the test quick); the lease and the queued rule are not shortened.
    stack = make_stack(
        settings_env,
        tmp_path,
        HEARTBEAT_INTERVAL_SECONDS="0.5",
        HEARTBEAT_TTL_SECONDS="2",
        SEND_GROUP_SIZE="5",
        SEND_CLAIM_GROUP=str(CLAIM_GROUP),
        DISPATCH_MAX_IN_FLIGHT="40",
    )

    def slow(recipient: str, attempt: int):
        time.sleep(0.01)  # keeps sends in flight long enough for the kill to land mid-send
        return None

    for server in smtp_servers:
        server.script(slow)
        factory.create_account(**smtp_account(server), daily_limit=1000)
    campaign = factory.create_running_campaign([f"p{i}@gmail.com" for i in range(300)])
    try:
        stack.start_worker()
        stack.start_beat()
        wait_until(lambda: status_counts(campaign.id).get("sent", 0) >= 60, 60, "sending under way")
        stack.kill("worker")
        killed_at = status_counts(campaign.id)
        assert killed_at.get("sent", 0) < 300, "the kill came too late to prove anything"
        stack.start_worker("worker2")
        wait_until(settled(campaign.id), 120, "every recipient settled")
    finally:
        stack.stop()

    counts = status_counts(campaign.id)
    assert set(counts) <= FINAL
    # Each killed process held at most one claimed group.
    assert counts.get("unknown", 0) <= stack.concurrency * CLAIM_GROUP
    received = Counter(rcpt for s in smtp_servers for r in s.received for rcpt in r.recipients)
    assert max(received.values()) == 1, "a recipient received two copies"
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.status).where(Recipient.campaign_id == campaign.id)
    ).all()
    for email_address, status in rows:
        if status == "sent":
            assert received[email_address] == 1
        elif status == "unknown":
            assert received[email_address] <= 1
        else:
            assert received[email_address] == 0
    assert counts.get("sent", 0) + counts.get("unknown", 0) == 300


# Every recovery timing as shipped: heartbeat 5 s / TTL 15 s, a pass every 15 s, lease 600 s,
# queued rule 300 s, SMTP timeout 30 s.
DEFAULT_TIMINGS = (
    "SEND_LEASE_SECONDS",
    "QUEUED_STALE_SECONDS",
    "RECOVERY_INTERVAL_SECONDS",
    "SMTP_TIMEOUT_SECONDS",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_TTL_SECONDS",
)


def _held_in_flight() -> dict[str, list[tuple[str, str]]]:
    """Queued or sending rows by holder: {holder: [(email, status)]}."""
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.claimed_by, Recipient.email, Recipient.status).where(
            Recipient.status.in_(["queued", "sending"]), Recipient.claimed_by.is_not(None)
        )
    ).all()
    held: dict[str, list[tuple[str, str]]] = {}
    for holder, email_address, status in rows:
        held.setdefault(holder, []).append((email_address, status))
    return held


def test_a_worker_killed_inside_smtp_transactions_is_recovered_within_a_minute_by_default(
    app, settings_env, factory, smtp_servers, tmp_path
):
    # One row claimed at a time, so each stalled process holds exactly one `sending` row
    # (with groups it holds its whole claimed group: tests/test_send_groups.py).
    stack = make_stack(settings_env, tmp_path, defaults=DEFAULT_TIMINGS, SEND_CLAIM_GROUP="1")
    servers = smtp_servers[:2]
    for server in servers:
        # The first message on each server is received, and its reply never comes in time:
        # the sending process is inside the transaction, waiting for the reply to the dot.
        server.delay_data_reply(600)
        factory.create_account(**smtp_account(server), daily_limit=1000)
    emails = [f"k{i}@gmail.com" for i in range(20)]
    with app.app_context():
        run_recovery()  # a deployment's recovery has known this Redis for long
    campaign = factory.create_running_campaign(emails)
    try:
        stack.start_worker()
        stack.start_beat()
        wait_until(
            lambda: (
                all(len(s.received) == 1 for s in servers)
                and status_counts(campaign.id).get("sending", 0) == 2
            ),
            60,
            "both send processes stalled inside a transaction",
        )
        held = _held_in_flight()
        stack.kill("worker")
        killed_at = time.monotonic()
        # Each of the two processes holds its stalled `sending` row and its batch's rest.
        assert len(held) == 2
        assert all([s for _, s in rows].count("sending") == 1 for rows in held.values())
        assert sum(len(rows) for rows in held.values()) == 20
        stack.start_worker("worker2")
        wait_until(
            lambda: not set(held) & set(_held_in_flight()),
            75,
            "the dead processes' rows recovered",
        )
        recovered_after = time.monotonic() - killed_at
        wait_until(settled(campaign.id), 120, "the other worker finished the campaign")
    finally:
        stack.stop()

    assert recovered_after <= 60, f"recovered {recovered_after:.0f} s after the kill"
    assert status_counts(campaign.id) == {"sent": 18, "unknown": 2}
    received = Counter(rcpt for s in servers for r in s.received for rcpt in r.recipients)
    assert sorted(received) == sorted(emails) and set(received.values()) == {1}
    db.session.rollback()
    unknown = db.session.execute(select(Event).where(Event.type == "unknown")).scalars().all()
    assert {e.data["holder"] for e in unknown} == set(held)
    assert {e.data["reason"] for e in unknown} == {"holder gone"}
    stalled = {
        email_address for rows in held.values() for email_address, s in rows if s == "sending"
    }
    rows = db.session.execute(
        select(Recipient.email, Recipient.status).where(Recipient.campaign_id == campaign.id)
    ).all()
    assert {e for e, s in rows if s == "unknown"} == stalled
