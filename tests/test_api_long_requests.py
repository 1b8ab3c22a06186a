"""Long requests: an upload slower than gunicorn's worker timeout, and imports that arrive
together.

- The API as the image starts it (ops/entrypoint.sh api) serves requests on threads: a CSV
  that trickles in for longer than the worker timeout (an operator's uplink, a proxy that
  streams the body) is imported, not cut off by the arbiter killing its worker, and the
  same worker answers other requests meanwhile. Here the timeout is cut to 2 s and the
  upload takes about 6 s; one worker, so nothing else could answer.
- Imports take turns within a process (app.services.import_slots): imports into different
  campaigns sent at once never run together, and two into one campaign both finish with
  exact counts, the second finding the first's rows already there.
"""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any

from sqlalchemy import func, select

from app.models import Recipient
from app.services import imports
from tests.gunicorn_api import csv_rows, get, start_api, stop_api, trickled_upload

ROWS = 2000


def test_an_upload_slower_than_the_worker_timeout_is_imported_and_the_worker_answers_meanwhile(
    app, api, api_key, factory, session, settings_env, tmp_path
):
    campaign = factory.create_campaign()
    env = {
        **os.environ,
        **settings_env,
        "API_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "gunicorn.log"
    process, port = start_api(env, log, "--timeout", "2")
    try:
        result: dict[str, Any] = {}

        def upload() -> None:
            try:
                result.update(
                    trickled_upload(port, api_key, campaign.id, csv_rows(ROWS), seconds=6)
                )
            except Exception as exc:  # the assertion below names it
                result["error"] = repr(exc)

        uploading = threading.Thread(target=upload)
        started = time.monotonic()
        uploading.start()
        answers: list[float] = []
        while uploading.is_alive():
            asked = time.monotonic()
            status, body = get(port, "/api/v1/health", timeout=30)
            answers.append(time.monotonic() - asked)
            assert status == 200, body
            time.sleep(0.2)
        uploading.join()
        took = time.monotonic() - started

        assert result.get("status") == 201, (result, log.read_text(errors="replace")[-3000:])
        assert result["body"]["imported"] == ROWS
        assert took > 4, took  # longer than the worker timeout, twice over
        # The one worker answered all along: a sync worker would have queued these behind
        # the upload (and been killed by the arbiter 2 s into it).
        assert len(answers) >= 10 and max(answers) < 1.5, answers
        assert "WORKER TIMEOUT" not in log.read_text(errors="replace")
        session.expire_all()
        stored = session.execute(
            select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign.id)
        ).scalar_one()
        assert stored == ROWS
    finally:
        stop_api(process)


def _concurrency_probe(monkeypatch: Any) -> dict[str, int]:
    """Counts the imports running at once (import_csv entered, not yet returned); each
    lasts at least 0.3 s, so that imports not made to take turns would overlap."""
    seen = {"now": 0, "most": 0, "runs": 0}
    lock = threading.Lock()
    real = imports.import_csv

    def probed(*args: Any, **kwargs: Any) -> Any:
        with lock:
            seen["now"] += 1
            seen["runs"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            time.sleep(0.3)
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(imports, "import_csv", probed)
    return seen


def _post_all(app: Any, key: str, uploads: list[tuple[int, bytes]]) -> list[Any]:
    """Each (campaign id, CSV) POSTed from its own thread, all released at once."""
    answers: list[Any] = [None] * len(uploads)
    gate = threading.Barrier(len(uploads))

    def post(index: int, campaign_id: int, content: bytes) -> None:
        client = app.test_client()
        gate.wait()
        response = client.post(
            f"/api/v1/campaigns/{campaign_id}/recipients",
            data={"file": (io.BytesIO(content), "contacts.csv")},
            content_type="multipart/form-data",
            headers={"Authorization": f"Bearer {key}"},
        )
        answers[index] = (response.status_code, response.get_json())

    # Daemons: a deadlock fails the test below instead of hanging the run.
    threads = [
        threading.Thread(target=post, args=(i, campaign_id, content), daemon=True)
        for i, (campaign_id, content) in enumerate(uploads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "an import never finished"
    return answers


def test_imports_into_different_campaigns_sent_at_once_take_turns(
    app, api_key, factory, monkeypatch
):
    seen = _concurrency_probe(monkeypatch)
    campaigns = [factory.create_campaign() for _ in range(3)]
    answers = _post_all(app, api_key, [(c.id, csv_rows(300)) for c in campaigns])
    assert [status for status, _ in answers] == [201, 201, 201], answers
    assert [body["imported"] for _, body in answers] == [300, 300, 300]
    assert seen["runs"] == 3
    assert seen["most"] == 1, seen


def test_two_imports_into_one_campaign_sent_at_once_both_finish(
    app, api_key, factory, monkeypatch, session
):
    seen = _concurrency_probe(monkeypatch)
    campaign = factory.create_campaign()
    # Rows 0-299 and 200-499: whichever goes second finds 100 already in the campaign.
    answers = _post_all(
        app, api_key, [(campaign.id, csv_rows(300)), (campaign.id, csv_rows(300, 200))]
    )
    assert [status for status, _ in answers] == [201, 201], answers
    assert sorted(body["imported"] for _, body in answers) == [200, 300]
    assert sorted(body["rejected"]["duplicate"] for _, body in answers) == [0, 100]
    assert seen["most"] == 1, seen
    session.expire_all()
    stored = session.execute(
        select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign.id)
    ).scalar_one()
    assert stored == 500
