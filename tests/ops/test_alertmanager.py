"""ops/alertmanager/run.sh, the alertmanager service's command, run natively with Debian's
Alertmanager and, as in the image, busybox's sh and tools alone on the PATH: the chat, bot
token and Bot API base come from the env file's Telegram settings (as the app reads them),
a firing alert reaches that chat through a Bot API stand-in (tests/bot_api.py), and
missing or malformed settings stop it with their name."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot_api import BotApiStandIn
from tests.e2e.private_stores import free_port

OPS = Path(__file__).resolve().parents[2] / "ops" / "alertmanager"
TOKEN = "123456:stand-in_Token"
CHAT = "-1001122334455"
# route.group_wait is 30 s: the first notification of a group leaves after that.
DELIVERY_SECONDS = 90

BUSYBOX_TOOLS = ("sh", "sed", "mv", "mkdir", "chmod")

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus-alertmanager") is None or shutil.which("busybox") is None,
    reason="prometheus-alertmanager or busybox is not installed (ops/dev/debs.txt)",
)


@pytest.fixture
def image_path(tmp_path: Path) -> str:
    """A PATH of busybox's applets only, as the prom/alertmanager image has."""
    folder = tmp_path / "busybox-bin"
    folder.mkdir()
    for tool in BUSYBOX_TOOLS:
        (folder / tool).symlink_to(shutil.which("busybox") or "busybox")
    return str(folder)


def image_env(image_path: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """run.sh's environment as the container has it, with the template where it is here."""
    return {
        "PATH": image_path,
        "ALERTMANAGER_TEMPLATE": str(OPS / "alertmanager.yml"),
        "ALERTMANAGER_RUN_DIR": str(tmp_path / "run"),
        **more,
    }


def run_sh(
    image_path: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{image_path}/sh", str(OPS / "run.sh"), *args],
        env=image_env(image_path, tmp_path, **env),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.fixture
def alertmanager(tmp_path: Path, bot_api: BotApiStandIn, image_path: str) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [f"{image_path}/sh", str(OPS / "run.sh"), f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={tmp_path / 'data'}", "--cluster.listen-address="],
        env=image_env(image_path, tmp_path,
                      ALERTMANAGER_BIN=shutil.which("prometheus-alertmanager") or "",
                      TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=CHAT,
                      TELEGRAM_API_BASE=bot_api.base),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_a_firing_alert_reaches_the_env_files_chat(
    alertmanager: str, bot_api: BotApiStandIn, tmp_path: Path
) -> None:
    alert = [{
        "labels": {"alertname": "SendfleetWorkersDown", "severity": "critical"},
        "annotations": {"summary": "no send worker answers"},
    }]  # fmt: skip
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(alert).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()

    deadline = time.monotonic() + DELIVERY_SECONDS
    while not bot_api.delivered():
        assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
        time.sleep(0.5)
    [sent] = bot_api.delivered()
    assert sent.path == f"/bot{TOKEN}/sendMessage"
    assert str(sent.body["chat_id"]) == CHAT
    assert sent.text.startswith("FIRING SendfleetWorkersDown (critical)")
    assert "no send worker answers" in sent.text
    # The token is in the rendered copy alone, which only this user can read.
    rendered = tmp_path / "run" / "alertmanager.yml"
    assert TOKEN in rendered.read_text()
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "run").stat().st_mode & 0o777) == "0o700"
    assert TOKEN not in (OPS / "alertmanager.yml").read_text()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN}, "set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "@oncall"}, "must be a number"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "12-3"}, "must be a number"),
        ({"TELEGRAM_BOT_TOKEN": "no-colon", "TELEGRAM_CHAT_ID": CHAT}, "look like a bot token"),
        ({"TELEGRAM_BOT_TOKEN": "1:a|b&c", "TELEGRAM_CHAT_ID": CHAT}, "look like a bot token"),
        (
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_CHAT_ID": CHAT,
                "TELEGRAM_API_BASE": "ftp://example.org",
            },
            "must be an http(s) URL",
        ),
    ],
)
def test_missing_or_malformed_settings_stop_it_with_their_name(
    image_path: str, tmp_path: Path, env: dict[str, str], said: str
) -> None:
    done = run_sh(image_path, tmp_path, "--render-only", str(tmp_path / "out.yml"), **env)
    assert done.returncode == 78
    assert said in done.stderr
    assert not (tmp_path / "out.yml").exists()


def test_run_sh_is_posix_sh_that_shellcheck_passes() -> None:
    # The image has busybox's sh, not bash.
    assert (OPS / "run.sh").read_text().startswith("#!/bin/sh\n")
    done = subprocess.run(
        ["shellcheck", "-s", "sh", str(OPS / "run.sh")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
