"""The import's staging tables in PostgreSQL, filled by streaming COPY (psycopg2's
copy_expert reading from a generator, so the input is never held in memory)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import islice
from typing import Final

from sqlalchemy import text
from sqlalchemy.orm import Session

COPY_READ_SIZE: Final = 1 << 18
COPY_BATCH_LINES: Final = 2000


class CopySource:
    """A read()-able face on a generator of COPY lines, for psycopg2's copy_expert.

    psycopg2 turns an exception raised by read() into QueryCanceled; the original is
    kept here so the caller sees the domain error (PayloadTooLarge, InvalidInput)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.error: BaseException | None = None

    def read(self, size: int = COPY_READ_SIZE) -> str:
        # psycopg2 takes whatever length comes back; batching by line count keeps the
        # per-line cost to one islice step.
        try:
            return "".join(islice(self._lines, COPY_BATCH_LINES))
        except BaseException as exc:
            self.error = exc
            raise


class Staging:
    """The import's temporary tables, dropped at commit (or now, by `drop`)."""

    def __init__(
        self, session: Session, *, text_columns: int, fields_stored: str | None = None
    ) -> None:
        self.session = session
        suffix = uuid.uuid4().hex[:12]
        self.table = f"import_staging_{suffix}"
        self.rejected = f"import_rejected_{suffix}"
        self.text_columns = [f"c{i}" for i in range(1, text_columns + 1)]
        self.rows = 0  # rows staged, as COPY reports them
        extra = "".join(f", {c} text" for c in self.text_columns)
        fields = (
            "jsonb"
            if fields_stored is None
            else f"jsonb GENERATED ALWAYS AS ({fields_stored}) STORED"
        )
        session.execute(
            text(
                f"CREATE TEMP TABLE {self.table} (row_no integer NOT NULL, "
                "repeat boolean NOT NULL, email text NOT NULL, "
                f"domain text NOT NULL, ascii_domain text, ascii_email text, fields {fields}"
                f"{extra}) ON COMMIT DROP"
            )
        )

    def copy(self, lines: Iterator[str]) -> None:
        import psycopg2

        columns = ["row_no", "repeat", "email", "domain", "ascii_domain", "ascii_email"]
        columns += self.text_columns or ["fields"]
        source = CopySource(lines)
        dbapi = self.session.connection().connection.driver_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor:
            try:
                cursor.copy_expert(
                    f"COPY {self.table} ({', '.join(columns)}) FROM STDIN", source, COPY_READ_SIZE
                )
            except psycopg2.Error:
                if source.error is not None:
                    raise source.error from None
                raise
            self.rows += cursor.rowcount

    def drop(self) -> None:
        self.session.execute(text(f"DROP TABLE IF EXISTS {self.table}, {self.rejected}"))
