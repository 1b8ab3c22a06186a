"""End-to-end with beat as ops/entrypoint.sh starts it (worker/beat_app.py, no Flask app in
the beat process): its dispatcher ticks reach a real worker and a campaign goes out."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Stack, make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account

CSV = "email,first_name\nann@example.org,Ann\nbob@example.org,Bob\n"


@pytest.fixture(scope="module")
def slim_stack(settings_env: dict[str, str], app: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("slim-stack")
    running = make_stack(settings_env, workdir)
    running.start_worker()
    log = open(workdir / "beat.log", "ab")  # noqa: SIM115 - lives with the process
    running.processes["beat"] = subprocess.Popen(
        ["bash", "ops/entrypoint.sh", "beat"],
        cwd=ROOT,
        env={**running.env, "BEAT_SCHEDULE_FILE": str(workdir / "beat-schedule")},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield running
    running.stop()


def test_a_campaign_goes_out_with_the_slim_beat(slim_stack, api, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server), daily_limit=100)
    created = api.post(
        "/api/v1/campaigns",
        data={
            "name": "slim beat",
            "subject": "Hi {{ first_name }}",
            "body_text": "Hello {{ first_name }}.",
            "file": (io.BytesIO(CSV.encode()), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )
    assert created.status_code == 201, created.get_json()
    campaign = created.get_json()["id"]
    assert api.post(f"/api/v1/campaigns/{campaign}/start").status_code == 200

    wait_until(settled(campaign), 60, "the campaign to be sent")
    assert status_counts(campaign) == {"sent": 2}, slim_stack.log("beat")[-3000:]
    assert sorted(r.recipients[0] for r in smtp_server.received) == [
        "ann@example.org",
        "bob@example.org",
    ]
    assert slim_stack.processes["beat"].poll() is None, slim_stack.log("beat")[-3000:]
    assert "Traceback" not in slim_stack.log("beat")
