"""Streaming CSV reading for recipient imports: bytes in, (row number, cells) out.

Nothing here holds more than one block of the file (BLOCK_SIZE plus the line that
straddles it) at a time.

* Size: the bytes read are counted; past `max_bytes` the read stops and
  PayloadTooLarge is raised. A stream whose size is known up front (a file, a
  spooled upload) is refused before anything is read.
* Encoding: a UTF-8 BOM is dropped. Each block is cut after its last line break, so
  a multibyte character is never split, and decoded as UTF-8; a block that is not
  valid UTF-8 is decoded line by line, UTF-8 where it can be and otherwise
  Windows-1252 (what "Latin-1" means in practice: Excel on Windows), and ISO-8859-1
  for the five bytes cp1252 leaves undefined. So a Latin-1 file, or a UTF-8 file
  with one Latin-1 line pasted in, loses no row.
* Binary: NUL bytes anywhere, or a known binary signature (PNG, ZIP/xlsx, ...) at
  the start, are refused; so is UTF-16, which Excel calls "Unicode text".
* Dialect: the delimiter (`,` `;` or tab) is sniffed from the first lines; quoting
  is standard CSV (quoted fields may hold delimiters and line breaks, and up to
  128 KiB, the csv module's limit); line breaks may be LF, CRLF or CR.
* Row numbers are what a spreadsheet shows: a record is one row however many line
  breaks its quoted fields hold, blank rows count but are skipped, and the header is
  row 1 when the file starts with it.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from app.errors import InvalidInput, PayloadTooLarge

BLOCK_SIZE: Final = 1 << 20
MAX_LINE_BYTES: Final = 4 << 20
MAX_COLUMNS: Final = 500
SNIFF_LINES: Final = 50
DELIMITERS: Final = (",", ";", "\t")

UTF8_BOM: Final = b"\xef\xbb\xbf"
UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
SIGNATURES: Final = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an .xlsx workbook is one: export it as CSV)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook (export it as CSV)",
    b"\x1f\x8b": "a gzip archive",
}

# Normalised header names (letters and digits only) that name the email column.
EMAIL_HEADERS: Final = frozenset(
    {"email", "emailaddress", "mail", "mailaddress", "emailadresse", "emailadres", "correo"}
)
# The same, for CSV headers, accents dropped: what the tools people keep contacts in write
# (Google Contacts "E-mail 1 - Value", Outlook "E-mail Address", HubSpot and Apollo "Email",
# Mailchimp and LinkedIn "Email Address") and the usual names in other languages.
PRIMARY_EMAIL_HEADERS: Final = EMAIL_HEADERS | {
    "emails", "emailaddresses", "primaryemail", "primaryemailaddress", "emailid",
    "emailadresa", "adresseemail", "adressemail", "adressecourriel", "courriel",
    "adresseelectronique", "correoelectronico", "direcciondecorreo",
    "direcciondecorreoelectronico", "enderecodeemail", "indirizzoemail", "epost",
    "epostadresse", "epostadress", "sahkoposti", "sahkopostiosoite", "emailcim",
    "adresemail", "elektronnayapochta", "электроннаяпочта", "почта", "メールアドレス",
    "電子メール", "电子邮件", "邮箱", "이메일",
}  # fmt: skip
# "Secondary Email", "Work Email" ...: an address, but not the one to prefer. Lower wins.
QUALIFIED_EMAIL_RANKS: Final = {
    "secondary": 2, "tertiary": 3, "other": 4, "alternate": 4, "alternative": 4,
    "additional": 4, "backup": 4, "work": 5, "business": 5, "personal": 5, "private": 5,
    "home": 5,
}  # fmt: skip
_NUMBERED_EMAIL = re.compile(r"(?:e?mail|emailaddress)(\d{1,2})(?:value|address|adresse)?")
_EMAIL_WORDS = ("email", "emailaddress", "mail", "mailaddress")
MAX_PREAMBLE_ROWS: Final = 5
MAX_SHOWN_COLUMNS: Final = 30

# Jinja keywords and constants cannot be used as variable names in a template.
JINJA_RESERVED: Final = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none"}
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"\W+")


@dataclass(frozen=True)
class Header:
    names: list[str]  # a field name per column (the email column's too)
    email_index: int
    header_row: int

    @property
    def field_names(self) -> list[str]:
        return [n for i, n in enumerate(self.names) if i != self.email_index]


def field_name(header: str, position: int) -> str:
    """A header as a Jinja-usable snake_case name: "First Name" and "firstName" -> first_name.

    Letters keep their accents ("Prénom" -> prénom); a name with nothing usable left
    becomes column_<position>."""
    text = unicodedata.normalize("NFKC", header).strip()
    text = _CAMEL.sub("_", text).casefold()
    name = _NON_WORD.sub("_", text).strip("_")
    if not name:
        return f"column_{position}"
    if name[0].isdigit():
        name = f"field_{name}"
    if name in JINJA_RESERVED:
        name = f"{name}_"
    return name


def is_email_header(name: str) -> bool:
    """The email key of a JSON recipient (a field name): the documented names only."""
    return re.sub(r"[\W_]", "", name) in EMAIL_HEADERS


def email_rank(header: str) -> int | None:
    """How surely a CSV header names THE email column: 0 for the primary names ("Email",
    "E-mail 1 - Value", "Courriel"), higher for second choices ("E-mail 2 Address" is 2,
    "Secondary Email" 2, "Work Email" 5), None for anything else ("E-mail Type")."""
    text = unicodedata.normalize("NFKD", header).casefold()
    key = "".join(c for c in text if c.isalnum() and not unicodedata.combining(c))
    if key in PRIMARY_EMAIL_HEADERS:
        return 0
    numbered = _NUMBERED_EMAIL.fullmatch(key)
    if numbered:
        return max(int(numbered.group(1)) - 1, 0) * 2
    for qualifier, rank in QUALIFIED_EMAIL_RANKS.items():
        if key.startswith(qualifier) and key[len(qualifier) :] in _EMAIL_WORDS:
            return rank
    return None


def same_header(a: str, b: str) -> bool:
    """email_column matching: case-insensitive, after trimming."""
    return unicodedata.normalize("NFKC", a).strip().casefold() == (
        unicodedata.normalize("NFKC", b).strip().casefold()
    )


def _shown(cells: list[str]) -> str:
    shown = ", ".join(repr(c) for c in cells[:MAX_SHOWN_COLUMNS]) or "nothing"
    if len(cells) > MAX_SHOWN_COLUMNS:
        shown += f" and {len(cells) - MAX_SHOWN_COLUMNS} more"
    return shown


_CHOOSE = "choose it with the email_column form field (API) or --email-column NAME (CLI)"


def _email_index(cells: list[str], email_column: str | None) -> int:
    if email_column is not None:
        for i, cell in enumerate(cells):
            if same_header(cell, email_column):
                return i
        raise InvalidInput(
            f"email_column {email_column!r} is not a column of the file "
            f"(the header row has {_shown(cells)})",
            field="email_column",
        )
    ranked = [(rank, i) for i, c in enumerate(cells) if (rank := email_rank(c)) is not None]
    if not ranked:
        hint = ""
        if any("@" in c for c in cells):
            hint = " The first row looks like data: the file needs a header row."
        raise InvalidInput(
            f"the file has no email column (the header row has {_shown(cells)}); name it "
            f"Email or {_CHOOSE}.{hint}",
            field="file",
        )
    best = min(rank for rank, _ in ranked)
    tied = [i for rank, i in ranked if rank == best]
    if len(tied) > 1:
        found = ", ".join(repr(cells[i]) for i in tied)
        raise InvalidInput(
            f"more than one email column ({found}); keep one of them or {_CHOOSE}",
            field="file",
        )
    return tied[0]


def has_email_column(cells: list[str], email_column: str | None) -> bool:
    if email_column is not None:
        return any(same_header(c, email_column) for c in cells)
    return any(email_rank(c) is not None for c in cells)


def header_for(cells: list[str], header_row: int, email_column: str | None = None) -> Header:
    """Names for a header row; InvalidInput (field "file", or "email_column" for an
    email_column the header does not have) when it cannot be used."""
    if len(cells) > MAX_COLUMNS:
        raise InvalidInput(
            f"the file has {len(cells)} columns; at most {MAX_COLUMNS} are supported",
            field="file",
        )
    names = [field_name(cell, i) for i, cell in enumerate(cells, 1)]
    seen: dict[str, str] = {}
    for cell, name in zip(cells, names, strict=True):
        if name in seen:
            raise InvalidInput(
                f"columns {seen[name]!r} and {cell!r} both become the field {name!r}; "
                "rename one of them",
                field="file",
            )
        seen[name] = cell
    return Header(names, _email_index(cells, email_column), header_row)


class CsvSource:
    """Reads one CSV upload. Iterate `rows()` once, after `read_header()`."""

    def __init__(
        self, stream: BinaryIO, *, max_bytes: int | None, email_column: str | None = None
    ) -> None:
        self.stream = stream
        self.max_bytes = max_bytes  # None: a local file (the CLI), bounded by rows only
        self.email_column = email_column
        self.bytes_read = 0
        self.delimiter = ","
        self._records: Iterator[list[str]] | None = None
        self._row = 0

    def read_header(self) -> Header:
        """Sniffs the dialect and returns the header (the first non-blank row)."""
        self._refuse_known_oversize()
        lines = self._lines()
        sample: list[str] = []
        filled = 0
        for line in lines:
            sample.append(line)
            filled += bool(line.strip())
            if filled >= SNIFF_LINES or len(sample) >= 10 * SNIFF_LINES:
                break
        if not filled:
            raise InvalidInput("the file is empty", field="file")
        self.delimiter = sniff_delimiter(sample)
        self._records = csv.reader(_chain(sample, lines), delimiter=self.delimiter)
        first: tuple[list[str], int] | None = None
        skipped = 0
        for raw in self._iter_records():
            if _is_blank(raw):
                continue
            cells = [c.strip() for c in raw]
            first = first or (cells, self._row)
            # LinkedIn's Connections.csv opens with "Notes:" and a quoted paragraph: rows
            # of one cell before the real header are skipped (never data: data rows come
            # after a header).
            if (
                sum(bool(c) for c in cells) <= 1
                and skipped < MAX_PREAMBLE_ROWS
                and not has_email_column(cells, self.email_column)
            ):
                skipped += 1
                continue
            return header_for(cells, self._row, self.email_column)
        if first is not None:
            return header_for(*first, self.email_column)
        raise InvalidInput("the file is empty", field="file")

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cells) for each non-blank row after the header."""
        assert self._records is not None, "read_header() first"
        # The hot loop of an import: one generator, no helper calls per row.
        row = self._row
        try:
            for cells in self._records:
                row += 1
                if "".join(cells).strip():
                    yield row, cells
        except csv.Error as exc:
            message = f"row {row + 1} cannot be read as CSV ({exc})"
            raise InvalidInput(message, field="file") from None
        finally:
            self._row = row

    def _iter_records(self) -> Iterator[list[str]]:
        assert self._records is not None, "read_header() first"
        while True:
            try:
                cells = next(self._records)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InvalidInput(
                    f"row {self._row + 1} cannot be read as CSV ({exc})", field="file"
                ) from None
            self._row += 1
            yield cells

    def _refuse_known_oversize(self) -> None:
        if self.max_bytes is None:
            return
        size = _known_size(self.stream)
        if size is not None and size > self.max_bytes:
            raise self._too_large()

    def _too_large(self) -> PayloadTooLarge:
        assert self.max_bytes is not None
        return PayloadTooLarge(
            f"the file is larger than the import limit of {_megabytes(self.max_bytes)} for "
            "uploads (IMPORT_MAX_BYTES); `flask --app app import CAMPAIGN_ID FILE.csv` "
            "imports a bigger local file (bounded by IMPORT_MAX_ROWS only)",
            field="file",
        )

    def _blocks(self) -> Iterator[bytes]:
        """Raw blocks, each ending after a line break (except the last)."""
        carry = b""
        first = True
        while True:
            chunk = self._read()
            if first:
                # Short reads are allowed: the signatures need the first few bytes.
                while chunk and len(chunk) < 8 and (more := self._read()):
                    chunk += more
                chunk = _check_start(chunk)
                first = False
            if not chunk:
                break
            if b"\x00" in chunk:
                raise InvalidInput(
                    "the file is binary (it contains NUL bytes), not CSV text", field="file"
                )
            data = carry + chunk
            cut = _last_line_break(data)
            if cut < 0:
                if len(data) > MAX_LINE_BYTES:
                    raise InvalidInput(
                        f"a line is longer than {_megabytes(MAX_LINE_BYTES)}; "
                        "this does not look like a CSV file",
                        field="file",
                    )
                carry = data
                continue
            carry = data[cut:]
            yield data[:cut]
        if carry:
            yield carry

    def _read(self) -> bytes:
        chunk = self.stream.read(BLOCK_SIZE)
        self.bytes_read += len(chunk)
        if self.max_bytes is not None and self.bytes_read > self.max_bytes:
            raise self._too_large()
        return chunk

    def _lines(self) -> Iterator[str]:
        for block in self._blocks():
            yield from io.StringIO(decode_block(block), newline="")


