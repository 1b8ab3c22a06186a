"""An import's input read on a thread of its own, in chunks, while the database stores the
chunk before: parsing and validating a million rows is about 3 s of Python, inserting
them about 6 s of one PostgreSQL backend, and the two no longer take turns.

The reader thread runs only the line generator (decoding, CSV parsing, address checks; no
database, no app context). psycopg2 releases the GIL while a statement or a COPY runs, so
the reader has the interpreter to itself while the backend works. At most `DEPTH` chunks
wait between the two, so memory stays bounded by the chunk size, not by the file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Final

# Rows per chunk: large enough that a chunk's fixed cost (a COPY, a savepoint, one
# statement) is small beside its rows, small enough that the first chunk is ready soon.
ROWS_PER_CHUNK: Final = 25_000
DEPTH: Final = 1
_POLL_SECONDS: Final = 0.1


@dataclass(frozen=True)
class Chunk:
    first_row: int  # the row number of its first line
    lines: bytes  # COPY text lines in UTF-8, each starting with its row number


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END: Final = object()


class ChunkFeed:
    """`with ChunkFeed(lines) as feed: for chunk in feed: ...`

    An exception of the line generator (PayloadTooLarge, InvalidInput) is raised in the
    consuming thread, after the whole chunks before it. Leaving the block early stops the reader
    and closes the generator (its `finally` runs) before the block is left."""

    def __init__(self, lines: Iterator[str], rows_per_chunk: int | None = None) -> None:
        self._lines = lines
        self._rows_per_chunk = rows_per_chunk or ROWS_PER_CHUNK
        self._queue: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="import-reader", daemon=True)

    def __enter__(self) -> ChunkFeed:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, Chunk)
            yield item

    def _read(self) -> None:
        lines = self._lines
        try:
            while not self._stop.is_set():
                batch = list(islice(lines, self._rows_per_chunk))
                if not batch:
                    self._put(_END)
                    return
                first_row = int(batch[0].split("\t", 1)[0])
                self._put(Chunk(first_row, "".join(batch).encode()))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(_Failed(exc))
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue
