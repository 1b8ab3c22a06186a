"""recipient_counts (migration 0013's triggers) against a plain GROUP BY over recipients:
through every path that changes a status, after a random mixed workload, and with two
sessions writing at once."""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import select, text, update

from app.db import unit_of_work
from app.extensions import db
from app.models import Campaign, Recipient, RecipientCount, RecipientStatus
from app.services import recipient_counts
from tests.pipeline import dispatch, run_until_idle, smtp_account
from worker.jobs.heartbeat import Liveness
from worker.jobs.recovery import recover

PLAIN = text("SELECT campaign_id, status, count(*) FROM recipients GROUP BY campaign_id, status")
KEPT = text(
    "SELECT campaign_id, status, sum(n) FROM recipient_counts GROUP BY campaign_id, status "
    "HAVING sum(n) <> 0"
)
STATUSES = [s.value for s in RecipientStatus]


def _plain(conn) -> dict[tuple[int, str], int]:
    return {(c, s): int(n) for c, s, n in conn.execute(PLAIN)}


def _kept(conn) -> dict[tuple[int, str], int]:
    return {(c, s): int(n) for c, s, n in conn.execute(KEPT)}


def assert_exact() -> dict[tuple[int, str], int]:
    """The counter table, the service and a plain count agree, in one snapshot."""
    with db.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        plain, kept = _plain(conn), _kept(conn)
    assert kept == plain
    campaign_ids = sorted({c for c, _ in plain})
    db.session.expire_all()
    served = recipient_counts.campaign_counts(db.session, campaign_ids)
    db.session.rollback()
    for campaign_id, counts in served.items():
        assert set(counts) == set(STATUSES)
        assert {s: n for s, n in counts.items() if n} == {
            s: n for (c, s), n in plain.items() if c == campaign_id
        }
    return plain


def _api_counts(api, campaign_id: int) -> dict[str, int]:
    body = api.get(f"/api/v1/campaigns/{campaign_id}").get_json()
    return {s: n for s, n in body["counts"].items() if n}


def _recover(app, now):
    settings, redis = app.extensions["settings"], app.extensions["redis"]
    from rotator.limiter import Limiter

    with app.app_context(), unit_of_work() as session:
        return recover(session, Limiter(redis), Liveness(redis, settings), settings, now=now)


def test_counts_follow_every_path_that_changes_a_status(app, api, factory, smtp_server, settings):
    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    # Import: JSON at creation, then a CSV with a duplicate and an invalid row.
    created = api.post(
        "/api/v1/campaigns",
        json={
            "name": "paths",
            "subject": "Hi",
            "body_text": "Hello",
            "recipients": [{"email": e} for e in ("ok1@a.example", "gone@a.example")],
        },
    ).get_json()
    campaign_id = created["id"]
    csv = "email\nok2@a.example\nOK1@a.example\nnot-an-address\nlater@b.example\n"
    csv += "maybe@c.example\nblocked@d.example\nstopped@e.example\nok3@a.example\n"
    added = api.post(
        f"/api/v1/campaigns/{campaign_id}/recipients",
        data={"file": (io.BytesIO(csv.encode()), "more.csv")},
        content_type="multipart/form-data",
    ).get_json()
    assert added["imported"] == 6
    assert _api_counts(api, campaign_id) == {"pending": 8}
    assert_exact()

    # Suppression through the API moves a waiting row; one added behind the API's back is
    # dropped by the dispatcher.
    assert api.post("/api/v1/suppressions", json={"email": "stopped@e.example"}).status_code == 201
    factory.suppress("blocked@d.example")
    assert _api_counts(api, campaign_id) == {"pending": 7, "suppressed": 1}

    # Dispatch and the send outcomes: sent, bounced, deferred.
    smtp_server.fail_rcpt("gone@a.example", 550, "5.1.1 The email account does not exist")
    smtp_server.fail_rcpt("later@b.example", 451, "4.7.1 Try again later")
    assert api.post(f"/api/v1/campaigns/{campaign_id}/start").status_code == 200
    run_until_idle(app)
    counts = _api_counts(api, campaign_id)
    assert counts["suppressed"] == 2 and counts["bounced"] == 1 and counts["deferred"] == 1
    assert counts["sent"] == 4
    assert_exact()

    # Recovery: a queued row whose task was lost goes back to pending, a sending row whose
    # outcome was lost becomes unknown.
    other = factory.create_running_campaign(["q1@f.example", "q2@f.example", "s1@f.example"])
    assert dispatch(app).queued == 3
    db.session.execute(
        update(Recipient)
        .where(Recipient.email == "s1@f.example")
        .values(status="sending", sending_since=datetime.now(UTC) - timedelta(days=1))
    )
    db.session.commit()
    assert _api_counts(api, other.id) == {"queued": 2, "sending": 1}
    _recover(app, datetime.now(UTC) + timedelta(days=1))
    assert _api_counts(api, other.id) == {"pending": 2, "unknown": 1}
    assert_exact()

    # Cancel leaves the recipients as they are; so do the counts.
    assert api.post(f"/api/v1/campaigns/{other.id}/cancel").status_code == 200
    assert _api_counts(api, other.id) == {"pending": 2, "unknown": 1}

    # Deleting a campaign takes its counts with it.
    db.session.delete(db.session.get(Campaign, other.id))
    db.session.commit()
    left = db.session.execute(
        select(RecipientCount).where(RecipientCount.campaign_id == other.id)
    ).all()
    assert left == []
    assert {c for c, _ in assert_exact()} == {campaign_id}


