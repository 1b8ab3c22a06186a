"""The import's staging tables in PostgreSQL: the valid rows, filled by COPY one chunk at a
time (app.services.import_feed), and the rejected ones."""

from __future__ import annotations

import io
import uuid
from typing import Final

from sqlalchemy import text
from sqlalchemy.orm import Session

# A chunk is read by copy_expert in one piece: every read() takes the GIL back from the
# thread that parses the next chunk.
COPY_READ_SIZE: Final = 1 << 26


class Staging:
    """The import's temporary tables, dropped at commit (or now, by `drop`)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        suffix = uuid.uuid4().hex[:12]
        self.table = f"import_staging_{suffix}"
        self.rejected = f"import_rejected_{suffix}"
        self.rows = 0  # rows staged, as COPY reports them
        # `repeat`: an earlier row's address hashed alike (import_lines.Repeats).
        session.execute(
            text(
                f"CREATE TEMP TABLE {self.table} (row_no integer NOT NULL, "
                "repeat boolean NOT NULL, email text NOT NULL, domain text NOT NULL, "
                "ascii_domain text, ascii_email text, fields jsonb NOT NULL) ON COMMIT DROP; "
                f"CREATE TEMP TABLE {self.rejected} (row_no integer NOT NULL, email text NOT NULL, "
                "kind text NOT NULL, reason text NOT NULL) ON COMMIT DROP"
            )
        )

    def copy(self, lines: bytes) -> str:
        """Stages COPY text lines; returns the tid from which the new rows lie.

        COPY appends: to the table's last page while it has room, then to new pages, so
        every new row lies at or after the first tuple of the page that was last before it
        (a TID range scan from there, with the row numbers, finds exactly the new rows)."""
        session = self.session
        pages = session.execute(
            text(f"SELECT pg_relation_size('{self.table}') / current_setting('block_size')::int")
        ).scalar_one()
        dbapi = session.connection().connection.driver_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor:
            cursor.copy_expert(f"COPY {self.table} FROM STDIN", io.BytesIO(lines), COPY_READ_SIZE)
            self.rows += cursor.rowcount
        return f"({max(pages - 1, 0)},0)"

    def drop(self) -> None:
        self.session.execute(text(f"DROP TABLE IF EXISTS {self.table}, {self.rejected}"))
