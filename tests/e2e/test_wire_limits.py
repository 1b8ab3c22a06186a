"""Limits held where the receiving server sees them, with a real worker and beat and SMTP
servers that timestamp every message.

A backlog is built while no send worker runs (only the control worker, which dispatches):
the dispatcher places each account's sends ahead, 10 s apart for an account limited to 6 a
minute, and their moments pass unsent. When the send worker starts, the stale ones are not
sent at once: each goes back and is placed again after the ones that kept their places. At
the servers: no 60 s holds more than 6 of one account, and its sends are spread across the
minute, 10 s apart. And a send worker whose host clock is off (libfaketime) still sends at
each moment as Redis's clock, the limiter's, places it."""

from __future__ import annotations

import glob
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from tests.e2e.conftest import make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account
from tests.smtp_server import ScriptedSMTPServer

PER_MINUTE = 6
PER_ACCOUNT = 5
FAKETIME_LIB = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


@pytest.fixture
def servers() -> Iterator[list[ScriptedSMTPServer]]:
    started = [ScriptedSMTPServer().start() for _ in range(2)]
    yield started
    for server in started:
        server.stop()


def _queued_ahead(campaign_id: int) -> int:
    db.session.rollback()
    return len(
        db.session.execute(
            select(Recipient.id).where(
                Recipient.campaign_id == campaign_id, Recipient.status == "queued"
            )
        ).all()
    )


def test_a_backlog_goes_out_within_the_limit_and_paced_once_a_worker_starts(
    settings_env: dict[str, str], app: Any, factory: Any, servers: list[ScriptedSMTPServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    accounts = [
        factory.create_account(
            **smtp_account(server),
            email=f"sender{i}@brand.example",
            per_minute_limit=PER_MINUTE,
            daily_limit=1000,
        )
        for i, server in enumerate(servers)
    ]
    campaign = factory.create_campaign(status="running")
    emails = [f"r{i}@d{i}.example" for i in range(PER_ACCOUNT * len(accounts))]
    factory.create_recipients(campaign, emails)

    stack = make_stack(settings_env, tmp_path)
    try:
        stack.start_worker("control", queues="sendfleet.dispatch")
        stack.start_beat()
        wait_until(lambda: _queued_ahead(campaign.id) >= 6, 60, "sends placed ahead")
        # No send worker: the first moments pass; the dispatcher keeps placing ahead.
        time.sleep(15)
        backlog = _queued_ahead(campaign.id)
        started = time.time()
        stack.start_worker("sender", queues="sendfleet.send")
        wait_until(settled(campaign.id), 180, "the campaign to be sent")
    finally:
        stack.stop()

    assert status_counts(campaign.id) == {"sent": len(emails)}
    assert backlog >= 8  # a real backlog: several moments per account passed unsent
    # Those whose moment had passed were placed again, not sent late.
    assert "send.placed_again" in stack.log("sender")
    for account, server in zip(accounts, servers, strict=True):
        times = sorted(m.received_at for m in server.received)
        assert {r for m in server.received for r in m.recipients} <= set(emails)
        assert len(times) == len({r for m in server.received for r in m.recipients})
        # Any 60 s at this server: at most PER_MINUTE messages of the account.
        for i, first in enumerate(times):
            assert sum(1 for t in times[i:] if t < first + 60) <= PER_MINUTE, (account.id, times)
        # Spread across the minute: one every 60/6 = 10 s, never a burst, also right after
        # the worker started on the backlog (a send goes at its moment, up to 1 s late).
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 60 / PER_MINUTE - 1.0, (account.id, gaps)
        assert times[0] >= started
    assert sum(len(s.received) for s in servers) == len(emails)


@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime is not installed (ops/dev/debs.txt)")
@pytest.mark.parametrize("clock_off", ["+1.5", "-0.8"])
def test_a_send_worker_whose_clock_is_off_still_sends_at_each_moment(
    settings_env: dict[str, str], app: Any, factory: Any, servers: list[ScriptedSMTPServer],
    tmp_path: Path, clock_off: str,
) -> None:  # fmt: skip
    # 12 a minute: the dispatcher places the sends 5 s apart, on Redis's clock. By its own
    # clock a worker 1.5 s ahead would send each 1.5 s early. One 0.8 s behind starts each
    # task that late (Celery keeps ETAs by the host's clock): within the 1 s tolerance.
    server = servers[0]
    factory.create_account(
        **smtp_account(server), email="sender@brand.example", per_minute_limit=12,
        daily_limit=1000,
    )  # fmt: skip
    campaign = factory.create_campaign(status="running")
    emails = [f"c{i}@d{i}.example" for i in range(5)]
    factory.create_recipients(campaign, emails)

    stack = make_stack(settings_env, tmp_path)
    try:
        stack.start_worker("control", queues="sendfleet.dispatch")
        stack.start_beat()
        stack.env = {
            **stack.env,
            "LD_PRELOAD": FAKETIME_LIB or "",
            "FAKETIME": clock_off,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        stack.start_worker("sender", queues="sendfleet.send")
        wait_until(settled(campaign.id), 120, "the campaign to be sent")
    finally:
        stack.stop()

    assert status_counts(campaign.id) == {"sent": len(emails)}
    db.session.rollback()
    moments = {
        r.email: r.slot_at.timestamp()
        for r in db.session.execute(
            select(Recipient.email, Recipient.slot_at).where(Recipient.campaign_id == campaign.id)
        )
    }
    arrivals = {m.recipients[0]: m.received_at for m in server.received}
    assert sorted(arrivals) == sorted(emails)
    for email, arrived in arrivals.items():
        # Never before its moment, nor later than the tolerance (and the SMTP exchange).
        assert -0.05 <= arrived - moments[email] < 1.2, (email, arrived - moments[email])
    if clock_off.startswith("+"):  # a worker ahead waits for each moment by Redis's clock,
        assert max(arrivals[e] - moments[e] for e in emails) < 0.5
        # and says its clock is off (by a second or more).
        assert "send.clock_offset" in stack.log("sender")
    gaps = [b - a for a, b in itertools.pairwise(sorted(arrivals.values()))]
    assert min(gaps) >= 60 / 12 - 1.0, gaps
    assert "send.placed_again" not in stack.log("sender")
