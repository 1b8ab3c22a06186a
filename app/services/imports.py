"""Recipient imports (CSV upload or JSON list) into a campaign: one transaction, all valid
rows or none. The caller owns the transaction (app.db.unit_of_work); nothing here commits.

How an import runs, and why this way (a 1,000,000-row file peaks at about 225 MB RSS,
the app's own 130 MB included; see bench/import.py):

1. The campaign row is locked (FOR NO KEY UPDATE: recipients' parent checks still pass)
   so two imports into one campaign, or an import and a cancel, take turns and the
   report's figures stay exact.
2. A reader thread streams the input once (import_feed, import_lines): decoding and CSV
   parsing (csv_reader), address validation (addresses; per-domain cache), each row's
   fields as JSON text. Invalid rows are counted there and the first `import_error_limit`
   of them kept. A row whose address hashes like an earlier row's is flagged `repeat`
   (import_lines.Repeats: 64-bit hashes, not addresses, about 76 MB per million).
3. Chunks of valid rows (25,000) go through COPY into a temporary staging table, while
   the reader parses the next: Python's 3-5 s per million rows run beside the backend's
   work instead of before it.
4. Per chunk, one statement (import_sql) records the rejected rows in a temporary table,
   each with its first reason by precedence (already in the campaign, checked only when
   the campaign had recipients before; suppressed addresses and domains), and adds the
   rest as `pending`, in file order. A row not flagged is no later occurrence of any
   address of the file, so nothing but those two reasons can reject it. Under the
   campaign lock nothing can conflict; if something did, the savepoint is rolled back and
   `ON CONFLICT DO NOTHING` inserts the chunk, the clash counted as a duplicate
   (_insert_recipients).
5. After the last chunk the repeats are settled exactly, in one statement of the same
   form: a later occurrence of an address is a duplicate of its first row; a row that
   only hashed alike (about never) is checked and inserted like any other, after the
   chunks' rows. The inserts are most of an import's time and its floor
   (bench/import_floor.py: per million rows about 6 s of backend CPU on the 2-core dev
   machine, over 10 times a bare COPY of the file): each row costs a heap insert and WAL
   (~500 MB per million rows) and three index insertions (the primary key,
   ix_recipients_due, uq_recipients_campaign_email 2-4 s; pending rows stay out of
   ix_recipients_campaign_status, migration 0015); the statements' triggers read their
   transition tables once each (recipient_counts; the campaign and account references,
   checked per statement since migration 0016, not per row as a foreign key would at
   3-5 s). Inserting sorted by email (ids still in file order) costs more than it saves:
   the primary key and ix_recipients_due then take their keys in random order.
6. Counts and the first errors come from the rejected table; the campaign's field_names
   become the sorted union with this import's, and one `imported` event records the
   counts (never an address).

Precedence when a row has several problems: invalid, then duplicate (in the file,
then already in the campaign), then suppressed. Every non-blank data row ends up in
exactly one of imported / invalid / duplicate / suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO, Final

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import Campaign, CampaignStatus, Event, EventType
from app.services.addresses import AddressValidator
from app.services.clients import clients_of_campaigns
from app.services.csv_reader import CsvSource
from app.services.import_feed import ChunkFeed
from app.services.import_fields import (
    FieldsSql,
    blank_counts,
    csv_fields,
    json_fields,
    sample_rows,
)
from app.services.import_lines import (
    Repeats,
    RowError,
    Tally,
    csv_copy_lines,
    json_copy_lines,
    json_names,
)
from app.services.import_sql import chunk_statement, repeats_statement
from app.services.staging import Staging
from app.settings import Settings

log = logging.getLogger(__name__)

CLOSED_STATUSES: Final = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})
# Settling the repeats' hash join and sort in memory rather than on disk; LOCAL, so only
# for this transaction.
WORK_MEM: Final = "128MB"
UNIQUE_VIOLATION: Final = "23505"


@dataclass
class ImportReport:
    imported: int
    rejected: dict[str, int]  # exactly "invalid", "duplicate", "suppressed"
    errors: list[RowError]  # the first settings.import_error_limit, by row
    field_names: list[str]  # every field name this import saw, sorted
    # Fields the templates use -> how many imported recipients have no value for them.
    blank_fields: dict[str, int] = field(default_factory=dict)
    # (row, fields) of the first imported rows, when the templates use fields.
    samples: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "rejected": dict(self.rejected),
            "errors": [{"row": e.row, "email": e.email, "reason": e.reason} for e in self.errors],
            "warnings": {"blank_fields": dict(self.blank_fields), "messages": self.warnings()},
        }

    def warnings(self) -> list[str]:
        return [
            f"{n:,} of {self.imported:,} imported recipients have no value for {name!r}, "
            f"which the templates use: it renders as an empty string for them (write "
            f'{{{{ {name} | default("...") }}}} for a fallback)'
            for name, n in self.blank_fields.items()
        ]


def import_csv(
    session: Session,
    campaign_id: int,
    stream: BinaryIO,
    settings: Settings,
    *,
    limit_bytes: bool = True,
    email_column: str | None = None,
    template_fields: Collection[str] = (),
) -> ImportReport:
    """Adds the CSV's valid rows to the campaign as pending recipients.

    `limit_bytes=False` for a local file (the CLI): only import_max_rows applies. The
    email column is `email_column` (a header name, case-insensitive) or the one
    csv_reader recognises. `template_fields` are counted for blank values.

    :raises NotFound: no such campaign (field "campaign").
    :raises InvalidInput: the campaign is completed or cancelled (field "campaign"); the
        file is empty, header-only, binary, has no or two equally likely email columns,
        or two columns that become one field name (field "file"); no column is
        `email_column` (field "email_column").
    :raises PayloadTooLarge: over import_max_bytes or import_max_rows (field "file").
    """
    _lock_campaign(session, campaign_id)
    max_bytes = settings.import_max_bytes if limit_bytes else None
    source = CsvSource(stream, max_bytes=max_bytes, email_column=email_column)
    header = source.read_header()
    tally = Tally(settings.import_error_limit)
    validator = AddressValidator(check_mx=settings.import_check_mx)
    fields = csv_fields(header)
    staging = Staging(session)
    repeats = Repeats()
    lines = csv_copy_lines(source, header, validator, tally, settings.import_max_rows, repeats)
    empty = InvalidInput("the file has a header row but no data rows", field="file")
    report = _import(
        session, campaign_id, lines, staging, tally, repeats, fields, template_fields, empty
    )
    log.info(
        "import.csv",
        extra={
            "campaign_id": campaign_id,
            "rows": tally.rows,
            "bytes": source.bytes_read,
            "delimiter": source.delimiter,
            "fast_path": validator.fast,
            "slow_path": validator.slow,
        },
    )
    return report


def import_rows(
    session: Session,
    campaign_id: int,
    rows: Iterable[Mapping[str, Any]],
    settings: Settings,
    *,
    template_fields: Collection[str] = (),
) -> ImportReport:
    """Adds JSON recipients `[{email, ...fields}]`; row numbers are 1-based list positions.

    Keys are normalised like CSV headers ("First Name" -> first_name). Field values
    must be strings, numbers, booleans or null; null is stored as "", and a key that
    other recipients of the list have is "" for those without it.

    :raises NotFound, InvalidInput: as import_csv, but the field for bad rows is
        "recipients" (not an object, two keys that become one name, a nested value).
    :raises PayloadTooLarge: more than import_max_rows rows (field "recipients").
    """
    _lock_campaign(session, campaign_id)
    tally = Tally(settings.import_error_limit)
    validator = AddressValidator(check_mx=settings.import_check_mx)
    rows = rows if isinstance(rows, Sequence) else list(rows)
    # Every chunk's rows get every name of the list, so the names come first.
    fields = json_fields(json_names(rows))
    staging = Staging(session)
    repeats = Repeats()
    lines = json_copy_lines(rows, validator, tally, settings.import_max_rows, repeats)
    empty = InvalidInput("no recipients given", field="recipients")
    return _import(
        session, campaign_id, lines, staging, tally, repeats, fields, template_fields, empty
    )


def _lock_campaign(session: Session, campaign_id: int) -> None:
    session.flush()
    status = session.execute(
        select(Campaign.status).where(Campaign.id == campaign_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"campaign {campaign_id} does not exist", field="campaign")
    if status in CLOSED_STATUSES:
        raise InvalidInput(
            f"campaign {campaign_id} is {status}; recipients can no longer be added",
            field="campaign",
        )


def _import(
    session: Session,
    campaign_id: int,
    lines: Iterator[str],
    staging: Staging,
    tally: Tally,
    repeats: Repeats,
    fields: FieldsSql,
    template_fields: Collection[str],
    empty: InvalidInput,
) -> ImportReport:
    """Steps 2-6 of the module docstring; `empty` is raised when the input has no rows."""
    execute = session.execute
    execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    params: dict[str, Any] = {
        "campaign_id": campaign_id,
        "client_id": clients_of_campaigns(session, [campaign_id])[campaign_id],
    }
    in_campaign = execute(
        text("SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign_id = :campaign_id)"),
        params,
    ).scalar_one()
    statement = partial(
        chunk_statement, staging.table, staging.rejected, fields.sql, in_campaign=in_campaign
    )
    inserted = 0
    with ChunkFeed(lines) as feed:
        for chunk in feed:
            from_tid = staging.copy(chunk.lines)
            chunk_params = {**params, "from_tid": from_tid, "first_row": chunk.first_row}
            inserted += _insert_recipients(session, campaign_id, statement, chunk_params)
    if tally.rows == 0:
        raise empty
    if repeats.flagged:
        inserted += _insert_recipients(
            session,
            campaign_id,
            partial(repeats_statement, staging.table, staging.rejected, fields.sql),
            params,
        )
    return _report(session, campaign_id, staging, tally, fields, template_fields, inserted)


def _report(
    session: Session,
    campaign_id: int,
    staging: Staging,
    tally: Tally,
    fields: FieldsSql,
    template_fields: Collection[str],
    inserted: int,
) -> ImportReport:
    """Step 6, and the report from the rejected table and the tally."""
    execute = session.execute
    rej = staging.rejected
    counts: dict[str, int] = {
        kind: n for kind, n in execute(text(f"SELECT kind, count(*) FROM {rej} GROUP BY kind"))
    }
    rejected_errors = [
        RowError(row, email, reason)
        for row, email, reason in execute(
            text(f"SELECT row_no, email, reason FROM {rej} ORDER BY row_no LIMIT :n"),
            {"n": tally.error_limit},
        )
    ]
    blank = blank_counts(session, staging, fields, template_fields, inserted)
    samples = sample_rows(session, staging, fields) if template_fields else []
    staged = staging.rows
    staging.drop()

    duplicate = counts.get("duplicate", 0)
    suppressed = counts.get("suppressed", 0)
    # Only a concurrent writer that bypassed the campaign lock could make this non-zero.
    duplicate += staged - duplicate - suppressed - inserted
    rejected = {"invalid": tally.invalid, "duplicate": duplicate, "suppressed": suppressed}

    field_names = fields.names
    execute(
        text(
            "UPDATE campaigns SET updated_at = now(), field_names = ARRAY("
            'SELECT DISTINCT name COLLATE "C" FROM unnest(field_names || CAST(:names AS text[])) '
            "AS name ORDER BY 1) WHERE id = :campaign_id"
        ),
        {"names": field_names, "campaign_id": campaign_id},
    )
    _expire_campaign(session, campaign_id)
    execute(
        insert(Event).values(
            type=EventType.IMPORTED.value,
            campaign_id=campaign_id,
            data={"imported": inserted, "rejected": rejected, "rows": tally.rows},
        )
    )
    errors = sorted(tally.errors + rejected_errors, key=lambda e: e.row)[: tally.error_limit]
    return ImportReport(inserted, rejected, errors, sorted(field_names), blank, samples)


def _insert_recipients(
    session: Session,
    campaign_id: int,
    statement: Callable[..., str],
    params: Mapping[str, Any],
) -> int:
    """Step 5 for one batch: its rejected rows recorded, the others added as pending.

    A plain INSERT first: ON CONFLICT's speculative insertion is a fifth of the
    statement's cost (2.5 of 12 s CPU per million rows). Under the campaign lock nothing
    conflicts; if something did (a writer that bypassed the lock), the savepoint is
    rolled back and the batch goes in with ON CONFLICT DO NOTHING, the clash counted as
    a duplicate by the caller."""
    try:
        with session.begin_nested():
            result = session.execute(text(statement(on_conflict=False)), params)
            return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult
    except IntegrityError as exc:
        if getattr(exc.orig, "pgcode", None) != UNIQUE_VIOLATION:
            raise
    log.warning("import.conflict", extra={"campaign_id": campaign_id})
    result = session.execute(text(statement(on_conflict=True)), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def _expire_campaign(session: Session, campaign_id: int) -> None:
    """A Campaign already loaded in this session must not show the old field_names."""
    key = session.identity_key(Campaign, campaign_id)
    campaign = session.identity_map.get(key)
    if campaign is not None:
        session.expire(campaign, ["field_names", "updated_at"])
