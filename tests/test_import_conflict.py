"""The import's insert of recipients: a plain INSERT under the campaign lock, and the
ON CONFLICT fallback for a row that a writer bypassing that lock added meanwhile."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.extensions import db
from app.models import Event, Recipient
from app.services import imports
from app.services.staging import Staging
from app.settings import Settings

DATA = b"email,n\nann@example.com,1\nbob@example.com,2\nann@example.com,3\ncid@example.com,4\n"


def stored(campaign_id: int) -> list[tuple[str, dict[str, Any], str]]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.fields, Recipient.status)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_without_conflict_the_plain_insert_adds_the_rows_in_file_order(factory, settings):
    campaign = factory.create_campaign()
    with unit_of_work() as session:
        report = imports.import_csv(session, campaign.id, io.BytesIO(DATA), settings)
    assert report.imported == 3
    assert report.rejected == {"invalid": 0, "duplicate": 1, "suppressed": 0}
    assert [e for e, _, _ in stored(campaign.id)] == [
        "ann@example.com",
        "bob@example.com",
        "cid@example.com",
    ]


def test_a_row_added_behind_the_lock_is_counted_as_duplicate_and_left_unchanged(
    factory, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    campaign = factory.create_campaign()
    insert = imports._insert_recipients
    attempts: list[str] = []

    def bypassing_writer(
        session: Session, campaign_id: int, staging: Staging, fields_sql: str, bounds: Any
    ) -> int:
        # Between the rejections and the insert: what a writer that ignores the campaign
        # lock could do. The plain INSERT then meets a unique violation.
        session.execute(
            text(
                "INSERT INTO recipients (campaign_id, email, domain, fields, status) "
                "VALUES (:c, 'bob@example.com', 'example.com', '{\"n\": \"other\"}', 'sent')"
            ),
            {"c": campaign_id},
        )
        attempts.append("called")
        return insert(session, campaign_id, staging, fields_sql, bounds)

    monkeypatch.setattr(imports, "_insert_recipients", bypassing_writer)
    with unit_of_work() as session:
        report = imports.import_csv(session, campaign.id, io.BytesIO(DATA), settings)
    assert attempts == ["called"]
    assert report.imported == 2
    assert report.rejected == {"invalid": 0, "duplicate": 2, "suppressed": 0}
    assert [(e.row, e.reason) for e in report.errors] == [(4, "duplicate of row 2")]
    # The savepoint undid the plain INSERT's partial work: each address once, the
    # bypassing writer's row as it wrote it.
    assert stored(campaign.id) == [
        ("bob@example.com", {"n": "other"}, "sent"),
        ("ann@example.com", {"n": "1"}, "pending"),
        ("cid@example.com", {"n": "4"}, "pending"),
    ]
    event = db.session.execute(
        select(Event.data).where(Event.campaign_id == campaign.id, Event.type == "imported")
    ).scalar_one()
    assert event["imported"] == 2
    assert event["rejected"]["duplicate"] == 2


def test_other_integrity_errors_are_not_taken_for_conflicts(
    factory, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    campaign = factory.create_campaign()
    insert = imports._insert_recipients

    def bad_fields(
        session: Session, campaign_id: int, staging: Staging, fields_sql: str, bounds: Any
    ) -> int:
        # NULL fields violate NOT NULL: not a conflict, so the import must fail whole.
        return insert(session, campaign_id, staging, "NULL::jsonb", bounds)

    monkeypatch.setattr(imports, "_insert_recipients", bad_fields)
    with pytest.raises(IntegrityError), unit_of_work() as session:
        imports.import_csv(session, campaign.id, io.BytesIO(DATA), settings)
    assert stored(campaign.id) == []
