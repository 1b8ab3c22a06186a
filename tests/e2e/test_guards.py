"""Guards and alerts end to end: a real Celery worker and beat, aiosmtpd servers where a third
of the addresses hard-bounce (550 5.1.1), and a local Bot API stand-in (tests/bot_api.py)
reached by the worker through TELEGRAM_API_BASE.

- The bad campaign pauses itself once GUARD_MIN_SENDS outcomes show the bounce rate, with
  only the sends already in flight after that, and its alert reaches the stand-in.
- With the Bot API hanging, another campaign still sends everything: Telegram is called by
  the `sendfleet.telegram` task only, and no send task waited the Telegram timeout; once the
  Bot API is back, the alert goes out on a retry."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.extensions import db
from app.models import Account, Campaign, Recipient
from tests.bot_api import BotApiStandIn
from tests.e2e.conftest import Stack, make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account

TELEGRAM_TIMEOUT = 10  # seconds; a send that waited on Telegram would take at least this
MIN_SENDS = 20  # GUARD_MIN_SENDS's default
# Past the minimum, at most: the sends until a bounce triggers the check (about 1 in 3),
# the outcome each of the other worker processes has not committed yet (the check cannot
# see it), the message each process is sending while the pause commits. Three processes:
# about 2 + 2 + 3, doubled for a loaded machine. Measured: 26 outcomes (of 300).
IN_FLIGHT_ALLOWANCE = 15
SEND_RUNTIME = re.compile(r"Task sendfleet\.send_batch\[[^\]]+\] succeeded in ([0-9.]+)s")


@pytest.fixture(scope="module")
def bot_api() -> Iterator[BotApiStandIn]:
    api = BotApiStandIn(hang_seconds=60)
    yield api
    api.close()


@pytest.fixture(scope="module")
def guard_stack(
    settings_env: dict[str, str], app: Any, tmp_path_factory: Any, bot_api: BotApiStandIn
) -> Iterator[Stack]:
    running = make_stack(
        settings_env,
        tmp_path_factory.mktemp("guards"),
        TELEGRAM_BOT_TOKEN="4242:e2e-token",
        TELEGRAM_CHAT_ID="-100500",
        TELEGRAM_API_BASE=bot_api.base,
        TELEGRAM_TIMEOUT_SECONDS=str(TELEGRAM_TIMEOUT),
        TELEGRAM_RETRY_BACKOFF_SECONDS="5",
        TELEGRAM_RETRIES="10",
    )
    running.concurrency = 3  # one process held by a hanging Bot API still leaves two
    running.start_worker()
    running.start_beat()
    yield running
    running.stop()


def _a_third_bounce(recipient: str, attempt: int) -> tuple[int, str] | None:
    # x0, x4, x8, x9 ...: a third of the list, spread over every account of the pool.
    if int(recipient.split("@")[0][1:]) % 9 in (0, 4, 8):
        return 550, "5.1.1 The email account that you tried to reach does not exist."
    return None


def _campaign(campaign_id: int) -> Campaign:
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def _pool(factory: Any, servers: list[Any]) -> list[Account]:
    accounts = [factory.create_account(**smtp_account(s), daily_limit=5000) for s in servers]
    for server in servers:
        server.script(_a_third_bounce)
    return accounts


def test_a_campaign_where_a_third_hard_bounce_pauses_itself_and_alerts(
    guard_stack, factory, smtp_servers, bot_api
):
    bot_api.mode = "ok"
    accounts = _pool(factory, smtp_servers)
    campaign = factory.create_running_campaign([f"p{i}@gmail.com" for i in range(300)])
    wait_until(lambda: _campaign(campaign.id).status == "paused", 60, "the guard's pause")
    wait_until(settled(campaign.id, "pending"), 30, "the sends in flight")

    counts = status_counts(campaign.id)
    finals = counts.get("sent", 0) + counts.get("bounced", 0)
    print(f"paused after {finals} outcomes: {counts}")
    assert MIN_SENDS <= finals <= MIN_SENDS + IN_FLIGHT_ALLOWANCE, counts
    assert counts.get("pending", 0) == 300 - finals  # the rest waits for an operator
    assert sum(len(s.received) for s in smtp_servers) == counts["sent"]
    paused = _campaign(campaign.id)
    assert paused.paused_by == "guard"
    assert paused.pause_details["guard"] == "campaign_bounce_rate"
    assert paused.pause_details["sends"] >= MIN_SENDS
    assert paused.pause_details["percent"] > 10
    # The list explains the bounces: the accounts stay in rotation.
    db.session.expire_all()
    assert {db.session.get(Account, a.id).status for a in accounts} == {"active"}

    wait_until(
        lambda: any(f"Campaign {campaign.id} " in t for t in bot_api.texts()), 30, "the alert"
    )
    [alert] = [r for r in bot_api.delivered() if f"Campaign {campaign.id} " in r.text]
    assert alert.path == "/bot4242:e2e-token/sendMessage"
    assert alert.body["chat_id"] == "-100500"
    assert "bounce rate" in alert.text and alert.text.startswith("[default]")


def test_with_the_bot_api_hanging_another_campaign_still_sends_everything(
    guard_stack, factory, smtp_servers, bot_api
):
    bot_api.mode = "hang"
    hung_before = len(bot_api.requests)
    log_start = len(guard_stack.log("worker"))
    _pool(factory, smtp_servers)
    bad = factory.create_running_campaign([f"q{i}@gmail.com" for i in range(90)])
    # g-addresses never bounce (the rule only refuses a third of them: use ones it accepts).
    good_emails = [f"g{i}@gmail.com" for i in range(400) if i % 9 not in (0, 4, 8)][:240]
    started = time.time()
    good = factory.create_running_campaign(good_emails)
    wait_until(lambda: _campaign(bad.id).status == "paused", 60, "the bad campaign's pause")
    wait_until(settled(good.id), 120, "the good campaign sent")
    took = time.time() - started

    assert status_counts(good.id) == {"sent": len(good_emails)}
    wait_until(lambda: len(bot_api.requests) > hung_before, 30, "a call to the hanging Bot API")
    first_hung = bot_api.requests[hung_before].at
    db.session.rollback()
    last_sent = max(
        r.sent_at.timestamp()
        for r in db.session.query(Recipient).filter(Recipient.campaign_id == good.id)
    )
    log = guard_stack.log("worker")[log_start:]
    runtimes = [float(s) for s in SEND_RUNTIME.findall(log)]
    print(
        f"good campaign: {len(good_emails)} sent in {took:.1f} s; {len(runtimes)} send tasks, "
        f"longest {max(runtimes, default=0):.2f} s; Bot API calls held: "
        f"{len(bot_api.requests) - hung_before}"
    )
    # Telegram was already hanging while the good campaign was still sending ...
    assert first_hung < last_sent
    # ... and none of the send tasks waited the Telegram timeout (each would have taken at
    # least that long): the call happens in the `sendfleet.telegram` task only.
    assert runtimes and max(runtimes) < TELEGRAM_TIMEOUT, runtimes
    # The held call gives up after the Telegram timeout and the task is retried: its log
    # lines come that long after the first hung call, which may be after the good campaign
    # has finished (it sent all 240 in 1.2 s once).
    wait_until(
        lambda: "retry: Retry in" in guard_stack.log("worker")[log_start:],
        TELEGRAM_TIMEOUT + 30,
        "the Telegram task's retry",
    )
    log = guard_stack.log("worker")[log_start:]
    assert "Task sendfleet.telegram[" in log and "retry: Retry in" in log

    bot_api.mode = "ok"  # the Bot API is back: the held alert goes out on a retry
    wait_until(lambda: any(f"Campaign {bad.id} " in t for t in bot_api.texts()), 120, "retry")
