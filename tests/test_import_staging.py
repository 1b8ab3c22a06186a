"""The import's staging table on its second connection: chunks are stored while the file
is still being read, and no table or connection outlives an import, whether it succeeds,
fails part-way or is rolled back by its caller; tables an import left behind (a killed
process) are swept once an hour old."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.db import unit_of_work
from app.errors import PayloadTooLarge
from app.extensions import db
from app.models import Recipient
from app.services import imports, staging
from app.services.imports import import_csv


def staging_tables() -> list[str]:
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'import\\_staging\\_%'")
            ).scalars()
        )


def connections() -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def stored(campaign_id: int) -> int:
    db.session.rollback()
    return int(
        db.session.execute(
            select(func.count()).where(Recipient.campaign_id == campaign_id)
        ).scalar_one()
    )


def csv(rows: int, start: int = 0) -> bytes:
    return ("email\n" + "".join(f"r{i}@example.com\n" for i in range(start, rows))).encode()


class GatedStream(io.BytesIO):
    """A file whose second half is handed out only once `gate` is set (or after `wait`)."""

    def __init__(self, data: bytes, gate: threading.Event, wait: float) -> None:
        super().__init__(data)
        self.half = len(data) // 2
        self.gate = gate
        self.wait = wait
        self.waited_in_vain = False

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.half and not self.gate.is_set():
            self.waited_in_vain = not self.gate.wait(self.wait)
        if size is None or size < 0:
            size = self.half - self.tell() if self.tell() < self.half else -1
        elif self.tell() < self.half:
            size = min(size, self.half - self.tell())
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_the_first_chunk_is_stored_while_the_rest_of_the_file_is_still_unread(
    factory, settings, monkeypatch
):
    monkeypatch.setattr(staging, "ROWS_PER_CHUNK", 50)
    campaign = factory.create_campaign()
    gate = threading.Event()
    insert = imports._insert_recipients

    def first_chunks_open_the_gate(*args: Any) -> int:
        inserted = insert(*args)
        gate.set()
        return inserted

    monkeypatch.setattr(imports, "_insert_recipients", first_chunks_open_the_gate)
    stream = GatedStream(csv(2000), gate, wait=20)
    with unit_of_work() as session:
        report = import_csv(session, campaign.id, stream, settings)
    # The reader could hand out the second half only after a chunk was inserted: the
    # import's connection stored rows while the reader was still in the file.
    assert not stream.waited_in_vain
    assert report.imported == 2000
    assert stored(campaign.id) == 2000
    assert staging_tables() == []


def test_a_file_over_the_row_limit_found_chunks_later_stores_nothing(
    factory, settings, monkeypatch
):
    monkeypatch.setattr(staging, "ROWS_PER_CHUNK", 10)
    campaign = factory.create_campaign()
    before = connections()
    limited = settings.model_copy(update={"import_max_rows": 55})
    with pytest.raises(PayloadTooLarge, match="more than 55 data rows"), unit_of_work() as s:
        import_csv(s, campaign.id, io.BytesIO(csv(80)), limited)
    assert stored(campaign.id) == 0
    assert staging_tables() == []
    db.session.close()
    assert connections() <= before  # the second connection was closed, not pooled


def test_a_successful_import_its_caller_rolls_back_leaves_no_staging_table(factory, settings):
    campaign = factory.create_campaign()
    session = db.session
    report = import_csv(session, campaign.id, io.BytesIO(csv(30)), settings)
    assert report.imported == 30
    session.rollback()  # the DROP in the import's transaction is undone with it
    assert stored(campaign.id) == 0
    assert staging_tables() == []


def test_tables_left_over_an_hour_ago_are_swept_by_the_next_import(factory, settings):
    campaign = factory.create_campaign()
    old = f"{staging.PREFIX}{int(time.time()) - 3700}_deadbeef0001"
    young = f"{staging.PREFIX}{int(time.time()) - 60}_deadbeef0002"
    with db.engine.begin() as conn:
        for name in (old, young):
            conn.execute(text(f"CREATE UNLOGGED TABLE {name} (row_no integer)"))
    try:
        with unit_of_work() as session:
            import_csv(session, campaign.id, io.BytesIO(csv(3)), settings)
        # The young one may belong to an import still running elsewhere: it stays.
        assert staging_tables() == [young]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {old}, {young}"))
