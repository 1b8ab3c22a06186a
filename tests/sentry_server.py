"""A stand-in for Sentry's ingestion endpoint: an HTTP server on 127.0.0.1 that keeps every
envelope it is sent (gzip bodies decompressed), so a test can read what left the process."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryStandIn:
    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with stand_in._lock:
                    stand_in.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def dsn(self, key: str = "publickey123") -> str:
        return f"http://{key}@127.0.0.1:{self.port}/1"

    def start(self) -> SentryStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """The error events among the envelopes' items."""
        with self._lock:
            envelopes = list(self.envelopes)
        events = []
        for envelope in envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    events.append(json.loads(payload))
        return events

    def wait_for_event(self, match: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for event in self.events():
                if match in json.dumps(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no event mentioning {match!r}; got {len(self.envelopes)} envelopes")

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.envelopes)
