"""Imports take turns within a process.

The API runs each request on a thread of its gunicorn worker (ops/entrypoint.sh: gthread
workers, API_THREADS each), so that a long upload over a slow link neither outlasts the
worker timeout nor keeps the process from answering anything else. An import is the one
request that is heavy while it runs: about 110 MB per million rows (the addresses' hashes,
app.services.import_lines.Repeats) and two database connections (app.services.staging).
So one import runs at a time in a process, and at most API_WORKERS at once, as when each
worker served one request at a time; the others wait for their turn.

A caller takes its turn before its transaction locks anything (campaigns.add_recipients
locks the campaign row first, import_csv locks it again): whoever holds the turn then never
waits for a lock held by an import still waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

log = logging.getLogger(__name__)

# Reentrant: a thread that holds the turn may call another entry point that takes it.
_TURN: Final = threading.RLock()


@contextmanager
def import_turn() -> Iterator[None]:
    """Holds this process's one import turn for the block, waiting for it if need be."""
    if not _TURN.acquire(blocking=False):
        started = time.monotonic()
        _TURN.acquire()
        log.info("import.waited", extra={"waited_ms": round((time.monotonic() - started) * 1000)})
    try:
        yield
    finally:
        _TURN.release()
