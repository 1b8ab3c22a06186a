"""Reading /metrics the way Prometheus does (its text format, parsed by prometheus_client),
and the database's own figures to compare with."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

OUTCOMES_BY_ACCOUNT = text(
    """
    SELECT account_id, type,
           CASE WHEN data->>'smtp_code' ~ '^[0-9]{3}$'
                THEN left(data->>'smtp_code', 1) || 'xx' ELSE 'none' END AS reply_class,
           count(*) AS n
    FROM events
    WHERE type IN ('sent', 'deferred', 'bounced', 'failed', 'unknown', 'requeued')
    GROUP BY 1, 2, 3
    """
)


def parse(body: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def family(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def outcome_counts(samples: Samples) -> Counter[tuple[str, str, str]]:
    """sendfleet_send_outcomes_total as {(account_id, outcome, reply_class): n}."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for labels, value in family(samples, "sendfleet_send_outcomes_total").items():
        label = dict(labels)
        counts[(label["account_id"], label["outcome"], label["reply_class"])] += int(value)
    return counts


def database_outcomes(session: Any) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in session.execute(OUTCOMES_BY_ACCOUNT):
        account = "" if row.account_id is None else str(row.account_id)
        counts[(account, row.type, row.reply_class)] = row.n
    return counts
