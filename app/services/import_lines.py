"""Step 2 of an import (app.services.imports): the input streamed once, each valid row as a
COPY text line for the staging table, each invalid one counted with its reason. Nothing
about a row outlives it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from app.errors import InvalidInput, PayloadTooLarge
from app.services.addresses import AddressValidator, ValidAddress
from app.services.csv_headers import Header, field_name, is_email_header
from app.services.csv_reader import CsvSource

ERROR_EMAIL_CHARS: Final = 320
_NULL: Final = "\\N"
_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


@dataclass
class RowError:
    row: int
    email: str | None
    reason: str


class Repeats:
    """Which addresses the input has given before, remembered by hash: a row whose address
    hashes like an earlier row's is staged with that row's number (`first_row`), so that
    the database settles it with one lookup by row number. Equal addresses hash alike, so
    a row staged without one is no later occurrence of any, and the first row of an
    address is the first row of its hash; a row that only collided (odds about 1 in 37
    million for a million addresses) names a row with another address, and the database
    then looks for an earlier row of its own address by scanning. A million hashes with
    their rows take about 110 MB."""

    def __init__(self) -> None:
        self._first: dict[int, int] = {}

    def first_row(self, email: str, row_no: int) -> str:
        """COPY text: the first row whose address hashed alike, or NULL for this row."""
        first = self._first.setdefault(address_key(email), row_no)
        return _NULL if first == row_no else str(first)


# Python's str hash (64 bits, salted per process); a module attribute so that a test can
# force collisions.
address_key = hash


@dataclass
class Tally:
    error_limit: int
    rows: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)

    def reject(self, row: int, email: str | None, reason: str) -> None:
        self.invalid += 1
        if len(self.errors) < self.error_limit:
            self.errors.append(RowError(row, _shown(email), reason))


def csv_copy_lines(
    source: CsvSource,
    header: Header,
    validator: AddressValidator,
    tally: Tally,
    max_rows: int,
) -> Iterator[str]:
    """COPY text lines for the valid rows: row_no, first_row, address columns, every cell."""
    width = len(header.names)
    email_index = header.email_index
    check = validator.check
    first_row = Repeats().first_row
    rows = 0
    try:
        for row_no, cells in source.rows():
            rows += 1
            if rows > max_rows:
                raise PayloadTooLarge(
                    f"the file has more than {max_rows:,} data rows, the import limit",
                    field="file",
                )
            if len(cells) != width:
                if len(cells) > width:
                    if "".join(cells[width:]).strip():
                        tally.reject(
                            row_no,
                            cells[email_index].strip(),
                            f"the row has {len(cells)} values but the header has {width} columns",
                        )
                        continue
                    cells = cells[:width]
                else:
                    cells = cells + [""] * (width - len(cells))
            raw = cells[email_index].strip()
            if not raw:
                tally.reject(row_no, None, "no email address")
                continue
            address = check(raw)
            if isinstance(address, str):
                tally.reject(row_no, raw, address)
                continue
            joined = "\t".join(cells)
            if (
                joined.count("\t") != width - 1
                or "\\" in joined
                or "\n" in joined
                or "\r" in joined
            ):
                joined = "\t".join(cell.translate(_COPY_ESCAPES) for cell in cells)
            email, domain, ascii_domain = address
            first = first_row(email, row_no)
            if domain == ascii_domain:
                yield f"{row_no}\t{first}\t{email}\t{domain}\t\\N\t\\N\t{joined}\n"
            else:
                yield f"{row_no}\t{first}\t{_address_columns(address)}\t{joined}\n"
    finally:
        tally.rows = rows


def json_copy_lines(
    rows: Iterable[Mapping[str, Any]],
    validator: AddressValidator,
    tally: Tally,
    max_rows: int,
    names: set[str],
) -> Iterator[str]:
    """COPY text lines for the valid rows: row_no, first_row, address columns, JSON fields."""
    first_row = Repeats().first_row
    for row_no, row in enumerate(rows, 1):
        tally.rows += 1
        if tally.rows > max_rows:
            raise PayloadTooLarge(
                f"more than {max_rows:,} recipients, the import limit", field="recipients"
            )
        raw, fields = _json_row(row_no, row)
        names.update(fields)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            tally.reject(row_no, None, "no email address")
            continue
        if not isinstance(raw, str):
            tally.reject(row_no, None, "the email address must be a string")
            continue
        raw = raw.strip()
        address = validator.check(raw)
        if isinstance(address, str):
            tally.reject(row_no, raw, address)
            continue
        kept = {k: "" if v is None else v for k, v in fields.items()}
        document = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
        # json.dumps escapes every control character; only its backslashes need COPY escapes.
        columns = f"{first_row(address.email, row_no)}\t{_address_columns(address)}"
        yield f"{row_no}\t{columns}\t{document.replace(chr(92), chr(92) * 2)}\n"


def _json_row(row_no: int, row: Mapping[str, Any]) -> tuple[object, dict[str, Any]]:
    """(the email value, the other fields under normalised names) of one JSON recipient."""
    where = f"recipients row {row_no}"
    if not isinstance(row, Mapping):
        raise InvalidInput(f"{where} must be an object", field="recipients")
    email: object = None
    email_key: str | None = None
    fields: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for key, value in row.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidInput(f"{where} has an empty key", field="recipients")
        name = field_name(key, 0)
        if is_email_header(name):
            if email_key is not None:
                raise InvalidInput(
                    f"{where} has two email keys ({email_key!r} and {key!r})", field="recipients"
                )
            email, email_key = value, key
            continue
        if name in originals:
            raise InvalidInput(
                f"{where}: keys {originals[name]!r} and {key!r} both become the field {name!r}",
                field="recipients",
            )
        originals[name] = key
        fields[name] = _field_value(where, key, value)
    return email, fields


def _field_value(where: str, key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where}: {key!r} is not a finite number", field="recipients")
        return value
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            raise InvalidInput(
                f"{where}: {key!r} contains a NUL or an invalid Unicode character",
                field="recipients",
            )
        return value.strip()
    raise InvalidInput(
        f"{where}: {key!r} must be a string, a number, a boolean or null", field="recipients"
    )


def _address_columns(address: ValidAddress) -> str:
    """email, domain, ascii_domain, ascii_email as COPY text (NULL when same as Unicode).

    A valid address holds no backslash, tab or line break: nothing to escape."""
    if address.ascii_domain == address.domain:
        return f"{address.email}\t{address.domain}\t{_NULL}\t{_NULL}"
    ascii_email = address.email[: -len(address.domain)] + address.ascii_domain
    return f"{address.email}\t{address.domain}\t{address.ascii_domain}\t{ascii_email}"


def _shown(email: str | None) -> str | None:
    if email is None or len(email) <= ERROR_EMAIL_CHARS:
        return email
    return email[:ERROR_EMAIL_CHARS] + "…"
