"""A live worker in an SMTP transaction that outlasts SEND_LEASE_SECONDS keeps its row: the
row ends `sent`, never `unknown`, because its holder's heartbeat says it is alive.

No single step times out: the server answers the final dot with a multi-line reply, one line
every half second for 20 s, and each line arrives within SMTP_TIMEOUT_SECONDS (1 s). The
lease (16 s, the least that timeout allows) is shorter than the whole reply."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from app.extensions import db
from app.models import Event, Recipient
from tests.e2e.conftest import make_stack, settled, status_counts, wait_until

LEASE = 16
REPLY_LINES = 40
LINE_EVERY = 0.5  # seconds: 20 s in all, each gap well under the 1 s SMTP timeout


class _TricklingHandler:
    def __init__(self) -> None:
        self.received: list[list[str]] = []
        self.replying: list[tuple[float, float]] = []  # (message in, last line out)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        started = time.time()
        with self.lock:
            self.received.append(list(envelope.rcpt_tos))
        for line in range(REPLY_LINES):
            await server.push(f"250-still writing to disk ({line})")
            await asyncio.sleep(LINE_EVERY)
        with self.lock:
            self.replying.append((started, time.time()))
        return "250 OK queued"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def trickling_server() -> Iterator[tuple[Controller, _TricklingHandler]]:
    handler = _TricklingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_a_live_send_longer_than_the_lease_ends_sent_not_unknown(
    app, settings_env, factory, trickling_server, redis_client, tmp_path
):
    controller, handler = trickling_server
    stack = make_stack(
        settings_env,
        tmp_path,
        SMTP_TIMEOUT_SECONDS="1",
        SEND_LEASE_SECONDS=str(LEASE),
        RECOVERY_INTERVAL_SECONDS="1",  # recovery looks at the row twenty times meanwhile
    )
    factory.create_account(host="127.0.0.1", port=controller.port, security="none")
    campaign = factory.create_running_campaign(["patient@gmail.com"])
    try:
        stack.start_worker()
        stack.start_beat()
        wait_until(settled(campaign.id), REPLY_LINES * LINE_EVERY + 60, "the slow send")
    finally:
        stack.stop()

    assert status_counts(campaign.id) == {"sent": 1}
    assert handler.received == [["patient@gmail.com"]]
    db.session.rollback()
    row = db.session.execute(select(Recipient)).scalar_one()
    events = db.session.execute(select(Event.type).where(Event.recipient_id == row.id))
    assert "unknown" not in set(events.scalars())
    # It really outlived the lease (the claim came before the message, the outcome after
    # the reply), while recovery ran, which saw it and only said so.
    [(message_in, reply_out)] = handler.replying
    assert reply_out - message_in > LEASE
    assert row.sent_at is not None and row.sent_at.timestamp() >= reply_out
    assert redis_client.exists("sf:alert:send-overdue")
