"""ops/prometheus and ops/alertmanager as shipped: promtool and amtool accept them, the alert
rules pass their unit tests (ops/prometheus/tests/), and every metric a rule reads is one
the application really exports (names from its registry and collector)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.metrics import exported_names
from tests.promql_names import BUILTIN, metric_names

OPS = Path(__file__).resolve().parents[1] / "ops"
PROMETHEUS = OPS / "prometheus"
ALERTMANAGER = OPS / "alertmanager" / "alertmanager.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `bash ops/dev/debs.sh` (ops/dev/debs.txt)")
    return path


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _rules() -> list[dict]:
    rules = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


def test_promtool_accepts_the_config_and_its_rule_files():
    output = _run(_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "1 rule files found" in output
    rule_files = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    _run(_tool("promtool"), "check", "rules", *rule_files)


def test_the_alert_rules_pass_their_unit_tests():
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*_test.yml"))
    assert tests
    output = _run(_tool("promtool"), "test", "rules", *tests)
    assert "SUCCESS" in output


def test_the_rules_cover_what_on_call_needs():
    names = {rule["alert"] for rule in _rules()}
    assert {
        "SendfleetWorkersDown",
        "SendfleetBounceSpike",
        "SendfleetHttp5xxBurst",
        "SendfleetAccountNearDailyCap",
        "SendfleetQueueNotDraining",
        "SendfleetBlacklisted",
    } <= names
    tested = (PROMETHEUS / "tests" / "sendfleet_test.yml").read_text()
    for name in names:
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"


def test_every_metric_a_rule_reads_is_exported(app):
    exported = exported_names(app)
    assert "sendfleet_send_outcomes_total" in exported and "flask_http_request_total" in exported
    for rule in _rules():
        # The expression, and the queries its annotations run (`...` inside a template).
        expressions = [rule["expr"]]
        for annotation in rule.get("annotations", {}).values():
            expressions += re.findall(r"`([^`]*)`", annotation)
        for expression in expressions:
            unknown = metric_names(expression) - BUILTIN - exported
            assert not unknown, (rule["alert"], unknown)


def test_amtool_accepts_the_alertmanager_config_as_run_sh_renders_it(tmp_path):
    """The shipped file is a template without any token; ops/alertmanager/run.sh fills it
    from the env file's Telegram settings, and amtool accepts the result."""
    amtool = _tool("amtool")
    [telegram] = yaml.safe_load(ALERTMANAGER.read_text())["receivers"][0]["telegram_configs"]
    assert telegram["bot_token"] == "__TELEGRAM_BOT_TOKEN__"
    assert telegram["chat_id"] == "__TELEGRAM_CHAT_ID__"
    rendered = tmp_path / "alertmanager.yml"
    env = {
        "PATH": "/usr/bin:/bin",
        "ALERTMANAGER_TEMPLATE": str(ALERTMANAGER),
        "TELEGRAM_BOT_TOKEN": "123456:test-Token_x",
        "TELEGRAM_CHAT_ID": "-1009876543210",
    }
    done = subprocess.run(
        ["sh", str(ALERTMANAGER.parent / "run.sh"), "--render-only", str(rendered)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"
    [filled] = yaml.safe_load(rendered.read_text())["receivers"][0]["telegram_configs"]
    assert (filled["bot_token"], filled["chat_id"]) == ("123456:test-Token_x", -1009876543210)
    assert filled["api_url"] == "https://api.telegram.org"
    output = _run(amtool, "check-config", str(rendered))
    assert "SUCCESS" in output and "1 receivers" in output
