"""Alerts: deduplicated per key, delivered to a local stand-in for the Telegram Bot API
(the production code path; only TELEGRAM_API_BASE differs)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from worker.jobs import alerts
from worker.jobs.telegram import send_telegram


class FakeBotApi:
    def __init__(self, answer: dict[str, Any], status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((self.path, json.loads(body)))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    api = FakeBotApi({"ok": True, "result": {"message_id": 1}})
    yield api
    api.close()


def _telegram(settings, base: str):
    return settings.model_copy(
        update={
            "telegram_bot_token": SecretStr("123:secret-token"),
            "telegram_chat_id": "-100200",
            "telegram_api_base": base,
        }
    )


def test_alert_text_reaches_the_bot_api_send_message(settings, bot_api):
    assert send_telegram(_telegram(settings, bot_api.base), "Account 3 paused") is True
    [(path, body)] = bot_api.requests
    assert path == "/bot123:secret-token/sendMessage"
    assert body["chat_id"] == "-100200"
    assert body["text"] == "Account 3 paused"


def test_a_refusing_or_unreachable_telegram_never_raises(settings):
    refusing = FakeBotApi({"ok": False, "description": "chat not found"}, status=400)
    try:
        assert send_telegram(_telegram(settings, refusing.base), "x") is False
    finally:
        refusing.close()
    assert send_telegram(_telegram(settings, "http://127.0.0.1:1"), "x") is False


def test_without_token_nothing_is_sent(settings, bot_api):
    assert send_telegram(settings, "x") is False
    assert bot_api.requests == []


def test_long_alerts_are_cut_to_telegrams_limit(settings, bot_api):
    send_telegram(_telegram(settings, bot_api.base), "x" * 10_000)
    assert len(bot_api.requests[0][1]["text"]) <= 4096


def test_the_same_alert_key_goes_out_once_per_dedup_window(app):
    with app.app_context():
        assert alerts.notify("account-paused:1", "Account 1 paused") is True
        assert alerts.notify("account-paused:1", "Account 1 paused again") is False
        assert alerts.notify("account-paused:2", "Account 2 paused") is True


def test_alerts_are_handed_to_a_task_when_telegram_is_configured(app, monkeypatch, bot_api):
    sent: list[tuple[str, list[str]]] = []

    class Broker:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            sent.append((name, args))

    configured = _telegram(app.extensions["settings"], bot_api.base)
    monkeypatch.setitem(app.extensions, "settings", configured)
    monkeypatch.setattr(alerts, "current_celery", Broker())
    with app.app_context():
        alerts.notify("unknown:7", "Campaign 7: 1 send lost its outcome")
    assert sent == [("sendfleet.telegram", ["Campaign 7: 1 send lost its outcome", "-100200"])]
    assert bot_api.requests == []  # delivery is the task's job, off the hot path


def _capture_tasks(monkeypatch) -> list[list[str]]:
    sent: list[list[str]] = []

    class Broker:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            sent.append(args)

    monkeypatch.setattr(alerts, "current_celery", Broker())
    return sent


def test_a_clients_alert_names_it_and_goes_to_its_own_chat(app, monkeypatch, factory, bot_api):
    own = factory.create_client(name="Acme Outreach", telegram_chat_id="-100999")
    plain = factory.create_client(name="Beta Brand")
    configured = _telegram(app.extensions["settings"], bot_api.base)
    monkeypatch.setitem(app.extensions, "settings", configured)
    sent = _capture_tasks(monkeypatch)
    with app.app_context():
        alerts.notify("campaign-paused:1", "Campaign 1 paused", client_id=own.id)
        alerts.notify("campaign-paused:2", "Campaign 2 paused", client_id=plain.id)
        alerts.notify("send-overdue", "3 sends overdue")
    assert sent == [
        ["[Acme Outreach] Campaign 1 paused", "-100999"],
        ["[Beta Brand] Campaign 2 paused", "-100200"],  # no chat of its own: the default
        ["3 sends overdue", "-100200"],
    ]


def test_the_telegram_task_delivers_to_the_chat_it_is_given(app, bot_api):
    settings = _telegram(app.extensions["settings"], bot_api.base)
    assert send_telegram(settings, "to the client", "-100999") is True
    assert send_telegram(settings, "to the on-call") is True
    assert [body["chat_id"] for _, body in bot_api.requests] == ["-100999", "-100200"]


def test_a_clients_own_chat_is_used_even_without_a_default_chat(app, monkeypatch, factory):
    own = factory.create_client(name="Solo", telegram_chat_id="-1007")
    settings = app.extensions["settings"].model_copy(
        update={"telegram_bot_token": SecretStr("123:t"), "telegram_chat_id": None}
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    sent = _capture_tasks(monkeypatch)
    with app.app_context():
        alerts.notify("k:1", "for the client", client_id=own.id)
        alerts.notify("k:2", "for nobody")
    assert sent == [["[Solo] for the client", "-1007"]]
