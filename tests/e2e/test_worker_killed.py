"""A worker killed with SIGKILL mid-campaign: nobody gets two copies, nobody is lost."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from tests.e2e.conftest import make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account

FINAL = {"sent", "bounced", "failed", "suppressed", "unsubscribed", "unknown"}


def test_sigkill_mid_campaign_leaves_no_duplicate_and_at_most_concurrency_unknown(
    app, settings_env, factory, smtp_servers, tmp_path
):
    stack = make_stack(
        settings_env,
        tmp_path,
        SEND_LEASE_SECONDS="3",
        QUEUED_STALE_SECONDS="3",
        SEND_GROUP_SIZE="5",
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
    assert counts.get("unknown", 0) <= stack.concurrency
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