def decode_block(block: bytes) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_decode_line(line) for line in block.splitlines(keepends=True))


def _decode_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return line.decode("cp1252")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits the sample into the most columns, consistently.

    A candidate is consistent when every non-blank sampled row has as many fields as
    the first one; the last sampled line may be cut inside a quoted field and is
    ignored when the sample has several. Ties and single-column files give `,`."""
    best, best_score = ",", (False, 1)
    for delimiter in DELIMITERS:
        try:
            rows = [r for r in csv.reader(lines, delimiter=delimiter) if not _is_blank(r)]
        except csv.Error:
            continue
        # A preamble of one-cell rows (LinkedIn's "Notes:") says nothing about the dialect.
        while len(rows) > 1 and len(rows[0]) == 1:
            rows = rows[1:]
        if not rows:
            continue
        widths = [len(r) for r in (rows[:-1] if len(rows) > 1 else rows)]
        consistent = all(w == widths[0] for w in widths)
        score = (consistent, widths[0])
        if widths[0] > 1 and score > best_score:
            best, best_score = delimiter, score
    return best


def _check_start(chunk: bytes) -> bytes:
    if chunk.startswith(UTF8_BOM):
        return chunk[len(UTF8_BOM) :]
    if chunk.startswith(UTF16_BOMS):
        raise InvalidInput(
            "the file is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8' instead",
            field="file",
        )
    for signature, what in SIGNATURES.items():
        if chunk.startswith(signature):
            raise InvalidInput(f"the file is {what}, not CSV text", field="file")
    return chunk


def _last_line_break(data: bytes) -> int:
    """Index just after the last line break in `data`, or -1.

    A CR at the very end may be the first half of a CRLF whose LF is in the next
    read, so it is never a cut point: cutting there would make one break look like
    two and shift every row number after it."""
    lf = data.rfind(b"\n")
    cr = data.rfind(b"\r", 0, len(data) - 1)
    cut = max(lf, cr)
    return cut + 1 if cut >= 0 else -1


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _is_blank(cells: list[str]) -> bool:
    return not "".join(cells).strip()


def _known_size(stream: BinaryIO) -> int | None:
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return end - position


def _megabytes(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    return f"{size:,} bytes"
