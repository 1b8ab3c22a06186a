"""Unit of work: the caller (a request, a task, a CLI command) owns the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from app.extensions import db


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """Commits on success, rolls back on any exception. Services never commit."""
    session = db.session
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


# Collations PostgreSQL compares by memcmp() alone; any other (even C.UTF-8) costs a
# strcoll() per comparison of every text index: filling the recipients' (campaign_id,
# email) unique index took 1.3x as long under C.UTF-8 and 1.8x under en_US.utf8 (README,
# "Database collation").
BYTEWISE_COLLATIONS = frozenset({"C", "POSIX"})


def collation_advice(connection: Connection) -> str | None:
    """What to tell the operator when the database does not sort bytewise, else None."""
    collate = connection.execute(
        text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
    ).scalar_one()
    if collate in BYTEWISE_COLLATIONS:
        return None
    return (
        f"the database's collation is {collate}, not C: every text comparison in its "
        "indexes is a strcoll(), and an import of a million recipients spends seconds more "
        "on them. A cluster made by the shipped Compose files sorts bytewise "
        "(POSTGRES_INITDB_ARGS); README, Database collation, says how to move an existing one."
    )
