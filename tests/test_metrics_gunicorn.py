"""/metrics under gunicorn with two workers (started as the image starts it, picking up
./gunicorn.conf.py): whichever worker answers, the request counters are the whole API's."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.metrics_scrape import family, parse

ROOT = Path(__file__).resolve().parents[1]


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "app:create_app()"),
            *("--bind", "127.0.0.1:0", "--workers", "2", "--preload"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        text = log.read_text(errors="replace")
        port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if port and text.count("Booting worker") >= 2:
            return process, int(port.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _log(tmp_path: Path) -> str:
    return (tmp_path / "gunicorn.log").read_text(errors="replace")


def _get(port: int, path: str) -> tuple[int, str]:
    # A new connection each time, so the kernel hands requests to either worker.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_every_worker_reports_the_requests_of_both(app, settings_env, tmp_path):
    env = {
        **os.environ,
        **settings_env,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "stale_counter_999.db").write_bytes(b"left from a previous run")
    process, port = _start(env, tmp_path / "gunicorn.log")
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
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
