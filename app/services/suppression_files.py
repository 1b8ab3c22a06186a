"""Suppressions as CSV files: importing a list of addresses and domains (one transaction:
every valid row or none), and exporting what a client honours, with spreadsheet formulas
neutralised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, PayloadTooLarge
from app.models import Suppression, SuppressionKind
from app.services.csv_reader import decode_block, sniff_delimiter
from app.services.suppressions import add_suppression, visible_to

VALUE_HEADERS = ("email", "e-mail", "email address", "address", "domain", "value")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ("value", "kind", "reason", "source", "scope", "created_at")
SNIFF_LINES = 20


@dataclass
class ImportReport:
    added: int = 0
    existing: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)


def import_suppressions(
    session: Session,
    stream: BinaryIO,
    *,
    client_id: int | None,
    reason: str,
    max_bytes: int,
    max_rows: int,
) -> ImportReport:
    """One value per row: the column headed email / domain / address / value, or the first
    column when there is no such header. A value with `@` is an address, else a domain.
    Invalid rows are reported with their row number; the rest are added (existing ones
    are left as they are)."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the file is over {max_bytes:,} bytes (IMPORT_MAX_BYTES)", field="file"
        )
    text = decode_block(data.removeprefix(b"\xef\xbb\xbf"))
    lines = io.StringIO(text, newline="").readlines()
    if not "".join(lines).strip():
        raise InvalidInput("the file is empty", field="file")
    reader = csv.reader(lines, delimiter=sniff_delimiter(lines[:SNIFF_LINES]))
    report = ImportReport()
    column: int | None = None
    for number, cells in _numbered(reader):
        if column is None:
            column = _value_column(cells)
            if column is not None:
                continue  # a header row
            column = 0
        if number - 1 > max_rows:
            raise PayloadTooLarge(
                f"at most {max_rows:,} rows per file (IMPORT_MAX_ROWS)", field="file"
            )
        raw = cells[column].strip() if column < len(cells) else ""
        if not raw:
            report.errors.append({"row": number, "value": "", "reason": "no value"})
            continue
        kind = SuppressionKind.EMAIL if "@" in raw else SuppressionKind.DOMAIN
        try:
            # An invalid value is refused before anything is written (normalise()).
            _, created = add_suppression(
                session, kind, raw, reason=reason, source="import", client_id=client_id
            )
        except InvalidInput as exc:
            report.errors.append({"row": number, "value": raw, "reason": exc.message})
            continue
        if created:
            report.added += 1
        else:
            report.existing += 1
    return report


def _numbered(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    try:
        for number, cells in enumerate(reader, 1):
            if "".join(cells).strip():
                yield number, cells
    except csv.Error as exc:
        raise InvalidInput(f"the file cannot be read as CSV ({exc})", field="file") from None


def _value_column(cells: list[str]) -> int | None:
    for index, cell in enumerate(cells):
        if cell.strip().lower() in VALUE_HEADERS:
            return index
    return None


def export_suppressions(session: Session, *, client_id: int) -> Iterator[str]:
    """The CSV, line by line: every suppression the client honours (global and its own)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([neutralise(c) for c in cells])
        return buffer.getvalue()

    yield line(list(EXPORT_COLUMNS))
    rows = session.execute(
        select(Suppression).where(visible_to(client_id)).order_by(Suppression.id)
    ).scalars()
    for row in rows:
        scope = "global" if row.client_id is None else "client"
        yield line([row.value, row.kind, row.reason, row.source, scope, row.created_at.isoformat()])


def neutralise(cell: object) -> str:
    """A cell a spreadsheet would run as a formula is prefixed with a quote (OWASP "CSV
    Injection"); a value from an import or an unsubscribe may start with one."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
