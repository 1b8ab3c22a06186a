"""A client's figures (app.services.client_stats, GET /clients/<id>/stats): exact counts
from the recipients, campaigns and events of two clients holding data on the same days;
every UTC day of the range present, zero days included; rates null on zero denominators;
a constant handful of GROUP BY queries, the events one served by ix_events_client_created."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql

from app.extensions import db
from app.models import Event
from app.services.client_stats import client_stats, day_counts_query

NOW = datetime(2030, 3, 10, 12, 0, tzinfo=UTC)
ZERO = {"sent": 0, "bounced": 0, "deferred": 0, "failed": 0, "unsubscribed": 0, "complained": 0}


def _at(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def _events(session, type_, n, at, **ids):
    session.add_all(Event(type=type_, created_at=_at(at), **ids) for _ in range(n))
    session.commit()


@pytest.fixture
def two_clients(factory, session):
    """Client A (the default, 1) and client B, each with accounts, campaigns, recipients
    and events on the same days, so any figure of one that leaks into the other shows."""
    b = factory.create_client(name="B").id
    a1 = factory.create_account(name="a1")
    a2 = factory.create_account(name="a2")  # no events: zeros
    b1 = factory.create_account(name="b1", client_id=b)

    running = factory.create_campaign(status="running")
    draft = factory.create_campaign(status="draft")
    done = factory.create_campaign(status="completed")
    factory.create_recipients(running, ["s1@x.example", "s2@x.example"], status="sent")
    factory.create_recipients(running, ["b@x.example"], status="bounced")
    factory.create_recipients(draft, ["p1@x.example", "p2@x.example"])
    factory.create_recipients(done, ["u@x.example"], status="unsubscribed")

    theirs = factory.create_campaign(status="running", client_id=b)
    factory.create_campaign(status="cancelled", client_id=b)
    factory.create_recipients(theirs, [f"t{i}@x.example" for i in range(4)], status="sent")
    factory.create_recipients(theirs, ["f@x.example"], status="failed")

    # Client A; the trigger of migration 0004 gives each event the campaign's client.
    ours = {"campaign_id": running.id, "account_id": a1.id}
    _events(session, "sent", 5, "2030-03-06T23:59:59.999999+00:00", **ours)  # before the range
    _events(session, "sent", 1, "2030-03-07T00:00:00+00:00", **ours)  # its first instant
    # 2030-03-08: nothing at all.
    _events(session, "sent", 1, "2030-03-10T01:30:00+02:00", **ours)  # 03-09 23:30 UTC
    _events(session, "failed", 1, "2030-03-09T12:00:00+00:00", **ours)
    _events(session, "unsubscribed", 1, "2030-03-09T13:00:00+00:00", campaign_id=running.id)
    _events(session, "sent", 2, "2030-03-10T00:00:00+00:00", **ours)
    _events(session, "bounced", 1, "2030-03-10T11:00:00+00:00", **ours)
    _events(session, "deferred", 1, "2030-03-10T11:00:00+00:00", **ours)
    _events(session, "complained", 1, "2030-03-10T11:30:00+00:00", campaign_id=running.id)
    _events(session, "queued", 4, "2030-03-10T10:00:00+00:00", **ours)  # not a figure
    _events(session, "opened", 2, "2030-03-10T10:00:00+00:00", **ours)  # not a figure
    _events(session, "client_paused", 1, "2030-03-10T10:00:00+00:00", client_id=1)
    _events(session, "sent", 7, "2030-03-11T00:00:00+00:00", **ours)  # after the range

    # Client B on the same days.
    their_send = {"campaign_id": theirs.id, "account_id": b1.id}
    _events(session, "sent", 10, "2030-03-10T09:00:00+00:00", **their_send)
    _events(session, "bounced", 3, "2030-03-10T09:00:00+00:00", **their_send)
    _events(session, "unsubscribed", 2, "2030-03-10T09:30:00+00:00", campaign_id=theirs.id)
    _events(session, "complained", 1, "2030-03-10T09:30:00+00:00", campaign_id=theirs.id)
    _events(session, "failed", 1, "2030-03-08T09:00:00+00:00", **their_send)
    # B's campaign sent once through A's account: B's send, never A's (nor A's account's).
    _events(session, "sent", 1, "2030-03-10T09:00:00+00:00", **{**their_send, "account_id": a1.id})
    return {"a": 1, "b": b, "a1": a1.id, "a2": a2.id, "b1": b1.id}


def _day(day: str, **counts: int) -> dict:
    return {"date": date.fromisoformat(day), **ZERO, **counts}


def test_client_a_figures_are_exact_and_hold_none_of_bs(session, two_clients):
    stats = client_stats(session, two_clients["a"], days=4, now=NOW)
    assert stats["since"] == datetime(2030, 3, 7, tzinfo=UTC)
    assert stats["until"] == datetime(2030, 3, 11, tzinfo=UTC)
    assert stats["counts"] == {
        "pending": 2, "queued": 0, "sending": 0, "sent": 2, "deferred": 0, "bounced": 1,
        "failed": 0, "suppressed": 0, "unsubscribed": 1, "unknown": 0,
    }  # fmt: skip
    assert stats["campaigns"] == {
        "draft": 1,
        "running": 1,
        "paused": 0,
        "completed": 1,
        "cancelled": 0,
    }
    assert stats["per_day"] == [
        _day("2030-03-07", sent=1),
        _day("2030-03-08"),
        _day("2030-03-09", sent=1, failed=1, unsubscribed=1),
        _day("2030-03-10", sent=2, bounced=1, deferred=1, complained=1),
    ]
    assert stats["totals"] == {
        "sent": 4, "bounced": 1, "deferred": 1, "failed": 1, "unsubscribed": 1, "complained": 1
    }  # fmt: skip
    assert stats["per_account"] == [
        {"id": two_clients["a1"], "name": "a1", "sent": 4, "bounced": 1, "failed": 1},
        {"id": two_clients["a2"], "name": "a2", "sent": 0, "bounced": 0, "failed": 0},
    ]
    assert stats["rates"] == {
        "bounce_rate": 1 / 5,  # bounced / (sent + bounced)
        "unsubscribe_rate": 1 / 4,
        "complaint_rate": 1 / 4,
    }


def test_client_b_figures_are_exact_and_hold_none_of_as(session, two_clients):
    stats = client_stats(session, two_clients["b"], days=4, now=NOW)
    assert stats["counts"]["sent"] == 4 and stats["counts"]["failed"] == 1
    assert sum(stats["counts"].values()) == 5
    assert stats["campaigns"] == {
        "draft": 0,
        "running": 1,
        "paused": 0,
        "completed": 0,
        "cancelled": 1,
    }
    assert stats["per_day"] == [
        _day("2030-03-07"),
        _day("2030-03-08", failed=1),
        _day("2030-03-09"),
        _day("2030-03-10", sent=11, bounced=3, unsubscribed=2, complained=1),
    ]
    # Only B's own account is listed; the send through A's account is in B's per_day.
    assert stats["per_account"] == [
        {"id": two_clients["b1"], "name": "b1", "sent": 10, "bounced": 3, "failed": 1}
    ]
    assert stats["rates"] == {
        "bounce_rate": 3 / 14,
        "unsubscribe_rate": 2 / 11,
        "complaint_rate": 1 / 11,
    }


def test_the_range_is_the_last_n_utc_days_with_today_whole(session, two_clients):
    today = client_stats(session, two_clients["a"], days=1, now=NOW)
    assert [d["date"] for d in today["per_day"]] == [date(2030, 3, 10)]
    assert today["totals"]["sent"] == 2
    # Just before midnight UTC it is still the 9th; just after, the 10th is a new day.
    late = client_stats(session, two_clients["a"], days=1, now=_at("2030-03-09T23:59:59+00:00"))
    assert late["per_day"] == [_day("2030-03-09", sent=1, failed=1, unsubscribed=1)]
    # `now` in another zone is the same moment: 2030-03-10 01:00 +05:00 is the 9th in UTC.
    zoned = client_stats(session, two_clients["a"], days=1, now=_at("2030-03-10T01:00:00+05:00"))
    assert zoned["per_day"] == late["per_day"]


def test_days_are_utc_days_whatever_the_database_sessions_time_zone(session, two_clients):
    session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14
    try:
        stats = client_stats(session, two_clients["a"], days=4, now=NOW)
    finally:
        session.execute(text("SET TIME ZONE 'UTC'"))
    assert [d["sent"] for d in stats["per_day"]] == [1, 0, 1, 2]


def test_every_day_of_a_long_range_is_present_oldest_first(session, two_clients):
    stats = client_stats(session, two_clients["a"], days=366, now=NOW)
    days = [d["date"] for d in stats["per_day"]]
    assert len(days) == 366 and days[-1] == date(2030, 3, 10)
    assert days == [date(2030, 3, 10) - timedelta(days=365 - i) for i in range(366)]
    assert stats["totals"]["sent"] == 9  # the 5 before the 7th are inside a year's range
    assert sum(1 for d in stats["per_day"] if d != {**ZERO, "date": d["date"]}) == 4


def test_a_client_without_data_has_zeros_and_null_rates(session, factory):
    empty = factory.create_client(name="Empty").id
    stats = client_stats(session, empty, days=3, now=NOW)
    assert set(stats["counts"].values()) == {0} and len(stats["counts"]) == 10
    assert set(stats["campaigns"].values()) == {0} and len(stats["campaigns"]) == 5
    assert [d["date"] for d in stats["per_day"]] == [date(2030, 3, d) for d in (8, 9, 10)]
    assert all(d == {**ZERO, "date": d["date"]} for d in stats["per_day"])
    assert stats["per_account"] == []
    assert stats["rates"] == {"bounce_rate": None, "unsubscribe_rate": None, "complaint_rate": None}


def test_rates_are_null_only_where_their_denominator_is_zero(session, factory):
    campaign = factory.create_campaign()
    _events(session, "bounced", 2, "2030-03-10T08:00:00+00:00", campaign_id=campaign.id)
    _events(session, "unsubscribed", 1, "2030-03-10T08:00:00+00:00", campaign_id=campaign.id)
    _events(session, "complained", 1, "2030-03-10T08:00:00+00:00", campaign_id=campaign.id)
    stats = client_stats(session, 1, days=1, now=NOW)
    # Nothing sent: unsubscribes and complaints have no rate; bounces do (2 of 2).
    assert stats["rates"] == {"bounce_rate": 1.0, "unsubscribe_rate": None, "complaint_rate": None}
    _events(session, "sent", 2, "2030-03-10T09:00:00+00:00", campaign_id=campaign.id)
    stats = client_stats(session, 1, days=1, now=NOW)
    assert stats["rates"] == {"bounce_rate": 0.5, "unsubscribe_rate": 0.5, "complaint_rate": 0.5}


def test_a_handful_of_queries_whatever_the_amount_of_data(app, session, factory, two_clients):
    def statements(client_id):
        seen: list[str] = []
        session.expunge_all()  # the client is looked up each time, not found in the session

        def count(conn, cursor, statement, *args):
            seen.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            client_stats(session, client_id, days=366, now=NOW)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return seen

    small = statements(factory.create_client(name="Small").id)
    big = statements(two_clients["a"])
    for _ in range(5):
        account = factory.create_account()
        _events(session, "sent", 3, "2030-03-01T00:00:00+00:00", account_id=account.id)
    bigger = statements(two_clients["a"])
    assert len(small) == len(big) == len(bigger) <= 6, bigger
    assert sum("GROUP BY" in s for s in bigger) == 4


def test_the_per_day_query_is_served_by_ix_events_client_created(session, two_clients):
    query = day_counts_query(two_clients["a"], NOW - timedelta(days=30), NOW)
    compiled = query.compile(
        dialect=postgresql.psycopg2.dialect(), compile_kwargs={"render_postcompile": True}
    )
    connection = session.connection()
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).scalars().all()
    assert any("ix_events_client_created" in line for line in plan), plan
    assert "Index Cond: ((client_id = " in "\n".join(plan), plan


def test_unknown_client_is_404_and_days_out_of_range_422(session):
    from app.errors import InvalidInput, NotFound

    with pytest.raises(NotFound, match="no client 5"):
        client_stats(session, 5)
    for days in (0, 367):
        with pytest.raises(InvalidInput) as raised:
            client_stats(session, 1, days=days)
        assert raised.value.field == "days"
