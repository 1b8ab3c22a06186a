"""The API stopped as a deploy stops it (SIGTERM to gunicorn's master, `ops/entrypoint.sh api`)
while an upload is under way.

- Within API_GRACEFUL_TIMEOUT the upload is finished and imported: the worker serves no new
  request, the one in flight is answered 201 with every row stored, and only then
  does the master exit. Compose gives the api service longer than that to stop
  (tests/deploy/test_compose_files.py), where Docker's default 10 s cut such an upload off.
- Past API_GRACEFUL_TIMEOUT the worker is killed: the client gets no answer, nothing of the
  upload is stored, and the master is gone shortly after the timeout, so a deploy is never
  held up longer than that.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.models import Recipient
from tests.gunicorn_api import csv_rows, get, start_api, trickled_upload

ROWS = 2000


def _api(settings_env: dict[str, str], tmp_path: Path, graceful: int) -> tuple[Any, int, Path]:
    env = {
        **os.environ,
        **settings_env,
        "API_WORKERS": "1",
        "API_GRACEFUL_TIMEOUT": str(graceful),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "gunicorn.log"
    process, port = start_api(env, log)
    return process, port, log


def _upload_in_background(
    port: int, key: str, campaign_id: int, seconds: float
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def upload() -> None:
        try:
            result.update(trickled_upload(port, key, campaign_id, csv_rows(ROWS), seconds))
        except Exception as exc:  # the assertions name it
            result["error"] = repr(exc)
        result["ended"] = time.monotonic()

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    return thread, result


def _stored(session: Any, campaign_id: int) -> int:
    session.expire_all()
    return session.execute(
        select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign_id)
    ).scalar_one()


@dataclass
class Stopped:
    process: Any  # gunicorn's master
    port: int
    log: Path
    uploading: threading.Thread
    result: dict[str, Any]  # the upload's status and body, or error; when it ended
    at: float  # monotonic time of the SIGTERM


@contextmanager
def _stopped_mid_upload(
    settings_env: dict[str, str],
    tmp_path: Path,
    key: str,
    campaign_id: int,
    *,
    graceful: int,
    upload: float,
) -> Iterator[Stopped]:
    """The API with API_GRACEFUL_TIMEOUT `graceful`, an upload of ROWS rows trickled over
    `upload` seconds, and 1.5 s into it (a quarter of the file or less sent) SIGTERM to the
    master, as Docker signals it. The API is killed on the way out if still running."""
    process, port, log = _api(settings_env, tmp_path, graceful)
    try:
        uploading, result = _upload_in_background(port, key, campaign_id, upload)
        time.sleep(1.5)
        at = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        yield Stopped(process, port, log, uploading, result, at)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_an_upload_in_flight_when_the_api_is_stopped_is_finished_and_imported(
    api_key, factory, session, settings_env, tmp_path
):
    campaign = factory.create_campaign()
    with _stopped_mid_upload(
        settings_env, tmp_path, api_key, campaign.id, graceful=30, upload=6
    ) as stop:
        # A request arriving now is not served (it waits in the listen queue, to be reset
        # when the worker exits), while the one in flight goes on.
        time.sleep(0.5)
        try:
            answer: Any = get(stop.port, "/api/v1/health", timeout=2)
        except OSError as exc:  # the timeout
            answer = exc
        assert isinstance(answer, OSError), answer
        assert stop.process.poll() is None, "the master exited with an upload in flight"
        stop.uploading.join(30)
        result = stop.result
        assert result.get("status") == 201, (result, stop.log.read_text(errors="replace")[-3000:])
        assert result["body"]["imported"] == ROWS
        assert _stored(session, campaign.id) == ROWS
        assert stop.process.wait(15) == 0
        exited = time.monotonic()
        # It waited for the upload (about 4.5 s more after the signal), then went at once.
        assert result["ended"] - stop.at > 3, result["ended"] - stop.at
        assert exited - stop.at < 15


def test_an_upload_outlasting_the_graceful_timeout_is_cut_and_nothing_of_it_is_stored(
    api_key, factory, session, settings_env, tmp_path
):
    campaign = factory.create_campaign()
    with _stopped_mid_upload(
        settings_env, tmp_path, api_key, campaign.id, graceful=2, upload=10
    ) as stop:
        stop.process.wait(15)
        exited = time.monotonic()
        stop.uploading.join(30)
        # No answer: the worker was killed mid-request.
        assert "status" not in stop.result and "error" in stop.result, stop.result
        assert _stored(session, campaign.id) == 0
        # The graceful timeout, plus the master's own reaping; not the upload's 10 s.
        assert 1.5 < exited - stop.at < 8, exited - stop.at
