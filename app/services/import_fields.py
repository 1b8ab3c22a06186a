"""The custom fields of imported recipients, as SQL over the import's staging table.

Every column of an import is a field of every one of its rows: a blank CSV cell is the
empty string (trimmed like every cell), and a JSON recipient without a key that other
recipients of the same import have, or with null, gets "" for it. So a template's
`{{ company }}` never meets a missing value; how many recipients have a blank value
for each field the templates use is counted here for the import's warnings.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.services.csv_headers import Header
from app.services.staging import Staging

SAMPLE_ROWS: Final = 3


@dataclass(frozen=True)
class FieldsSql:
    """How to read one import's staged rows (alias `s`)."""

    sql: str  # the JSONB fields of a row
    names: list[str]  # the field names this import has
    blanks: dict[str, str]  # field name -> SQL that is true when the row's value is blank


def csv_fields(header: Header) -> FieldsSql:
    """A staged CSV row's fields: import_lines writes every cell but the address, trimmed
    (import_lines.TRIM), under its column's field name, so a blank cell is ""."""
    names = [name for i, name in enumerate(header.names) if i != header.email_index]
    return FieldsSql(
        "s.fields", names, {name: f"s.fields ->> {sql_literal(name)} = ''" for name in names}
    )


def json_fields(names: Collection[str]) -> FieldsSql:
    """Staged JSON fields under every name the import saw ("" where a row lacks one)."""
    ordered = sorted(names)
    if not ordered:
        return FieldsSql("s.fields", [], {})
    defaults = json.dumps(dict.fromkeys(ordered, ""), ensure_ascii=False)
    return FieldsSql(
        f"{sql_literal(defaults)}::jsonb || s.fields",
        ordered,
        {name: f"coalesce(s.fields ->> {sql_literal(name)}, '') = ''" for name in ordered},
    )


def blank_counts(
    session: Session,
    staging: Staging,
    fields: FieldsSql,
    wanted: Collection[str],
    imported: int,
) -> dict[str, int]:
    """For each wanted field (those the templates use), how many of the rows this import
    adds have no value: blank, or (a field the campaign has but this file lacks) absent."""
    counts = {name: imported for name in sorted(wanted) if name not in fields.blanks}
    present = [name for name in sorted(wanted) if name in fields.blanks]
    if present and imported:
        filters = ", ".join(f"count(*) FILTER (WHERE {fields.blanks[n]})" for n in present)
        row = session.execute(
            text(
                f"SELECT {filters} FROM {staging.table} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {staging.rejected} x WHERE x.row_no = s.row_no)"
            )
        ).one()
        counts.update(zip(present, row, strict=True))
    return {name: n for name, n in sorted(counts.items()) if n}


def sample_rows(session: Session, staging: Staging, fields: FieldsSql) -> list[tuple[int, Any]]:
    """(row number, fields) of the first rows this import adds, to render at import."""
    return [
        (row_no, document)
        for row_no, document in session.execute(
            text(
                f"SELECT s.row_no, {fields.sql} FROM {staging.table} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {staging.rejected} x WHERE x.row_no = s.row_no) "
                "ORDER BY s.row_no LIMIT :n"
            ),
            {"n": SAMPLE_ROWS},
        )
    ]


def sql_literal(value: str) -> str:
    # Field names come from the file: quoted as standard SQL literals, never interpolated raw.
    return "'" + value.replace("'", "''") + "'"
