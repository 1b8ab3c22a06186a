"""The API started as the image starts it (`ops/entrypoint.sh api`: gunicorn --preload,
threaded workers, ./gunicorn.conf.py), for the tests that need the real server."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_api(env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The API on `env` (API_BIND 127.0.0.1:0 by default), gunicorn's further `args` appended;
    returns the process (the entrypoint execs gunicorn: its pid is the master's) and the port,
    once every worker has booted."""
    env = {"API_BIND": "127.0.0.1:0", **env}
    workers = int(env.get("API_WORKERS", "2"))
    process = subprocess.Popen(
        ["bash", "ops/entrypoint.sh", "api", *args],
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
        if port and text.count("Booting worker") >= workers:
            return process, int(port.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")


def stop_api(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(20)


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    # A new connection each time, so the kernel hands requests to either worker.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
