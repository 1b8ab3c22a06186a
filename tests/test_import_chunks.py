"""An import stores its rows chunk by chunk while a reader thread parses the rest
(app.services.import_feed): what may not change with that. Rows whose addresses only hash
alike (forced here) are settled exactly after the last chunk; an error of the input after
some chunks were stored leaves nothing stored; the reader never outlives the import; a JSON
list's field names reach the rows of every chunk."""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.errors import PayloadTooLarge
from app.extensions import db
from app.models import Recipient
from app.services import import_feed, import_lines
from app.services.import_feed import ChunkFeed
from app.services.imports import import_csv, import_rows
from tests.test_import_order import INVALID, _reference


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "import-reader"]


def stored(campaign_id: int) -> list[tuple[str, dict[str, str]]]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.fields)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
    )
    return [(email, fields) for email, fields in rows]


def test_rows_that_only_hash_alike_are_imported_and_real_repeats_rejected(
    factory, settings, monkeypatch
):
    # Five hash values for every address: almost every row is staged as a repeat, so the
    # exact check after the last chunk decides nearly all of them.
    monkeypatch.setattr(import_lines, "address_key", lambda email: len(email) % 5)
    monkeypatch.setattr(import_feed, "ROWS_PER_CHUNK", 50)
    rng = random.Random(7)
    campaign = factory.create_campaign()
    existing = [f"old{i}@firm.example" for i in range(20)]
    factory.create_recipients(campaign, existing)
    factory.suppress("gone1@firm.example")
    factory.suppress("blocked.example")
    pool = [f"u{i}@firm{i % 3}.example" for i in range(150)]
    pool += ["gone1@firm.example", "x@blocked.example"]
    rows = []
    for _ in range(600):
        roll = rng.random()
        if roll < 0.05:
            rows.append(rng.choice(INVALID))
        elif roll < 0.15:
            rows.append(rng.choice(existing).upper())
        else:
            address = rng.choice(pool)
            rows.append(address.upper() if rng.random() < 0.3 else address)
    data = ("Email,Name\n" + "".join(f"{r},n{i}\n" for i, r in enumerate(rows))).encode()

    with unit_of_work() as session:
        report = import_csv(session, campaign.id, io.BytesIO(data), settings)

    suppressed = {"gone1@firm.example", "blocked.example"}
    want, counts, errors = _reference(rows, set(existing), suppressed, settings.import_error_limit)
    assert report.rejected == counts
    assert report.imported == len(want)
    assert [
        (e.row, e.reason) for e in report.errors if e.reason.startswith(("dup", "alr", "the"))
    ] == [(row, reason) for row, _, reason in errors if reason]
    # The chunks insert the rows whose hash was new; the collisions follow, in file order.
    seen_keys: set[int] = set()
    first_of_key, collided = [], []
    for address in want:
        key = len(address) % 5
        (collided if key in seen_keys else first_of_key).append(address)
        seen_keys.add(key)
    got = stored(campaign.id)
    assert [email for email, _ in got if email not in existing] == first_of_key + collided
    row_of: dict[str, int] = {}
    for i, raw in enumerate(rows):
        row_of.setdefault(raw.lower(), i)
    imported = [(email, fields) for email, fields in got if email not in existing]
    assert [fields for _, fields in imported] == [{"name": f"n{row_of[e]}"} for e, _ in imported]


def test_an_input_error_after_stored_chunks_leaves_nothing_and_no_reader(
    factory, settings, monkeypatch
):
    monkeypatch.setattr(import_feed, "ROWS_PER_CHUNK", 10)
    campaign = factory.create_campaign()
    data = b"email,n\n" + b"".join(f"u{i}@example.com,{i}\n".encode() for i in range(61))
    limited = settings.model_copy(update={"import_max_rows": 60})
    with (
        pytest.raises(PayloadTooLarge, match="more than 60 data rows"),
        unit_of_work() as session,
    ):
        import_csv(session, campaign.id, io.BytesIO(data), limited)
    assert stored(campaign.id) == []
    assert readers() == []


def test_a_json_list_gives_every_chunk_every_field_name(factory, settings, monkeypatch):
    monkeypatch.setattr(import_feed, "ROWS_PER_CHUNK", 2)
    campaign = factory.create_campaign()
    rows = [{"email": f"r{i}@example.com", "n": i} for i in range(5)]
    rows.append({"email": "last@example.com", "Late Key": "x"})
    with unit_of_work() as session:
        report = import_rows(session, campaign.id, rows, settings)
    assert report.imported == 6
    assert stored(campaign.id)[0] == ("r0@example.com", {"n": 0, "late_key": ""})
    assert stored(campaign.id)[-1] == ("last@example.com", {"n": "", "late_key": "x"})


def test_the_feed_hands_over_chunks_in_order_then_the_error():
    def lines() -> Iterator[str]:
        for row in range(2, 9):
            yield f"{row}\tf\n"
        raise ValueError("bad row 9")

    got = []
    with pytest.raises(ValueError, match="bad row 9"), ChunkFeed(lines(), 3) as feed:
        for chunk in feed:
            got.append((chunk.first_row, chunk.lines.count(b"\n")))
    assert got == [(2, 3), (5, 3)]  # the chunk the error cut short is of no use
    assert readers() == []


def test_leaving_the_feed_early_stops_the_reader_and_closes_the_lines():
    closed = threading.Event()

    def endless() -> Iterator[str]:
        row = 2
        try:
            while True:
                yield f"{row}\tf\n"
                row += 1
        finally:
            closed.set()

    with ChunkFeed(endless(), 100) as feed:
        for chunk in feed:
            assert chunk.first_row == 2
            break
    assert closed.is_set()
    assert readers() == []
