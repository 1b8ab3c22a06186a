"""Step 2 of an import (app.services.imports): the input streamed once, each valid row as a
COPY text line for the staging table, each invalid one counted with its reason. Nothing
about a row outlives it but its address's 64-bit hash (`Repeats`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Final

from app.errors import InvalidInput, PayloadTooLarge
from app.services.addresses import AddressValidator, ValidAddress
from app.services.csv_headers import Header, field_name, is_email_header
from app.services.csv_reader import CsvSource

ERROR_EMAIL_CHARS: Final = 320
_NULL: Final = "\\N"
# Whitespace trimmed from CSV cells.
TRIM: Final = " \t\r\n\u00a0"
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


@dataclass
class RowError:
    row: int
    email: str | None
    reason: str


class Repeats:
    """Which addresses the input has given before, remembered by hash: a row whose address
    hashes like an earlier one's is staged as a `repeat`, and the database settles after
    the last chunk whether it really is a duplicate (which row first) or a collision.

    This is what lets an import insert its rows chunk by chunk while the file is still
    being read: a row not flagged cannot be a later occurrence of any earlier row, since
    equal addresses hash alike. A million addresses cost about 64 MB here (a set of ints)
    and any collision among them has odds of about 1 in 37 million."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.flagged = 0

    def flag(self, email: str) -> str:
        """'t' (COPY's true) when an earlier row hashed alike, else 'f'."""
        key = address_key(email)
        if key in self._seen:
            self.flagged += 1
            return "t"
        self._seen.add(key)
        return "f"


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
    repeats: Repeats,
) -> Iterator[str]:
    """COPY text lines for the valid rows: row_no, repeat, address columns, then the other
    cells as a JSON object, each trimmed (TRIM) under its column's field name.

    JSON is built here, on the reading thread, with the C string encoder (about 1 us a
    row): the database's own share of an import is the larger, so it gets only what it
    must do."""
    width = len(header.names)
    email_index = header.email_index
    encode = encode_basestring
    keys = [(i, encode(name) + ":") for i, name in enumerate(header.names) if i != email_index]
    check = validator.check
    flag = repeats.flag
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
            document = "{" + ",".join([key + encode(cells[i].strip(TRIM)) for i, key in keys]) + "}"
            if "\\" in document:  # COPY's escape character, from JSON escapes
                document = document.replace("\\", "\\\\")
            email, domain, ascii_domain = address
            if domain == ascii_domain:
                yield f"{row_no}\t{flag(email)}\t{email}\t{domain}\t\\N\t\\N\t{document}\n"
            else:
                yield f"{row_no}\t{flag(email)}\t{_address_columns(address)}\t{document}\n"
    finally:
        tally.rows = rows


def json_copy_lines(
    rows: Iterable[Mapping[str, Any]],
    validator: AddressValidator,
    tally: Tally,
    max_rows: int,
    repeats: Repeats,
) -> Iterator[str]:
    """COPY text lines for the valid rows: row_no, repeat, address columns, JSON fields."""
    for row_no, row in enumerate(rows, 1):
        tally.rows += 1
        if tally.rows > max_rows:
            raise PayloadTooLarge(
                f"more than {max_rows:,} recipients, the import limit", field="recipients"
            )
        raw, fields = _json_row(row_no, row)
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
        columns = _address_columns(address)
        flagged = repeats.flag(address.email)
        yield f"{row_no}\t{flagged}\t{columns}\t{document.replace(chr(92), chr(92) * 2)}\n"


def json_names(rows: Iterable[object]) -> set[str]:
    """The field names of a JSON list's rows (json_copy_lines rejects what is malformed)."""
    names: set[str] = set()
    for row in rows:
        if isinstance(row, Mapping):
            for key in row:
                if isinstance(key, str) and key.strip():
                    name = field_name(key, 0)
                    if not is_email_header(name):
                        names.add(name)
    return names


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
