"""Unit of work: the caller (a request, a task, a CLI command) owns the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
