"""The API while PostgreSQL or Redis is away: 503 with Retry-After and the JSON error
shape, never a 500 with a traceback per request. One log line per outage and process:
the first failed request logs it, later ones stay quiet until a request succeeds again."""

from __future__ import annotations

import logging
import threading

from flask import Flask, Response, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from app.errors import error_response
from app.extensions import db

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_STORES = {"database": "PostgreSQL", "redis": "Redis"}


class _Outages:
    """Which stores this process saw down, so each outage is logged once."""

    def __init__(self) -> None:
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, store: str, exc: Exception) -> None:
        with self._lock:
            first = store not in self._down
            self._down.add(store)
        if first:
            log.error("outage.started", extra={"store": store, "error": type(exc).__name__})

    def succeeded(self) -> None:
        if not self._down:
            return
        with self._lock:
            back, self._down = self._down, set()
        for store in sorted(back):
            log.warning("outage.ended", extra={"store": store})


outages = _Outages()


def register_outage_handlers(app: Flask) -> None:
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(RedisConnectionError, _redis_down)
    app.register_error_handler(RedisTimeoutError, _redis_down)

    @app.after_request
    def _note_success(response: Response) -> Response:
        if response.status_code < 500:
            outages.succeeded()
        return response


def _database_down(exc: Exception) -> Response | tuple[str, int, dict[str, str]]:
    # OperationalError: could not connect, the server closed the connection, the
    # administrator terminated it, a statement cancelled: the server is away or overloaded.
    try:
        db.session.rollback()
    except OperationalError:
        db.session.invalidate()
    return _unavailable("database", exc)


def _redis_down(exc: Exception) -> Response | tuple[str, int, dict[str, str]]:
    return _unavailable("redis", exc)


def _unavailable(store: str, exc: Exception) -> Response | tuple[str, int, dict[str, str]]:
    outages.failed(store, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not request.path.startswith("/api/"):
        return f"{_STORES[store]} is unreachable; retry shortly.", 503, headers
    response = error_response(
        503,
        "unavailable",
        f"{_STORES[store]} is unreachable; retry in {RETRY_AFTER_SECONDS} s",
    )
    response.headers.update(headers)
    return response
