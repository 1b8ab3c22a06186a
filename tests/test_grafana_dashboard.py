"""ops/grafana as shipped: the provisioned datasource is the one every panel uses, the
provider loads the directory the dashboards are mounted at, every panel's PromQL parses
(promtool) and reads only metrics the application really exports (its registry and
collector), and the dashboard shows what on-call needs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.metrics import exported_names
from tests.promql_names import BUILTIN, metric_names

GRAFANA = Path(__file__).resolve().parents[1] / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "sendfleet.json"
# What Grafana puts in place of its variables, for checking.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$account_id": ".*"}


def _panels(panels: list[dict]) -> list[dict]:
    found = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels", []))
    return found


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable query."""
    found = []
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in _dashboard()["templating"]["list"]:
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        metric = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
        assert metric, f"variable {variable['name']}: unexpected query {query!r}"
        found.append((f"variable {variable['name']}", metric.group(1)))
    return found


def _substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_every_panel_reads_only_exported_metrics(app):
    exported = exported_names(app)
    expressions = _expressions()
    assert len(expressions) >= 15
    for where, expr in expressions:
        names = metric_names(_substituted(expr))
        assert names, f"{where}: reads no metric: {expr}"
        unknown = names - BUILTIN - exported
        assert not unknown, f"{where}: {sorted(unknown)} not exported"


def test_every_panel_query_parses(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run `bash ops/dev/debs.sh` (ops/dev/debs.txt)")
    rules = [
        {"record": f"sendfleet:dashboard_check:{i}", "expr": _substituted(expr)}
        for i, (_, expr) in enumerate(_expressions())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_use_the_provisioned_datasource_and_the_provider_finds_the_dashboard():
    [datasource] = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/sendfleet.yml").read_text())[
        "providers"
    ]
    compose = Path(__file__).resolve().parents[1] / "docker-compose.yml"
    if compose.exists():
        assert f"./ops/grafana/dashboards:{provider['options']['path']}" in compose.read_text()


def test_the_dashboard_shows_what_on_call_needs():
    text = " ".join(expr for _, expr in _expressions())
    for needed in (
        'sendfleet_send_outcomes_total{account_id=~"$account_id",outcome="sent"}',  # per account
        "sum by (provider)",  # per provider
        "by (outcome, reply_class)",  # reply classes
        'outcome="bounced"',  # bounce rate
        "sendfleet_queue_depth",
        "sendfleet_limiter_refusals_total",
        "sendfleet_account_capacity_used_ratio",
        "sendfleet_account_warmup_day",
    ):
        assert needed in text, needed
    ids = [panel["id"] for panel in _panels(_dashboard()["panels"])]
    assert len(ids) == len(set(ids))
