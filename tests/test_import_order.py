"""Import order and exactness: the recipients an import adds get ids in file order (so the
dispatcher, which claims by id, sends them in file order), and every row lands in exactly
one of imported / invalid / duplicate / suppressed, by the documented precedence, whatever
mix of reasons a file holds. A plain Python model of the rules is the reference."""

from __future__ import annotations

import io
import random

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.extensions import db
from app.models import Recipient
from app.services import import_lines, staging
from app.services.imports import import_csv

INVALID = ["no-at-sign.example", "two@@at.example", "trailing.@dot.example", "x@exa_mple.com"]


def _reference(
    rows: list[str], existing: set[str], suppressed: set[str], error_limit: int
) -> tuple[list[str], dict[str, int], list[tuple[int, str | None, str]]]:
    """(imported addresses in file order, rejected counts, first errors) by the rules."""
    first: dict[str, int] = {}
    imported: list[str] = []
    counts = {"invalid": 0, "duplicate": 0, "suppressed": 0}
    errors: list[tuple[int, str | None, str]] = []
    for row_no, raw in enumerate(rows, 2):  # row 1 is the header
        email = raw.strip().lower()
        if raw in INVALID:
            counts["invalid"] += 1
            reason = None
        elif email in first:
            counts["duplicate"] += 1
            reason = f"duplicate of row {first[email]}"
        else:
            first[email] = row_no
            domain = email.rsplit("@", 1)[1]
            if email in existing:
                counts["duplicate"] += 1
                reason = "already in this campaign"
            elif email in suppressed:
                counts["suppressed"] += 1
                reason = "the address is suppressed"
            elif domain in suppressed:
                counts["suppressed"] += 1
                reason = f"the domain {domain} is suppressed"
            else:
                imported.append(email)
                continue
        if reason is not None:
            errors.append((row_no, email, reason))
        else:
            errors.append((row_no, raw, ""))  # invalid: the library's wording, checked apart
    return imported, counts, errors[:error_limit]


@pytest.mark.parametrize("hashing", ["real", "colliding"])
@pytest.mark.parametrize("chunk_rows", [25_000, 97])
@pytest.mark.parametrize("campaign_had_recipients", [True, False])
def test_ids_follow_file_order_and_counts_follow_precedence(
    factory, settings, monkeypatch, hashing, chunk_rows, campaign_had_recipients
):
    if hashing == "colliding":
        # Five hash values for all addresses: nearly every row is staged as a repeat, and
        # only the database's exact comparison tells real ones from collisions.
        monkeypatch.setattr(import_lines, "address_key", lambda email: len(email) % 5)
    # 97 rows a chunk: the 2,000-row file is stored in about 20 chunks, and a row's first
    # occurrence, an address already present or a suppression meet it across them.
    monkeypatch.setattr(staging, "ROWS_PER_CHUNK", chunk_rows)
    rng = random.Random(15)
    other_client = factory.create_client(name="other")
    campaign = factory.create_campaign()
    existing = [f"old{i}@firm{i % 7}.example" for i in range(40)]
    if campaign_had_recipients:
        factory.create_recipients(campaign, existing)
    factory.suppress("gone3@firm3.example")
    factory.suppress("old5@firm5.example")  # already in the campaign: that comes first
    factory.suppress("blocked.example")
    factory.suppress("unsub9@firm2.example", client_id=campaign.client_id)
    factory.suppress("elsewhere@firm1.example", client_id=other_client.id)  # not this client

    pool = [f"u{i}@firm{i % 7}.example" for i in range(400)]
    pool += ["gone3@firm3.example", "a@blocked.example", "b@blocked.example"]
    pool += ["unsub9@firm2.example", "elsewhere@firm1.example"]
    rows: list[str] = []
    for _ in range(2000):
        roll = rng.random()
        if roll < 0.05:
            rows.append(rng.choice(INVALID))
        elif roll < 0.15:
            # Already in the campaign, or (when it had none) in-file repeats of their own.
            rows.append(rng.choice(existing).upper())
        else:
            # Random order, repeats in other letter case: many in-file duplicates, some of
            # an earlier suppressed or already-present address.
            address = rng.choice(pool)
            rows.append(address.upper() if rng.random() < 0.3 else address)
    data = ("Email,Name\n" + "".join(f"{r},n{i}\n" for i, r in enumerate(rows))).encode()

    with unit_of_work() as session:
        report = import_csv(session, campaign.id, io.BytesIO(data), settings)

    suppressed = {"gone3@firm3.example", "old5@firm5.example", "blocked.example"}
    suppressed.add("unsub9@firm2.example")
    want_imported, want_counts, want_errors = _reference(
        rows,
        set(existing) if campaign_had_recipients else set(),
        suppressed,
        settings.import_error_limit,
    )
    assert report.rejected == want_counts
    assert report.imported == len(want_imported)
    assert sum(want_counts.values()) + report.imported == len(rows)
    got_errors = [(e.row, e.email, e.reason) for e in report.errors]
    assert [e[0] for e in got_errors] == [e[0] for e in want_errors]
    for got, want in zip(got_errors, want_errors, strict=True):
        if want[2]:
            assert got == want
        else:
            assert got[1] == want[1]  # an invalid row: its raw text, the library's reason

    db.session.rollback()
    new_rows = db.session.execute(
        select(Recipient.id, Recipient.email, Recipient.fields)
        .where(
            Recipient.campaign_id == campaign.id,
            Recipient.email.notin_(existing if campaign_had_recipients else []),
        )
        .order_by(Recipient.id)
    ).all()
    assert [r.email for r in new_rows] == want_imported
    # Each imported row keeps its own row's cells: the first occurrence's.
    row_of = {}
    for i, raw in enumerate(rows):
        row_of.setdefault(raw.strip().lower(), i)
    assert [r.fields["name"] for r in new_rows] == [f"n{row_of[e]}" for e in want_imported]


def test_a_second_import_continues_the_order_after_the_first(factory, settings):
    campaign = factory.create_campaign()
    first = [f"z{i}@a.example" for i in range(50, 0, -1)]  # descending: not email order
    second = [f"m{i}@b.example" for i in range(30)] + first[:5]
    for batch in (first, second):
        data = ("email\n" + "\n".join(batch) + "\n").encode()
        with unit_of_work() as session:
            import_csv(session, campaign.id, io.BytesIO(data), settings)
    db.session.rollback()
    ordered = db.session.execute(
        select(Recipient.email).where(Recipient.campaign_id == campaign.id).order_by(Recipient.id)
    ).scalars()
    assert list(ordered) == first + second[:30]
