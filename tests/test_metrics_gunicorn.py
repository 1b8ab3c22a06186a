"""/metrics under gunicorn with two workers (started as the image starts it, picking up
./gunicorn.conf.py, each worker serving requests on its threads): whichever worker
answers, the request counters are the whole API's."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.gunicorn_api import get, start_api, stop_api
from tests.metrics_scrape import family, parse


def _log(tmp_path: Path) -> str:
    return (tmp_path / "gunicorn.log").read_text(errors="replace")


def _get(port: int, path: str) -> tuple[int, str]:
    status, body = get(port, path)
    return status, body.decode()


def test_every_worker_reports_the_requests_of_both(app, settings_env, tmp_path):
    env = {
        **os.environ,
        **settings_env,
        "API_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "stale_counter_999.db").write_bytes(b"left from a previous run")
    process, port = start_api(env, tmp_path / "gunicorn.log")
    prometheus = tmp_path / "prometheus"

    def served() -> set[str]:
        """The workers that have counted a request (each writes its own counter file)."""
        return {p.stem.rsplit("_", 1)[-1] for p in prometheus.glob("counter_*")}

    try:
        # The kernel hands connections to whichever worker accepts first, and a busy
        # machine can give one worker the first hundreds: go on until both have served.
        requests = 0
        while requests < 40 or (len(served()) < 2 and requests < 2000):
            assert _get(port, "/api/v1/campaigns")[0] == 401
            requests += 1
        answers = set()
        for _ in range(10):
            status, body = _get(port, "/metrics")
            assert status == 200
            samples = parse(body)
            unauthorised = sum(
                value
                for labels, value in family(samples, "flask_http_request_total").items()
                if dict(labels)["status"] == "401"
            )
            answers.add(unauthorised)
            assert family(samples, "sendfleet_recipients"), "send-side metrics missing"
        assert answers == {requests}
        workers = set(re.findall(r"Booting worker with pid: (\d+)", _log(tmp_path)))
        assert len(workers & served()) == 2, (workers, served())  # both served requests
        assert not (tmp_path / "prometheus" / "stale_counter_999.db").exists()
    finally:
        stop_api(process)
