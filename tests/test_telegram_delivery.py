"""Telegram delivery against the local Bot API stand-in (tests/bot_api.py): retries with
backoff, the outage mark that keeps other deliveries from calling a Bot API that is down,
a Bot API that hangs costs one bounded timeout, refusals for good are dropped."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from worker import tasks
from worker.jobs import telegram
from worker.jobs.telegram import DOWN_KEY, deliver, retry_delay


@pytest.fixture
def configured(app, bot_api, monkeypatch):
    settings = app.extensions["settings"].model_copy(
        update={
            "telegram_bot_token": SecretStr("42:token"),
            "telegram_chat_id": "-100",
            "telegram_api_base": bot_api.base,
            "telegram_timeout_seconds": 0.5,
            "telegram_retries": 3,
            "telegram_retry_backoff_seconds": 1,
        }
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    return settings


def test_a_5xx_asks_for_a_retry_and_marks_the_bot_api_down(app, configured, bot_api):
    bot_api.mode = "error"
    redis = app.extensions["redis"]
    first = deliver(configured, "Account 1 paused", None, redis)
    assert first.sent is False and first.retry_in == 1
    assert 0 < redis.pttl(DOWN_KEY) <= 1000
    second = deliver(configured, "Account 2 paused", None, redis)
    assert second.retry_in is not None and len(bot_api.requests) == 1  # not called again
    time.sleep(1.1)
    bot_api.mode = "ok"
    assert deliver(configured, "Account 2 paused", None, redis).sent is True
    assert bot_api.texts() == ["Account 2 paused"]


def test_a_429_waits_as_long_as_telegram_says(app, configured, bot_api):
    bot_api.mode, bot_api.status, bot_api.retry_after = "error", 429, 7
    delivery = deliver(configured, "x", None, app.extensions["redis"])
    assert delivery.retry_in == 7
    assert retry_delay(configured, 0, delivery.retry_in) == 7


def test_a_bot_api_that_hangs_costs_one_timeout(app, configured, bot_api):
    bot_api.mode = "hang"
    redis = app.extensions["redis"]
    started = time.monotonic()
    assert deliver(configured, "x", None, redis).retry_in is not None
    assert time.monotonic() - started < 5  # the 0.5 s timeout, not the 60 s hang
    started = time.monotonic()
    for _ in range(5):  # while it is marked down nobody waits on it
        assert deliver(configured, "y", None, redis).retry_in is not None
    assert time.monotonic() - started < 0.5
    assert len(bot_api.requests) == 1


def test_a_refusal_for_good_is_dropped_not_retried(app, configured, bot_api):
    bot_api.mode, bot_api.status = "error", 400
    delivery = deliver(configured, "x", None, app.extensions["redis"])
    assert delivery.sent is False and delivery.retry_in is None
    assert not app.extensions["redis"].exists(DOWN_KEY)


def test_backoff_doubles_up_to_an_hour(configured):
    assert [retry_delay(configured, n, 1) for n in range(4)] == [1, 2, 4, 8]
    assert retry_delay(configured, 30, 1) == telegram.MAX_RETRY_SECONDS


def test_the_task_retries_and_gives_up_after_telegram_retries(app, configured, bot_api):
    bot_api.mode = "error"
    with app.app_context():
        assert telegram.deliver_alert("x", None, 0) == 1
        app.extensions["redis"].delete(DOWN_KEY)
        assert telegram.deliver_alert("x", None, 2) == 4
        app.extensions["redis"].delete(DOWN_KEY)
        assert telegram.deliver_alert("x", None, 3) is None  # TELEGRAM_RETRIES used up
    assert len(bot_api.requests) == 3


def test_the_celery_task_delivers_to_the_chat_it_is_given(app, configured, bot_api):
    with app.app_context():
        tasks.telegram.apply(args=["Campaign 3 paused", "-100999"]).get()
    [request] = bot_api.delivered()
    assert request.path == "/bot42:token/sendMessage"
    assert request.body["chat_id"] == "-100999" and request.text == "Campaign 3 paused"


def test_the_celery_task_retries_then_gives_up_calling_a_down_bot_api_once(
    app, configured, bot_api, caplog
):
    bot_api.mode = "error"
    with app.app_context(), caplog.at_level("WARNING"):
        # Eagerly, Celery runs each retry at once instead of after its countdown: all of
        # them land inside the outage mark the first failure set.
        tasks.telegram.apply(args=["x", None])
    assert len(bot_api.requests) == 1
    [gave_up] = [r for r in caplog.records if r.getMessage() == "telegram.gave_up"]
    assert gave_up.retries == configured.telegram_retries
    assert tasks.telegram.time_limit == telegram.TASK_TIME_LIMIT_SECONDS
