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

# Whitespace trimmed from CSV cells by PostgreSQL when it builds the fields.
TRIM: Final = " \t\r\n\u00a0"
SAMPLE_ROWS: Final = 3


@dataclass(frozen=True)
class FieldsSql:
    """How to read one import's staged rows (alias `s`)."""

    sql: str  # the JSONB fields of a row
    names: list[str]  # the field names this import has
    blanks: dict[str, str]  # field name -> SQL that is true when the row's value is blank
    # The staging table's generated `fields` column (over its bare text columns), or None
    # when the rows are staged with their fields already built.
    stored: str | None = None


def csv_fields(header: Header) -> FieldsSql:
    """A staged CSV row's trimmed cells under their field names (blank cells as "").

    The JSONB is built as the rows are staged, by a generated column: COPY computes it
    while Python is still parsing and validating the file (the backend would otherwise
    wait), which takes it out of the INSERT, an import's longest statement, where it
    cost about 1.5 s per million rows."""
    columns = [i for i in range(len(header.names)) if i != header.email_index]
    if not columns:
        return FieldsSql("'{}'::jsonb", [], {})
    trim = sql_literal(TRIM)
    names = ", ".join(sql_literal(header.names[i]) for i in columns)
    values = ", ".join(f"btrim(c{i + 1}, {trim})" for i in columns)
    return FieldsSql(
        "s.fields",
        [header.names[i] for i in columns],
        {header.names[i]: f"btrim(s.c{i + 1}, {trim}) = ''" for i in columns},
        stored=f"jsonb_object(ARRAY[{names}]::text[], ARRAY[{values}]::text[])",
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
