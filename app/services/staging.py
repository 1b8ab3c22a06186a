"""An import's staging table, filled on a second connection while the import's own
connection stores what is already staged.

Parsing, validating and staging a million rows (Python and one backend) take about as long
as storing them in `recipients` (another backend): done one after the other on one
connection, an import took the sum; here they overlap. A reader thread streams the COPY
lines, chunk by chunk, into an UNLOGGED table on a connection of its own (autocommit: each
chunk is visible once its COPY ends), and the import's connection takes each chunk in turn
(`chunks()`). The staging table holds no recipient: the import stays one transaction of
its own connection, all valid rows or none.

Left-over tables (a process killed mid-import, a transaction rolled back after a
successful import) are dropped by the next import's sweep once an hour old.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import islice
from types import TracebackType
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

COPY_READ_SIZE: Final = 1 << 18
COPY_BATCH_LINES: Final = 2000
# Rows per chunk: large enough that a chunk's statements cost little beside its rows,
# small enough that the first chunk is stored while the file is still being read.
ROWS_PER_CHUNK: Final = 25_000
PREFIX: Final = "import_staging_"
ORPHAN_AGE_SECONDS: Final = 3600
# The feeder never waits long for a lock: a table still in use is left to a later sweep.
_LOCK_TIMEOUT: Final = "2s"


class CopySource:
    """A read()-able face on a generator of COPY lines, for psycopg2's copy_expert.

    psycopg2 turns an exception raised by read() into QueryCanceled; the original is
    kept here so the caller sees the domain error (PayloadTooLarge, InvalidInput)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.error: BaseException | None = None
        self.last_line = ""

    def read(self, size: int = COPY_READ_SIZE) -> str:
        # psycopg2 takes whatever length comes back; batching by line count keeps the
        # per-line cost to one islice step.
        try:
            batch = list(islice(self._lines, COPY_BATCH_LINES))
        except BaseException as exc:
            self.error = exc
            raise
        if batch:
            self.last_line = batch[-1]
        return "".join(batch)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END: Final = object()


