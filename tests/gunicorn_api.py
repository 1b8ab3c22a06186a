"""The API started as the image starts it (`ops/entrypoint.sh api`: gunicorn --preload,
threaded workers, ./gunicorn.conf.py), for the tests that need the real server."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

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


def csv_rows(rows: int, start: int = 0) -> bytes:
    lines = ["email,first_name"] + [
        f"p{i}@firm{i % 50}.example,P{i}" for i in range(start, start + rows)
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def multipart(content: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="contacts.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return boundary, body


def trickled_upload(
    port: int, key: str, campaign_id: int, content: bytes, seconds: float
) -> dict[str, Any]:
    """POSTs the CSV `content` to the campaign's recipients in 12 pieces spread over
    `seconds`; the status and JSON answer."""
    boundary, body = multipart(content)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("POST", f"/api/v1/campaigns/{campaign_id}/recipients")
        connection.putheader("Authorization", f"Bearer {key}")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        size = -(-len(body) // 12)
        for start in range(0, len(body), size):
            connection.send(body[start : start + size])
            time.sleep(seconds / 12)
        response = connection.getresponse()
        return {"status": response.status, "body": json.loads(response.read())}
    finally:
        connection.close()
