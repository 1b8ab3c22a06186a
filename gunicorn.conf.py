"""gunicorn reads ./gunicorn.conf.py by default: `gunicorn 'app:create_app()'` from the project
directory (the image's WORKDIR) uses it with no flag.

Several workers each count their own HTTP requests; prometheus_client's multiprocess mode
writes every process's counters to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums them,
so whichever worker answers a scrape reports the whole API. The variable must be set before
prometheus_client is imported (with --preload, in the master, before the app loads), which is
why this config file, read first, sets it and empties the directory of a previous run's files.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any

_metrics_dir = Path(
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / "sendfleet-prometheus")
    )
)
_metrics_dir.mkdir(parents=True, exist_ok=True)
for _stale in _metrics_dir.glob("*.db"):
    _stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's gauges would otherwise be reported for ever; its counters stay summed.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_fork(server: Any, worker: Any) -> None:
    """Before each worker is forked, in the master (which serves no request itself)."""
    flask_app = server.app.callable  # None without --preload: each worker builds its own app
    if flask_app is not None:
        # With --preload the master built the app, its SQLAlchemy engine included: a pooled
        # connection the master used (a check at start-up) would be inherited by every
        # worker and shared between them. Closed here, so a worker opens its own. Redis
        # clients need nothing: redis-py's pool notices the new pid and starts afresh.
        from app.extensions import db

        with flask_app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    # The workers share the master's pages until they write to them, and a garbage
    # collection in a worker writes to every object it walks: frozen, the app's objects are
    # never walked again (as in worker/celery_app.py's prefork hook).
    gc.collect()
    gc.freeze()
