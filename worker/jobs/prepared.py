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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import CursorResult, TextClause
from sqlalchemy.orm import Session

_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # as sqlalchemy.text() finds its binds
_prepared: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()


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

    def execute(self, session: Session, values: Mapping[str, Any]) -> CursorResult[Any]:
        connection = session.connection()
        assert "%" not in self.sql  # run without parameters, but psycopg2 would see a % as one
        dbapi = connection.connection.driver_connection
        names = _prepared.setdefault(dbapi, set())
        if self.name not in names:
            connection.exec_driver_sql(f"PREPARE {self.name} AS {self.sql}")
            names.add(self.name)
        arguments = ", ".join(f"%({p})s" for p in self.params)
        return connection.exec_driver_sql(
            f"EXECUTE {self.name}({arguments})", {p: values[p] for p in self.params}
        )
