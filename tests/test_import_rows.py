"""JSON recipient import (`recipients: [{email, ...fields}]`): same rules as CSV."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.extensions import db
from app.models import Campaign, Event, Recipient
from app.services.imports import ImportReport, import_rows
from app.settings import Settings


def run(
    settings: Settings, campaign_id: int, rows: Iterable[Mapping[str, Any]], **overrides: Any
) -> ImportReport:
    if overrides:
        settings = settings.model_copy(update=overrides)
    with unit_of_work() as session:
        return import_rows(session, campaign_id, rows, settings)


def stored(campaign_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.domain, Recipient.fields)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def campaign(factory) -> Campaign:
    return factory.create_campaign()


def test_recipients_are_imported_with_their_fields(campaign, settings):
    report = run(
        settings,
        campaign.id,
        [
            {"email": "Ann@Example.com", "first_name": " Ann ", "age": 41, "vip": True},
            {"Email": "bob@example.org", "First Name": "Bob", "note": "", "score": 1.5, "x": None},
        ],
    )
    assert report.as_dict() == {
        "imported": 2,
        "rejected": {"invalid": 0, "duplicate": 0, "suppressed": 0},
        "errors": [],
        "warnings": {"blank_fields": {}, "messages": []},
    }
    assert report.field_names == ["age", "first_name", "note", "score", "vip", "x"]
    # Every key of the list is a field of every recipient: missing, empty or null is "".
    blank = dict.fromkeys(report.field_names, "")
    assert stored(campaign.id) == [
        (
            "ann@example.com",
            "example.com",
            {**blank, "first_name": "Ann", "age": 41, "vip": True},
        ),
        ("bob@example.org", "example.org", {**blank, "first_name": "Bob", "score": 1.5}),
    ]
    db.session.rollback()
    assert db.session.get(Campaign, campaign.id).field_names == report.field_names


def test_text_reaches_the_database_verbatim(campaign, settings):
    text = 'back\\slash\ttab "quotes" line\nbreak \\N ünïcode 日本 \u2028 😀'
    run(settings, campaign.id, [{"email": "a@example.com", "t": text}])
    assert stored(campaign.id)[0][2] == {"t": text.strip()}


def test_rejections_are_reported_by_list_position(factory, campaign, settings):
    factory.suppress("blocked.org")
    factory.create_recipients(campaign, ["old@example.com"])
    report = run(
        settings,
        campaign.id,
        [
            {"email": "ok@example.com"},
            {"email": "not an address"},
            {"name": "no email"},
            {"email": None},
            {"email": 42},
            {"email": "OK@example.com"},
            {"email": "x@blocked.org"},
            {"email": "old@example.com"},
        ],
    )
    assert report.imported == 1
    assert report.rejected == {"invalid": 4, "duplicate": 2, "suppressed": 1}
    assert [(e.row, e.email, e.reason) for e in report.errors] == [
        (2, "not an address", "An email address must have an @-sign."),
        (3, None, "no email address"),
        (4, None, "no email address"),
        (5, None, "the email address must be a string"),
        (6, "ok@example.com", "duplicate of row 1"),
        (7, "x@blocked.org", "the domain blocked.org is suppressed"),
        (8, "old@example.com", "already in this campaign"),
    ]


def test_rows_may_come_from_a_generator(campaign, settings):
    def rows() -> Iterator[dict[str, Any]]:
        for i in range(2000):
            yield {"email": f"u{i}@example.com", "i": i}

    assert run(settings, campaign.id, rows()).imported == 2000
    assert stored(campaign.id)[-1] == ("u1999@example.com", "example.com", {"i": 1999})


@pytest.mark.parametrize(
    ("rows", "text"),
    [
        ([{"email": "a@example.com"}, ["b@example.com"]], "recipients row 3 must be an object"),
        (
            [{"email": "a@example.com", "First Name": "A", "first_name": "B"}],
            "keys 'First Name' and 'first_name' both become the field 'first_name'",
        ),
        ([{"email": "a@example.com", "E-mail": "b@example.com"}], "two email keys"),
        ([{"email": "a@example.com", "tags": ["x"]}], "'tags' must be a string"),
        ([{"email": "a@example.com", "n": float("nan")}], "'n' is not a finite number"),
        ([{"email": "a@example.com", "s": "nul\x00"}], "'s' contains a NUL"),
        ([{"email": "a@example.com", "s": "half \ud800"}], "invalid Unicode"),
        ([{"email": "a@example.com", " ": 1}], "empty key"),
    ],
)
def test_malformed_rows_are_refused_and_nothing_is_stored(factory, campaign, settings, rows, text):
    factory.create_recipients(campaign, ["before@example.com"])
    with pytest.raises(InvalidInput) as caught:
        run(settings, campaign.id, [{"email": "first@example.com"}, *rows])
    assert caught.value.field == "recipients"
    assert text in caught.value.message
    assert [r[0] for r in stored(campaign.id)] == ["before@example.com"]
    assert db.session.execute(select(Event)).first() is None


def test_an_empty_list_is_refused(campaign, settings):
    with pytest.raises(InvalidInput, match="no recipients given") as caught:
        run(settings, campaign.id, [])
    assert caught.value.field == "recipients"


def test_the_row_limit_undoes_the_whole_import(factory, campaign, settings):
    factory.create_recipients(campaign, ["before@example.com"])
    rows = [{"email": f"u{i}@example.com"} for i in range(101)]
    with pytest.raises(PayloadTooLarge) as caught:
        run(settings, campaign.id, rows, import_max_rows=100)
    assert caught.value.field == "recipients"
    assert [r[0] for r in stored(campaign.id)] == ["before@example.com"]


def test_an_unknown_campaign_is_not_found(app_context, settings):
    with pytest.raises(NotFound) as caught:
        run(settings, 999, [{"email": "a@example.com"}])
    assert caught.value.field == "campaign"


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_closed_campaigns_are_refused(factory, settings, status):
    campaign = factory.create_campaign(status=status)
    with pytest.raises(InvalidInput) as caught:
        run(settings, campaign.id, [{"email": "a@example.com"}])
    assert caught.value.field == "campaign"
    assert stored(campaign.id) == []


def test_a_campaign_created_in_the_same_transaction_can_be_filled(app_context, settings):
    with unit_of_work() as session:
        campaign = Campaign(name="new", subject="s", body_text="b")
        session.add(campaign)
        session.flush()
        report = import_rows(session, campaign.id, [{"email": "a@example.com", "n": 1}], settings)
        assert campaign.field_names == ["n"]
    assert report.imported == 1
    assert stored(campaign.id) == [("a@example.com", "example.com", {"n": 1})]