def test_counts_equal_a_group_by_after_a_mixed_workload(app, factory):
    rng = random.Random(15)
    campaigns = [factory.create_campaign().id for _ in range(4)]
    with db.engine.connect() as conn:
        for step in range(120):
            campaign_id = rng.choice(campaigns)
            kind = rng.choice(["insert", "batch", "row", "no_status", "delete", "rollback"])
            tx = conn.begin()
            if kind == "insert":
                # Duplicates of earlier rows are skipped by ON CONFLICT, as in the importer.
                conn.execute(
                    text(
                        "INSERT INTO recipients (campaign_id, email, domain, status) "
                        "SELECT :c, 'r' || g || '@x.example', 'x.example', "
                        "(ARRAY['pending','suppressed','sent'])[1 + g % 3] "
                        "FROM generate_series(:a, :b) g ON CONFLICT DO NOTHING"
                    ),
                    {"c": campaign_id, "a": rng.randint(0, 400), "b": rng.randint(400, 800)},
                )
            elif kind == "batch":
                conn.execute(
                    text(
                        "UPDATE recipients SET status = :to WHERE campaign_id = :c "
                        "AND status = :from AND id % 3 = :k"
                    ),
                    {
                        "c": campaign_id,
                        "from": rng.choice(STATUSES),
                        "to": rng.choice(STATUSES),
                        "k": rng.randint(0, 2),
                    },
                )
            elif kind == "row":
                for _ in range(5):
                    conn.execute(
                        text(
                            "UPDATE recipients SET status = :to WHERE id = "
                            "(SELECT id FROM recipients WHERE campaign_id = :c "
                            "ORDER BY random() LIMIT 1)"
                        ),
                        {"c": campaign_id, "to": rng.choice(STATUSES)},
                    )
            elif kind == "no_status":
                conn.execute(text("UPDATE recipients SET claimed_by = 'x' WHERE id % 7 = 0"))
                conn.execute(text("UPDATE recipients SET status = status WHERE id % 5 = 0"))
            elif kind == "delete":
                conn.execute(
                    text("DELETE FROM recipients WHERE campaign_id = :c AND id % 17 = :k"),
                    {"c": campaign_id, "k": rng.randint(0, 16)},
                )
            else:
                conn.execute(
                    text("UPDATE recipients SET status = 'failed' WHERE campaign_id = :c"),
                    {"c": campaign_id},
                )
                # A savepoint rolled back inside a committed transaction, then the whole.
                nested = conn.begin_nested()
                conn.execute(text("DELETE FROM recipients WHERE campaign_id = :c"), {"c": 0})
                nested.rollback()
                tx.rollback()
                continue
            if step % 10 == 0:
                nested = conn.begin_nested()
                conn.execute(
                    text("UPDATE recipients SET status = 'bounced' WHERE campaign_id = :c"),
                    {"c": campaign_id},
                )
                nested.rollback()
            tx.commit()
    plain = assert_exact()
    assert sum(plain.values()) > 100 and len({s for _, s in plain}) >= 5


def _connect(database_url: str):
    conn = psycopg2.connect(database_url)
    conn.autocommit = False
    return conn


def test_a_writer_never_waits_on_another_writers_counts(app, factory, database_url):
    """Two open transactions change statuses of the same campaign: the second neither
    waits for the first (lock_timeout would raise) nor sees its changes before commit."""
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, [f"r{i}@x.example" for i in range(10)])
    first, second = _connect(database_url), _connect(database_url)
    try:
        with first.cursor() as a, second.cursor() as b:
            a.execute(
                "UPDATE recipients SET status = 'sent' WHERE campaign_id = %s AND id %% 2 = 0",
                (campaign.id,),
            )
            b.execute("SET lock_timeout = '2s'")
            b.execute(
                "UPDATE recipients SET status = 'sent' WHERE campaign_id = %s AND id %% 2 = 1",
                (campaign.id,),
            )
            second.commit()
            assert assert_exact()[(campaign.id, "sent")] == 5  # the first is still open
            first.commit()
    finally:
        first.close()
        second.close()
    assert assert_exact() == {(campaign.id, "sent"): 10}


