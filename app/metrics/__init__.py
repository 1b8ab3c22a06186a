"""GET /metrics: the API's own HTTP metrics (prometheus-flask-exporter, `flask_http_*`) and
the send side's (app.metrics.collector, `sendfleet_*`).

Under gunicorn with several workers each process counts its own requests; with
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it) prometheus_client writes them to
files in that directory and every worker's /metrics sums them all, so whichever worker
Prometheus reaches answers the same. The send-side metrics are read from PostgreSQL and
Redis at scrape time and need no such care."""

from __future__ import annotations

import hmac

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_flask_exporter import PrometheusMetrics
from redis import Redis

from app.errors import error_response
from app.metrics.collector import SendfleetCollector

METRICS_PATH = "/metrics"


def init_metrics(app: Flask) -> PrometheusMetrics:
    settings = app.extensions["settings"]
    # One registry per app: tests build several apps in one process, and the exporter
    # registers its request metrics on the registry it is given.
    registry = CollectorRegistry()
    exporter = PrometheusMetrics(
        app,
        path=None,
        registry=registry,
        group_by="url_rule",
        excluded_paths=[f"^{METRICS_PATH}$"],
    )
    collector = SendfleetCollector(app)
    app.extensions["metrics_registry"] = registry
    app.extensions["metrics_collector"] = collector
    broker_url = settings.celery_broker_url
    if broker_url and broker_url != settings.redis_url:
        app.extensions["metrics_broker_redis"] = Redis.from_url(
            broker_url, socket_connect_timeout=2, socket_timeout=5
        )

    def metrics_view() -> Response | tuple[Response, int]:
        token = settings.metrics_bearer_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token.get_secret_value()}".encode()
            if not hmac.compare_digest(given.encode(), expected):
                return error_response(401, "unauthorized", "a valid metrics token is required")
        scraped = _scrape_registry(registry, collector, settings.prometheus_multiproc_dir)
        return Response(generate_latest(scraped), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule(METRICS_PATH, "metrics", metrics_view, methods=["GET"])
    return exporter


def _scrape_registry(
    own: CollectorRegistry, collector: SendfleetCollector, multiprocess_dir: str | None
) -> CollectorRegistry:
    # prometheus_client decides by PROMETHEUS_MULTIPROC_DIR when it is imported; the setting
    # is the same variable, so this follows what the process's counters really do.
    if not multiprocess_dir:
        registry = CollectorRegistry()
        registry.register(_Both(own, collector))
        return registry
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(collector)
    return registry


class _Both:
    """This process's request metrics plus the send side, as one collector."""

    def __init__(self, own: CollectorRegistry, collector: SendfleetCollector) -> None:
        self.own = own
        self.collector = collector

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.own.collect()
        yield from self.collector.collect()


_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exported_names(app: Flask) -> set[str]:
    """Every sample name /metrics can show, from the registry and the collector themselves
    (the alert rules and the Grafana dashboard are checked against this)."""
    families = [*app.extensions["metrics_registry"].collect()]
    families += [*app.extensions["metrics_collector"].describe()]
    return {
        family.name + suffix
        for family in families
        for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",))
    }