class Staging:
    """`with Staging(session, ...) as staging: staging.start(lines); for lo, hi in
    staging.chunks(): ...`; the rows of a chunk are those with lo < row_no <= hi.

    Leaving the block normally drops the staging table in the import's transaction (gone
    at its commit). Leaving it by an exception stops the reader, rolls the import's work
    on the staging table back to a savepoint (which frees its locks) and drops the table
    at once. `rejected` names the import's temporary table of rejected rows, on the
    import's own connection."""

    def __init__(
        self,
        session: Session,
        *,
        text_columns: int,
        fields_stored: str | None = None,
        chunked: bool = True,
    ) -> None:
        self.session = session
        suffix = f"{int(time.time())}_{uuid.uuid4().hex[:12]}"
        self.table = f"{PREFIX}{suffix}"
        self.rejected = f"import_rejected_{uuid.uuid4().hex[:12]}"
        self.text_columns = [f"c{i}" for i in range(1, text_columns + 1)]
        self.rows = 0  # rows staged, as COPY reports them
        self._fields_stored = fields_stored
        self._rows_per_chunk = ROWS_PER_CHUNK if chunked else None
        self._feeder: Any = None  # the second connection's pool entry, detached
        self._conn: Any = None  # its psycopg2 connection
        self._thread: threading.Thread | None = None
        self._chunks: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._savepoint: Any = None

    def __enter__(self) -> Staging:
        fairy = self.session.get_bind().raw_connection()  # type: ignore[union-attr]
        conn: Any = fairy.driver_connection
        fairy.detach()  # closed, not pooled, when done: it ran in autocommit
        self._feeder = fairy
        self._conn = conn
        try:
            self._create()
        except BaseException:
            fairy.close()
            raise
        return self

    def _create(self) -> None:
        self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            _sweep(cursor)
            extra = "".join(f", {c} text" for c in self.text_columns)
            fields = (
                "jsonb"
                if self._fields_stored is None
                else f"jsonb GENERATED ALWAYS AS ({self._fields_stored}) STORED"
            )
            # first_row: the row whose address hashed alike (import_lines.Repeats), if any.
            cursor.execute(
                f"CREATE UNLOGGED TABLE {self.table} (row_no integer PRIMARY KEY, "
                "first_row integer, email text NOT NULL, domain text NOT NULL, "
                f"ascii_domain text, ascii_email text, fields {fields}{extra}) "
                "WITH (autovacuum_enabled = off)"
            )
            # The few rows a chunk's repeats branch reads (import_rejects), without reading
            # the chunk's other rows.
            cursor.execute(f"CREATE INDEX ON {self.table} (row_no) WHERE first_row IS NOT NULL")
        self._savepoint = self.session.begin_nested()
        self.session.execute(
            text(
                f"CREATE TEMP TABLE {self.rejected} (row_no integer NOT NULL, "
                "email text NOT NULL, kind text NOT NULL, reason text NOT NULL) ON COMMIT DROP"
            )
        )

    def start(self, lines: Iterator[str]) -> None:
        """Stages the lines on the reader thread, one committed COPY per chunk."""
        self._thread = threading.Thread(
            target=self._read, args=(lines,), name="import-staging", daemon=True
        )
        self._thread.start()

    def chunks(self) -> Iterator[tuple[int, int]]:
        """(lo, hi] row bounds of each staged chunk, as each is committed; raises the
        reader's error (PayloadTooLarge, InvalidInput, a database error) after the chunks
        staged before it."""
        lo = 0
        while True:
            item = self._chunks.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, int)
            yield lo, item
            lo = item

    def _read(self, lines: Iterator[str]) -> None:
        columns = ["row_no", "first_row", "email", "domain", "ascii_domain", "ascii_email"]
        columns += self.text_columns or ["fields"]
        statement = f"COPY {self.table} ({', '.join(columns)}) FROM STDIN"
        try:
            with self._conn.cursor() as cursor:
                while not self._stop.is_set():
                    chunk = (
                        lines
                        if self._rows_per_chunk is None
                        else islice(lines, self._rows_per_chunk)
                    )
                    source = CopySource(chunk)
                    _copy(cursor, statement, source)
                    if cursor.rowcount <= 0:
                        break
                    self.rows += cursor.rowcount
                    self._chunks.put(int(source.last_line.split("\t", 1)[0]))
                    if self._rows_per_chunk is None:
                        break
            self._chunks.put(_END)
        except BaseException as exc:
            self._chunks.put(_Failed(exc))
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if error is None:
                self.session.execute(text(f"DROP TABLE {self.table}, {self.rejected}"))
                self._savepoint.commit()
                _drop_after_rollback(self.session, self.table)
                return
            if self._savepoint.is_active:
                self._savepoint.rollback()
            with self._conn.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
        except Exception:
            if error is None:
                raise
            log.warning("import.staging_not_dropped", extra={"table": self.table})
        finally:
            self._feeder.close()


_PENDING: Final = "import_staging_tables"


def _drop_after_rollback(session: Session, table: str) -> None:
    """The DROP in the import's transaction is undone if that transaction is rolled back
    (the caller failed after the import): the table is dropped again once it has ended
    (_transaction_ended). Only sessions that imported listen, not every transaction."""
    session.info.setdefault(_PENDING, []).append(table)
    if not event.contains(session, "after_transaction_end", _transaction_ended):
        event.listen(session, "after_transaction_end", _transaction_ended)


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None or not session.info.get(_PENDING):
        return
    tables = session.info.pop(_PENDING)
    try:
        engine: Any = session.get_bind()
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
            for table in tables:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    except Exception:  # the sweep takes them
        log.warning("import.staging_not_dropped", extra={"tables": tables}, exc_info=True)


def _copy(cursor: Any, statement: str, source: CopySource) -> None:
    import psycopg2

    try:
        cursor.copy_expert(statement, source, COPY_READ_SIZE)
    except psycopg2.Error:
        if source.error is not None:
            raise source.error from None
        raise


def _sweep(cursor: Any) -> None:
    """Drops staging tables over an hour old (their import is long over)."""
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relpersistence = 'u' "
        "AND relname LIKE %s AND pg_table_is_visible(oid)",
        (PREFIX.replace("_", "\\_") + "%",),
    )
    cutoff = time.time() - ORPHAN_AGE_SECONDS
    for (name,) in cursor.fetchall():
        created = name[len(PREFIX) :].split("_", 1)[0]
        if not created.isdigit() or int(created) > cutoff:
            continue
        try:
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
            log.info("import.staging_swept", extra={"table": name})
        except Exception:  # still locked by something: a later sweep takes it
            log.warning("import.staging_sweep_failed", extra={"table": name}, exc_info=True)