def test_two_sessions_updating_statuses_at_once_keep_exact_counts(app, factory, database_url):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, [f"r{i}@x.example" for i in range(300)])
    ids = [r for (r,) in db.session.execute(select(Recipient.id)).all()]
    db.session.rollback()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        conn = _connect(database_url)
        try:
            start.wait()
            with conn.cursor() as cur:
                for _ in range(150):
                    # Both sessions pick from the same rows: some CAS updates wait for the
                    # other's row lock, then find the status moved and change nothing.
                    picked = rng.sample(ids, rng.randint(1, 6))
                    cur.execute(
                        "UPDATE recipients SET status = %s WHERE id = ANY(%s) AND status = %s",
                        (rng.choice(STATUSES), sorted(picked), rng.choice(STATUSES[:6])),
                    )
                    if rng.random() < 0.1:
                        conn.rollback()
                    else:
                        conn.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    plain = assert_exact()
    assert sum(plain.values()) == 300 and len(plain) > 3
    slots = {
        slot
        for (slot,) in db.session.execute(
            select(RecipientCount.slot).where(RecipientCount.campaign_id == campaign.id)
        )
    }
    db.session.rollback()
    assert len(slots) >= 3  # the factory's backend and one per session


def _write_from_a_backend_that_exits(database_url: str, statement: str) -> int:
    gone = _connect(database_url)
    with gone.cursor() as cur:
        cur.execute(statement)
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    gone.commit()
    gone.close()
    with db.engine.connect() as conn:  # until its backend has exited
        for _ in range(100):
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
            if not alive:
                break
            time.sleep(0.05)
    return pid


def _slots() -> Counter[int]:
    slots = Counter(slot for (slot,) in db.session.execute(select(RecipientCount.slot)).all())
    db.session.rollback()
    return slots


def test_compact_folds_the_slots_of_backends_gone_and_keeps_every_sum(app, factory, database_url):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, [f"r{i}@x.example" for i in range(6)])
    gone_pid = _write_from_a_backend_that_exits(
        database_url, "UPDATE recipients SET status = 'sent' WHERE id % 2 = 0"
    )
    live = _connect(database_url)  # a live backend keeps its slot
    try:
        with live.cursor() as cur:
            cur.execute("UPDATE recipients SET status = 'bounced' WHERE id % 3 = 1")
            cur.execute("SELECT pg_backend_pid()")
            live_pid = cur.fetchone()[0]
            live.commit()
            before = assert_exact()
            with unit_of_work() as session:
                folded = recipient_counts.compact(session)
            slots = _slots()
            assert folded >= 2 and gone_pid not in slots
            assert live_pid in slots and 0 in slots
            assert assert_exact() == before
    finally:
        live.close()


def test_the_beat_task_compacts(app, factory, database_url):
    from worker import tasks
    from worker.schedule import beat_schedule

    assert beat_schedule(app.extensions["settings"])["compact-counts"]["task"] == (
        "sendfleet.compact_counts"
    )
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    gone_pid = _write_from_a_backend_that_exits(
        database_url, "UPDATE recipients SET status = 'sent'"
    )
    assert gone_pid in _slots()
    with app.app_context():
        tasks.compact_counts()
    assert gone_pid not in _slots()
    assert assert_exact() == {(campaign.id, "sent"): 2}


@pytest.mark.parametrize("status", ["pending", "sent"])
def test_client_counts_are_the_sum_of_its_campaigns(app, factory, status):
    other = factory.create_client()
    mine = factory.create_campaign()
    theirs = factory.create_campaign(client_id=other.id)
    factory.create_recipients(mine, ["a@x.example", "b@x.example"], status=status)
    factory.create_recipients(theirs, ["c@x.example"], status=status)
    assert recipient_counts.client_counts(db.session, mine.client_id)[status] == 2
    assert recipient_counts.client_counts(db.session, other.id)[status] == 1
    assert set(recipient_counts.client_counts(db.session, other.id)) == set(STATUSES)


def test_recount_repairs_counts_changed_behind_the_triggers(app, factory):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    with db.engine.begin() as conn:  # what a restore with triggers disabled leaves
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("UPDATE recipients SET status = 'sent'")
    with db.engine.connect() as conn:
        assert _kept(conn) != _plain(conn)
    with unit_of_work() as session:
        recipient_counts.recount(session)
    assert assert_exact() == {(campaign.id, "sent"): 2}
