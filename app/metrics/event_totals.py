"""Send outcomes per account, outcome and SMTP reply class as Prometheus counters, computed
from the events table at scrape time, so every API process on every node answers the same
and no worker process needs an exporter.

A full count over millions of events at every scrape would be too slow, so the totals are
kept as a running sum in Redis up to an event id (the watermark) plus a live count of the
few events past it (a primary-key range scan). The watermark only moves up to ids that can
no longer appear: ids come from a sequence, and a transaction can commit an event id lower
than one already visible. So each fold records a candidate (the sequence's last value, then
the transactions writing in this database at that moment) and moves the watermark to it
only at a later scrape, once every one of those transactions has ended.

When Redis loses the hash (restart without persistence, flush), the totals start again from
the first event of the current UTC day: a counter reset, which rate() and increase() handle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import WatchError
from sqlalchemy import text
from sqlalchemy.orm import Session

TOTALS_KEY = "sf:metrics:event-totals"
# Fields of the hash that are not totals.
THROUGH = "_through"  # every event with id <= this is in the totals
CANDIDATE_SEQ = "_candidate_seq"
CANDIDATE_XIDS = "_candidate_xids"

# The outcome events of one send attempt (worker.jobs.outcomes, worker.jobs.handbacks).
OUTCOME_EVENTS = ["sent", "deferred", "bounced", "failed", "unknown", "requeued"]

_GROUPED = """
    SELECT account_id, type,
           CASE WHEN data->>'smtp_code' ~ '^[0-9]{3}$'
                THEN left(data->>'smtp_code', 1) || 'xx' ELSE 'none' END AS reply_class,
           count(*) AS n
    FROM events
    WHERE id > :after UPPER AND type = ANY(:types)
    GROUP BY 1, 2, 3
"""
TAIL = text(_GROUPED.replace("UPPER", ""))
RANGE = text(_GROUPED.replace("UPPER", "AND id <= :through"))

# Read the sequence before the running transactions: an id handed out before this point
# belongs to a transaction that has committed, or that is writing in this database now.
SEQUENCE_POSITION = text(
    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'id')::regclass), 0)"
)
# Transactions of this database that have written something (an xid), other than ours. Only
# this database's: the cluster's oldest xid would let another database's long transaction
# hold the watermark back. (Needs the app's own role, or pg_read_all_stats, to see them.)
WRITING_TRANSACTIONS = text(
    """
    SELECT coalesce(string_agg(backend_xid::text, ','), '') FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    """
)
STILL_RUNNING = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid::text = ANY(:xids)
    """
)
ID_RANGE = text("SELECT min(id) AS low, max(id) AS high FROM events")
CREATED_AT_OR_AFTER = text("SELECT created_at FROM events WHERE id >= :id ORDER BY id LIMIT 1")


@dataclass(frozen=True)
class OutcomeKey:
    account_id: int | None
    outcome: str
    reply_class: str

    def field(self) -> str:
        account = "" if self.account_id is None else str(self.account_id)
        return f"{account}|{self.outcome}|{self.reply_class}"

    @classmethod
    def parse(cls, field: str) -> OutcomeKey:
        account, outcome, reply_class = field.split("|")
        return cls(int(account) if account else None, outcome, reply_class)


def outcome_totals(
    session: Session, redis: Redis, now: datetime | None = None
) -> dict[OutcomeKey, int]:
    """Every send outcome recorded so far (since the totals began), grouped."""
    fold(session, redis, now or datetime.now(UTC))
    stored = {_text(k): _text(v) for k, v in redis.hgetall(TOTALS_KEY).items()}
    through = int(stored.get(THROUGH, 0))
    totals = {
        OutcomeKey.parse(field): int(value)
        for field, value in stored.items()
        if not field.startswith("_")
    }
    tail = session.execute(TAIL, {"after": through, "types": OUTCOME_EVENTS})
    for key, n in _grouped(tail):
        totals[key] = totals.get(key, 0) + n
    return totals


def fold(session: Session, redis: Redis, now: datetime) -> None:
    """Moves settled events from the live tail into the Redis totals. Several API processes
    may scrape at once: WATCH makes all but one of them give up, changing nothing."""
    with redis.pipeline() as pipe:
        try:
            pipe.watch(TOTALS_KEY)  # type: ignore[no-untyped-call]
            state = {
                name: _text(value)
                for name, value in ((_text(k), v) for k, v in pipe.hgetall(TOTALS_KEY).items())
                if name.startswith("_")
            }
            if THROUGH not in state:
                first = _first_id_of_day(session, now)
                pipe.multi()
                pipe.hset(TOTALS_KEY, THROUGH, first - 1)
                pipe.execute()
                return
            through = int(state[THROUGH])
            candidate = int(state[CANDIDATE_SEQ]) if CANDIDATE_SEQ in state else None
            if candidate is not None and _still_running(session, state.get(CANDIDATE_XIDS, "")):
                return  # a transaction that may hold a lower id has not ended yet
            seq = int(session.execute(SEQUENCE_POSITION).scalar_one())
            writing = session.execute(WRITING_TRANSACTIONS).scalar_one()
            pipe.multi()
            if candidate is not None and candidate > through:
                params = {"after": through, "through": candidate, "types": OUTCOME_EVENTS}
                for key, n in _grouped(session.execute(RANGE, params)):
                    pipe.hincrby(TOTALS_KEY, key.field(), n)
                pipe.hset(TOTALS_KEY, THROUGH, candidate)
            pipe.hset(TOTALS_KEY, mapping={CANDIDATE_SEQ: seq, CANDIDATE_XIDS: writing})
            pipe.execute()
        except WatchError:
            return  # another process folded first


def _still_running(session: Session, xids: str) -> bool:
    if not xids:
        return False
    return bool(session.execute(STILL_RUNNING, {"xids": xids.split(",")}).scalar_one())


def _first_id_of_day(session: Session, now: datetime) -> int:
    """About the first event id of the UTC day, by bisection over the primary key: ids and
    created_at rise together (give or take a transaction's length), and a few dozen index
    probes cost the same at any table size, where `min(id) WHERE created_at >= day` may be
    planned as a walk through every older row."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    bounds = session.execute(ID_RANGE).one()
    if bounds.high is None:
        return int(session.execute(SEQUENCE_POSITION).scalar_one()) + 1
    low, high = int(bounds.low), int(bounds.high) + 1
    while low < high:
        middle = (low + high) // 2
        created = session.execute(CREATED_AT_OR_AFTER, {"id": middle}).scalar_one()
        if created < day:
            low = middle + 1
        else:
            high = middle
    return low


def _grouped(rows: Iterable[object]) -> Iterable[tuple[OutcomeKey, int]]:
    for row in rows:
        yield OutcomeKey(row.account_id, row.type, row.reply_class), int(row.n)  # type: ignore[attr-defined]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
