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
from collections.abc import Iterator
from typing import BinaryIO, Final

from app.errors import InvalidInput, PayloadTooLarge
from app.services.csv_headers import (
    MAX_PREAMBLE_ROWS,
    Header,
    has_email_column,
    header_for,
)

BLOCK_SIZE: Final = 1 << 20
MAX_LINE_BYTES: Final = 4 << 20
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
