"""Server-side prepared statements for the send path's per-group statements.

psycopg2 sends every statement as text, so PostgreSQL parses and plans the group claim and
the group finish again for every group of messages: about 1 ms of the 2-3 ms each costs,
on a statement whose plan never changes (the claim reaches recipients only through the
primary key, worker.jobs.send_sql). Each statement here is PREPAREd once per database
connection and run with EXECUTE; after five runs PostgreSQL keeps a generic plan.

Which names a connection has prepared is kept per DBAPI connection object (weakly), so a
reconnect, which is a new object, prepares again. A PREPARE that succeeded stays even if
its transaction rolls back; one that failed raised, and is not recorded.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, TextClause
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # as sqlalchemy.text() finds its binds
_prepared: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()
_row_types: dict[tuple[str, ...], Any] = {}


@dataclass(frozen=True)
class Prepared:
    name: str
    sql: str  # the statement with $1, $2 ... in place of the named binds
    params: tuple[str, ...]  # the bind names, in $ order

    @classmethod
    def of(cls, name: str, statement: TextClause) -> Prepared:
        params: list[str] = []

        def positional(match: re.Match[str]) -> str:
            if match.group(1) not in params:
                params.append(match.group(1))
            return f"${params.index(match.group(1)) + 1}"

        return cls(name, _BIND.sub(positional, statement.text), tuple(params))

    def execute(self, session: Session, values: Mapping[str, Any]) -> list[Any]:
        """Runs the statement in the session's transaction, on its DBAPI cursor directly
        (SQLAlchemy's result machinery cost as much as the statement); returns the rows as
        named tuples, or [] for a statement without RETURNING. Errors come as SQLAlchemy's
        (OperationalError ...), and a lost connection is invalidated, as they would through
        session.execute."""
        connection = session.connection()
        dbapi = connection.connection.driver_connection
        try:
            return self._run(dbapi, values)
        except connection.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, dbapi, self.name, exc) from exc

    def _run(self, dbapi: Any, values: Mapping[str, Any]) -> list[Any]:
        names = _prepared.setdefault(dbapi, set())
        with dbapi.cursor() as cursor:
            if self.name not in names:
                # No parameters: psycopg2 leaves the text alone (the statement has no %).
                cursor.execute(f"PREPARE {self.name} AS {self.sql}")
                names.add(self.name)
            arguments = ", ".join(f"%({p})s" for p in self.params)
            cursor.execute(
                f"EXECUTE {self.name}({arguments})", {p: values[p] for p in self.params}
            )
            if cursor.description is None:
                return []
            columns = tuple(column.name for column in cursor.description)
            if columns not in _row_types:
                _row_types[columns] = namedtuple("Row", columns)  # type: ignore[misc]
            row_type = _row_types[columns]
            return [row_type(*row) for row in cursor.fetchall()]


def _wrapped(connection: Connection, dbapi: Any, name: str, exc: Exception) -> DBAPIError:
    lost = connection.dialect.is_disconnect(exc, dbapi, None)
    if lost:
        connection.invalidate(exc)
    return DBAPIError.instance(
        f"EXECUTE {name}",
        None,
        exc,
        connection.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=connection.dialect,
    )
