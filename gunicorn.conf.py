"""gunicorn reads ./gunicorn.conf.py by default: `gunicorn 'app:create_app()'` from the project
directory (the image's WORKDIR) uses it with no flag.

Several workers each count their own HTTP requests; prometheus_client's multiprocess mode
writes every process's counters to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums them,
so whichever worker answers a scrape reports the whole API. The variable must be set before
prometheus_client is imported (with --preload, in the master, before the app loads), which is
why this config file, read first, sets it and empties the directory of a previous run's files.
"""

from __future__ import annotations

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
