"""A local stand-in for the Telegram Bot API (sendMessage), in a thread of the test process
on a real port, so a Celery worker in another process reaches it through TELEGRAM_API_BASE.

It records every request (path, JSON body, arrival time) and answers as its mode says:
- "ok": 200 {"ok": true, ...} like Telegram;
- "error": the given status (503 by default) with Telegram's error shape;
- "hang": reads the request and never answers (until the client gives up or `hang_seconds`).
The mode can change while a test runs."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class BotRequest:
    path: str
    body: dict[str, Any]
    at: float
    mode: str

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))


class BotApiStandIn:
    def __init__(self, mode: str = "ok", *, status: int = 503, hang_seconds: float = 60) -> None:
        self.mode = mode
        self.status = status
        self.hang_seconds = hang_seconds
        self.retry_after: int | None = None
        self.requests: list[BotRequest] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = owner.mode
                with owner._lock:
                    owner.requests.append(BotRequest(self.path, body, time.time(), mode))
                if mode == "hang":
                    owner._released.wait(owner.hang_seconds)
                    return  # no answer at all: the client sees a timeout or a closed socket
                if mode == "error":
                    answer: dict[str, Any] = {
                        "ok": False,
                        "error_code": owner.status,
                        "description": "stand-in error",
                    }
                    if owner.retry_after is not None:
                        answer["parameters"] = {"retry_after": owner.retry_after}
                    self._answer(owner.status, answer)
                    return
                self._answer(200, {"ok": True, "result": {"message_id": len(owner.requests)}})

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[BotRequest]:
        """Requests answered with ok: the messages Telegram would have shown."""
        with self._lock:
            return [r for r in self.requests if r.mode == "ok"]

    def texts(self) -> list[str]:
        return [r.text for r in self.delivered()]

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
