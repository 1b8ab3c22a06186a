"""The send-side metrics, read from PostgreSQL and Redis when Prometheus scrapes: correct
with any number of worker processes and nodes, since none of them holds a value. Each part
is read on its own; one that fails (the database away, a statement timeout) is left out and
reported by `sendfleet_metrics_part_up{part}` = 0 instead of failing the whole scrape.

Every name here is listed in FAMILIES, with its type, labels and help: the Grafana dashboard
and the alert rules are checked against it (tests/test_metrics_names.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.metrics import counters
from app.metrics.event_totals import outcome_totals

log = logging.getLogger(__name__)

MetricFamily = CounterMetricFamily | GaugeMetricFamily

SEND_QUEUES = ("sendfleet.send", "sendfleet.dispatch")
# Kombu's Redis transport keeps each priority level of a queue in its own list.
_PRIORITY_SEPARATOR = "\x06\x16"


@dataclass(frozen=True)
class Family:
    name: str  # without the _total a counter's samples get
    kind: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...] = ()

    def empty(self) -> MetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "sendfleet_send_outcomes",
            "counter",
            "Send attempts by account, outcome (sent, deferred, bounced, failed, unknown, "
            "requeued) and SMTP reply class (2xx, 4xx, 5xx, none), from the events table",
            ("account_id", "provider", "outcome", "reply_class"),
        ),
        Family("sendfleet_recipients", "gauge", "Recipients by status", ("status",)),
        Family("sendfleet_queue_depth", "gauge", "Tasks waiting in a Celery queue", ("queue",)),
        Family(
            "sendfleet_queue_unacked",
            "gauge",
            "Tasks delivered to a worker and not yet acknowledged (all queues)",
        ),
        Family(
            "sendfleet_account_info",
            "gauge",
            "One per account (value 1), with its name, provider, sending domain and status",
            ("account_id", "name", "provider", "sending_domain", "status"),
        ),
        Family(
            "sendfleet_account_sent_today",
            "gauge",
            "Sends in the account's day window (the limiter's, or the database's)",
            ("account_id",),
        ),
        Family(
            "sendfleet_account_cap_today",
            "gauge",
            "The account's daily cap in force today (provider or account cap, warm-up ramp)",
            ("account_id",),
        ),
        Family(
            "sendfleet_account_capacity_used_ratio",
            "gauge",
            "sent_today / cap_today (0 when the cap is 0)",
            ("account_id",),
        ),
        Family("sendfleet_account_warmup_day", "gauge", "Warm-up day", ("account_id",)),
        Family(
            "sendfleet_account_consecutive_failures",
            "gauge",
            "Session failures in a row",
            ("account_id",),
        ),
        Family(
            "sendfleet_blacklist_listed",
            "gauge",
            "1 when the latest blacklist check of the target found it listed",
            ("target", "kind"),
        ),
        Family(
            "sendfleet_blacklist_unknown",
            "gauge",
            "1 when the latest check could not tell (a list timed out or refused to answer)",
            ("target", "kind"),
        ),
        Family(
            "sendfleet_blacklist_lists_hit",
            "gauge",
            "How many lists the latest check of the target found it on",
            ("target", "kind"),
        ),
        Family(
            "sendfleet_blacklist_checked_timestamp_seconds",
            "gauge",
            "When the target was last checked (Unix time)",
            ("target", "kind"),
        ),
        Family(
            "sendfleet_limiter_refusals",
            "counter",
            "Reservations the rate limiter refused, by the scope that said no",
            ("scope",),
        ),
        Family("sendfleet_dispatch_ticks", "counter", "Dispatcher passes that ran"),
        Family(
            "sendfleet_dispatch_seconds",
            "counter",
            "Time spent in dispatcher passes (rate / rate of ticks = mean tick duration)",
        ),
        Family("sendfleet_dispatch_queued", "counter", "Recipients the dispatcher queued"),
        Family("sendfleet_dispatch_last_tick_seconds", "gauge", "Duration of the last pass"),
        Family(
            "sendfleet_dispatch_last_tick_timestamp_seconds",
            "gauge",
            "When the last dispatcher pass ended (Unix time)",
        ),
        Family(
            "sendfleet_worker_processes",
            "gauge",
            "Send processes with a live heartbeat in Redis, by host",
            ("host",),
        ),
        Family(
            "sendfleet_metrics_part_up",
            "gauge",
            "1 when the part of this scrape could be read, 0 when it failed",
            ("part",),
        ),
        Family(
            "sendfleet_metrics_part_duration_seconds",
            "gauge",
            "How long reading the part took in this scrape",
            ("part",),
        ),
    )
}


def _family(name: str) -> MetricFamily:
    return FAMILIES[name].empty()


# From the counters the recipients' statement triggers keep (migration 0013): a few rows per
# campaign, not a scan of every recipient at every scrape.
RECIPIENTS_BY_STATUS = text(
    "SELECT status, sum(n)::bigint AS n FROM recipient_counts GROUP BY status HAVING sum(n) <> 0"
)
LATEST_BLACKLIST = text(
    """
    SELECT DISTINCT ON (target) target, target_kind, listed, status,
           coalesce(cardinality(lists_hit), 0) AS hits, checked_at
    FROM blacklist_checks ORDER BY target, checked_at DESC
    """
)


class SendfleetCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> Iterator[Metric]:
        for name in FAMILIES:
            yield _family(name)

    def collect(self) -> Iterator[Metric]:
        from app.extensions import db

        redis: Redis = self.app.extensions["redis"]
        broker = self.app.extensions.get("metrics_broker_redis", redis)
        up = _family("sendfleet_metrics_part_up")
        took = _family("sendfleet_metrics_part_duration_seconds")
        with self.app.app_context(), Session(db.engine) as session:
            timeout_ms = int(self.app.extensions["settings"].metrics_query_timeout_seconds * 1000)
            parts: Sequence[tuple[str, bool, Callable[[], list[Metric]]]] = (
                ("outcomes", True, lambda: _outcomes(session, redis)),
                ("recipients", True, lambda: _recipients(session)),
                ("accounts", True, lambda: _accounts(session, redis, self.app)),
                ("blacklist", True, lambda: _blacklist(session)),
                ("queues", False, lambda: _queues(broker)),
                ("limiter", False, lambda: _limiter(redis)),
                ("dispatch", False, lambda: _dispatch(redis)),
                ("workers", False, lambda: _workers(redis)),
            )
            for part, uses_database, read in parts:
                started = time.perf_counter()
                try:
                    metrics = _read(session, read, timeout_ms) if uses_database else read()
                except Exception as exc:  # one part must not fail the scrape
                    log.warning(
                        "metrics.part_failed",
                        extra={"part": part, "error": str(exc)[:300]},
                        exc_info=True,
                    )
                    up.add_metric([part], 0)
                else:
                    up.add_metric([part], 1)
                    yield from metrics
                took.add_metric([part], time.perf_counter() - started)
        yield up
        yield took


def _read(session: Session, read: Callable[[], list[Metric]], timeout_ms: int) -> list[Metric]:
    # Read-only, and bounded: a slow query costs one part of one scrape, not the API.
    with session.begin():
        session.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
        return read()


def _outcomes(session: Session, redis: Redis) -> list[Metric]:
    from app.models import Account

    providers = dict(session.execute(select(Account.id, Account.provider)).tuples().all())
    family = _family("sendfleet_send_outcomes")
    for key, n in sorted(
        outcome_totals(session, redis).items(),
        key=lambda item: (item[0].account_id or 0, item[0].outcome, item[0].reply_class),
    ):
        account = "" if key.account_id is None else str(key.account_id)
        provider = providers.get(key.account_id, "") if key.account_id is not None else ""
        family.add_metric([account, provider, key.outcome, key.reply_class], n)
    return [family]


def _recipients(session: Session) -> list[Metric]:
    from app.models import RecipientStatus

    counts = {s.value: 0 for s in RecipientStatus}
    counts.update({row.status: row.n for row in session.execute(RECIPIENTS_BY_STATUS)})
    family = _family("sendfleet_recipients")
    for status, n in counts.items():
        family.add_metric([status], n)
    return [family]


def _accounts(session: Session, redis: Redis, app: Flask) -> list[Metric]:
    from app.models import Account
    from app.services.accounts import with_pool_state

    accounts = session.execute(select(Account).order_by(Account.id)).scalars().all()
    states = with_pool_state(session, accounts, app.extensions["settings"], redis)
    names = (
        "sendfleet_account_info",
        "sendfleet_account_sent_today",
        "sendfleet_account_cap_today",
        "sendfleet_account_capacity_used_ratio",
        "sendfleet_account_warmup_day",
        "sendfleet_account_consecutive_failures",
    )
    info, sent, cap, ratio, warmup, failures = (_family(n) for n in names)
    for account, state in zip(accounts, states, strict=True):
        label = [str(account.id)]
        info.add_metric(
            [*label, account.name, account.provider, account.sending_domain, account.status], 1
        )
        sent.add_metric(label, state["sent_today"])
        cap.add_metric(label, state["cap_today"])
        used = state["sent_today"] / state["cap_today"] if state["cap_today"] else 0
        ratio.add_metric(label, used)
        warmup.add_metric(label, account.warmup_day)
        failures.add_metric(label, account.consecutive_failures)
    return [info, sent, cap, ratio, warmup, failures]


def _blacklist(session: Session) -> list[Metric]:
    listed, unknown, hits, checked = (
        _family(n)
        for n in (
            "sendfleet_blacklist_listed",
            "sendfleet_blacklist_unknown",
            "sendfleet_blacklist_lists_hit",
            "sendfleet_blacklist_checked_timestamp_seconds",
        )
    )
    for row in session.execute(LATEST_BLACKLIST):
        labels = [row.target, row.target_kind]
        listed.add_metric(labels, 1 if row.listed else 0)
        unknown.add_metric(labels, 1 if row.status == "unknown" else 0)
        hits.add_metric(labels, row.hits)
        checked.add_metric(labels, _timestamp(row.checked_at))
    return [listed, unknown, hits, checked]


def _queues(broker: Redis) -> list[Metric]:
    depth = _family("sendfleet_queue_depth")
    with broker.pipeline(transaction=False) as pipe:
        for queue in SEND_QUEUES:
            pipe.llen(queue)
            for priority in range(1, 10):
                pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{priority}")
        pipe.hlen("unacked")
        lengths = pipe.execute()
    per_queue = 10
    for i, queue in enumerate(SEND_QUEUES):
        depth.add_metric([queue], sum(lengths[i * per_queue : (i + 1) * per_queue]))
    unacked = _family("sendfleet_queue_unacked")
    unacked.add_metric([], lengths[-1])
    return [depth, unacked]


def _limiter(redis: Redis) -> list[Metric]:
    from rotator.limiter import Scope

    refusals = {scope.value: 0 for scope in Scope}
    refusals.update(counters.limiter_refusals(redis))
    family = _family("sendfleet_limiter_refusals")
    for scope, n in sorted(refusals.items()):
        family.add_metric([scope], n)
    return [family]


def _dispatch(redis: Redis) -> list[Metric]:
    ticks = counters.dispatch_ticks(redis)
    metrics: list[Metric] = []
    for name, value in (
        ("sendfleet_dispatch_ticks", ticks.ticks),
        ("sendfleet_dispatch_seconds", ticks.seconds),
        ("sendfleet_dispatch_queued", ticks.queued),
        ("sendfleet_dispatch_last_tick_seconds", ticks.last_seconds),
        ("sendfleet_dispatch_last_tick_timestamp_seconds", ticks.last_at),
    ):
        family = _family(name)
        if value is not None:
            family.add_metric([], value)
        metrics.append(family)
    return metrics


def _workers(redis: Redis) -> list[Metric]:
    hosts: dict[str, int] = {}
    for identity in counters.live_send_processes(redis):
        host = identity.rsplit(":", 2)[0]
        hosts[host] = hosts.get(host, 0) + 1
    family = _family("sendfleet_worker_processes")
    for host, n in sorted(hosts.items()):
        family.add_metric([host], n)
    return [family]


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.astimezone(UTC).timestamp()
    return float(value)
