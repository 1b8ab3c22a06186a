"""What the wizard shows of an uploaded CSV before anything is imported: the header, the
importer's guess of the email column, the field names and the first rows. The importer
(app.services.csv_reader.CsvSource, the same one the API uses) reads the file; only when it
cannot guess the email column are the header cells read here, to offer them as choices."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from app.errors import InvalidInput
from app.services.csv_headers import field_name
from app.services.csv_reader import CsvSource, decode_block, sniff_delimiter

FIRST_ROWS = 5
PEEK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Peek:
    columns: list[str]  # the header cells as written in the file
    fields: list[str]  # the template field name of each column
    guess: str | None  # the importer's email column, None when it cannot tell
    guess_problem: str | None  # why it cannot tell
    rows: list[list[str]]  # the first data rows, as many cells as columns


def peek(path: Path, max_bytes: int, email_column: str | None = None) -> Peek:
    """:raises InvalidInput: the file cannot be read as CSV (empty, binary, too large ...)."""
    guess_problem = None
    try:
        columns, index, rows = _read(path, max_bytes, email_column)
        guess: str | None = columns[index]
    except InvalidInput as exc:
        if not _about_the_email_column(exc):
            raise
        guess, guess_problem = None, exc.message
        columns = header_cells(path)
        columns, _, rows = _read(path, max_bytes, columns[0])
    return Peek(
        columns=columns,
        fields=[field_name(c, i) for i, c in enumerate(columns, 1)],
        guess=guess if email_column is None else email_column,
        guess_problem=guess_problem,
        rows=rows,
    )


def _read(
    path: Path, max_bytes: int, email_column: str | None
) -> tuple[list[str], int, list[list[str]]]:
    with path.open("rb") as stream:
        source = CsvSource(stream, max_bytes=max_bytes, email_column=email_column)
        header = source.read_header()
        columns = header_cells(path, header.header_row)
        rows = []
        for _, cells in source.rows():
            rows.append((cells + [""] * len(columns))[: len(columns)])
            if len(rows) >= FIRST_ROWS:
                break
    return columns, header.email_index, rows


def _about_the_email_column(exc: InvalidInput) -> bool:
    return exc.field == "email_column" or "email column" in exc.message


def header_cells(path: Path, header_row: int | None = None) -> list[str]:
    """The header row's cells (row `header_row`, 1-based, as CsvSource counts; else the
    first row with more than one value, as CsvSource skips a one-cell preamble)."""
    with path.open("rb") as stream:
        block = stream.read(PEEK_BYTES)
    text = decode_block(block).lstrip("\ufeff")
    lines = io.StringIO(text, newline="").readlines()
    delimiter = sniff_delimiter(lines[:50])
    first_filled: list[str] | None = None
    for number, cells in enumerate(csv.reader(lines, delimiter=delimiter), 1):
        stripped = [c.strip() for c in cells]
        if header_row is not None:
            if number == header_row:
                return stripped
            continue
        if not "".join(stripped):
            continue
        first_filled = first_filled or stripped
        if sum(bool(c) for c in stripped) > 1:
            return stripped
    if first_filled is None:
        raise InvalidInput("the file is empty", field="file")
    return first_filled
