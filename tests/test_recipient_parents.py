"""recipients' references to campaigns and accounts, kept per statement by migration 0016's
triggers: the same refusals, cascades and locking a declarative foreign key gives."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db

INSERT = (
    "INSERT INTO recipients (campaign_id, email, domain, account_id) "
    "SELECT :campaign, 'r' || g || '@x.example', 'x.example', :account "
    "FROM generate_series(1, :n) g"
)


def _count(sql: str, **params: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def _violation(error: pytest.ExceptionInfo[IntegrityError]) -> tuple[str, str]:
    orig = error.value.orig
    return orig.pgcode, orig.diag.constraint_name  # type: ignore[union-attr]


@pytest.fixture
def parents(factory: Any) -> tuple[int, int]:
    campaign = factory.create_campaign()
    account = factory.create_account(client_id=campaign.client_id)
    return campaign.id, account.id


def test_an_unknown_campaign_or_account_is_refused_as_a_foreign_key_violation(app, parents):
    campaign, account = parents
    with app.app_context():
        with pytest.raises(IntegrityError) as unknown_campaign, db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign + 1000, "account": None, "n": 3})
        with pytest.raises(IntegrityError) as unknown_account, db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign, "account": account + 1000, "n": 3})
        with db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign, "account": None, "n": 3})
        with pytest.raises(IntegrityError) as updated, db.engine.begin() as conn:
            conn.execute(text("UPDATE recipients SET account_id = :a"), {"a": account + 1000})
        assert _violation(unknown_campaign) == ("23503", "fk_recipients_campaign_id_campaigns")
        assert _violation(unknown_account) == ("23503", "fk_recipients_account_id_accounts")
        assert _violation(updated) == ("23503", "fk_recipients_account_id_accounts")
        assert f"(campaign_id)=({campaign + 1000})" in str(unknown_campaign.value)
        with db.engine.begin() as conn:  # a known account and NULL both pass
            conn.execute(text("UPDATE recipients SET account_id = :a"), {"a": account})
            conn.execute(text("UPDATE recipients SET account_id = NULL WHERE id % 2 = 0"))
        assert _count("SELECT count(*) FROM recipients WHERE account_id = :a", a=account) == 2


def test_deleting_a_campaign_deletes_its_recipients_and_their_counts(app, factory, parents):
    campaign, account = parents
    other = factory.create_campaign(client_id=factory.create_client().id).id
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign, "account": account, "n": 5})
            conn.execute(text(INSERT), {"campaign": other, "account": None, "n": 2})
            conn.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign})
        assert _count("SELECT count(*) FROM recipients WHERE campaign_id = :c", c=campaign) == 0
        assert _count("SELECT count(*) FROM recipients WHERE campaign_id = :c", c=other) == 2
        kept = "SELECT coalesce(sum(n), 0) FROM recipient_counts WHERE campaign_id = :c"
        assert (_count(kept, c=campaign), _count(kept, c=other)) == (0, 2)


def test_deleting_an_account_clears_it_from_its_recipients(app, factory, parents):
    campaign, account = parents
    kept_account = factory.create_account(client_id=factory.create_client().id).id
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign, "account": account, "n": 4})
            conn.execute(
                text("UPDATE recipients SET account_id = :k WHERE id % 2 = 0"), {"k": kept_account}
            )
            conn.execute(text("DELETE FROM accounts WHERE id = :a"), {"a": account})
        assert _count("SELECT count(*) FROM recipients WHERE account_id IS NULL") == 2
        assert _count("SELECT count(*) FROM recipients WHERE account_id = :k", k=kept_account) == 2
        assert _count("SELECT count(*) FROM recipients") == 4


def _in_thread(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the test
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _waiting_on_a_lock() -> int:
    return _count(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    )


def _until_waiting(thread: threading.Thread) -> None:
    for _ in range(200):
        if _waiting_on_a_lock() or not thread.is_alive():
            return
        time.sleep(0.05)


def test_a_campaign_deleted_during_an_open_import_waits_and_then_takes_its_rows(app, parents):
    campaign, _ = parents
    with app.app_context():
        importing = db.engine.connect()
        importing.begin()
        importing.execute(text(INSERT), {"campaign": campaign, "account": None, "n": 50})

        engine = db.engine  # the thread runs outside the app context

        def delete() -> None:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign})

        deleter, errors = _in_thread(delete)
        _until_waiting(deleter)
        assert (deleter.is_alive(), errors) == (True, []), "the delete did not wait for the insert"
        importing.commit()
        importing.close()
        deleter.join(10)
        assert errors == []
        assert _count("SELECT count(*) FROM recipients") == 0


def test_an_insert_into_a_campaign_being_deleted_waits_and_is_refused(app, parents):
    campaign, _ = parents
    with app.app_context():
        deleting = db.engine.connect()
        deleting.begin()
        deleting.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign})

        engine = db.engine  # the thread runs outside the app context

        def insert() -> None:
            with engine.begin() as conn:
                conn.execute(text(INSERT), {"campaign": campaign, "account": None, "n": 5})

        inserter, errors = _in_thread(insert)
        _until_waiting(inserter)
        assert (inserter.is_alive(), errors) == (True, []), "the insert did not wait for the delete"
        deleting.commit()
        deleting.close()
        inserter.join(10)
        assert [type(e) for e in errors] == [IntegrityError]
        assert _count("SELECT count(*) FROM recipients") == 0


def _blocked_by_a_parent_lock(update: str, parent: str, parent_id: int, **params: Any) -> bool:
    """Whether `update` of recipients waits while another transaction holds `parent`'s row
    FOR UPDATE (what a delete of it holds): lock_timeout turns a wait into an error."""
    locker = db.engine.connect()
    locker.begin()
    locker.execute(text(f"SELECT 1 FROM {parent} WHERE id = :id FOR UPDATE"), {"id": parent_id})
    try:
        with db.engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '1s'"))
            conn.execute(text(update), params)
        return False
    except OperationalError as error:
        assert getattr(error.orig, "pgcode", None) == "55P03"  # lock_not_available
        return True
    finally:
        locker.rollback()
        locker.close()


def test_an_update_that_keeps_its_references_locks_no_parent(app, factory, parents):
    campaign, account = parents
    other = factory.create_account(client_id=factory.create_campaign().client_id).id
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(INSERT), {"campaign": campaign, "account": account, "n": 4})
        # The send path's status changes: neither parent is locked or read.
        assert not _blocked_by_a_parent_lock(
            "UPDATE recipients SET status = 'sent'", "campaigns", campaign
        )
        assert not _blocked_by_a_parent_lock(
            "UPDATE recipients SET status = 'queued'", "accounts", account
        )
        # A new account is checked, and waits for the one being deleted, as a key would.
        assert _blocked_by_a_parent_lock(
            "UPDATE recipients SET account_id = :a WHERE id % 2 = 0", "accounts", other, a=other
        )
        assert _count("SELECT count(*) FROM recipients WHERE status = 'queued'") == 4
