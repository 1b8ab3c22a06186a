"""Recipient imports (CSV upload or JSON list) into a campaign: one transaction, all valid
rows or none. The caller owns the transaction (app.db.unit_of_work); nothing here commits.

How an import runs, and why this way (a 1,000,000-row file peaks at ~236 MB RSS, the
app's own 130 MB and 64-bit hashes of the addresses with their first rows; see
bench/import.py):

1. The campaign row is locked (FOR NO KEY UPDATE: recipients' foreign-key checks
   still pass) so two imports into one campaign, or an import and a cancel, take
   turns and the report's figures stay exact.
2. Python streams the input once (import_lines), on a reader thread: decoding and CSV
   parsing (csv_reader), address validation (addresses; per-domain cache). Invalid rows
   are counted here and the first `import_error_limit` of them kept; nothing else about
   a row outlives it but its address's hash and row number: a row whose address hashes
   like an earlier row's is staged with that row's number (import_lines.Repeats).
3. The reader streams the valid rows through COPY, in chunks of 25,000 rows, into an
   UNLOGGED staging table on a second connection of its own (app.services.staging), with
   their row numbers; CSV cells go in as text columns and that backend builds the JSONB
   fields in a generated column. Steps 4 and 5 run on the import's own connection, chunk
   by chunk, as each chunk is committed, so parsing and staging (about 3 s of Python
   and 2 s of one backend per million rows) overlap the storing (about 6 s of another
   backend), where on one connection the two took turns.
4. PostgreSQL finds the chunk's rejected rows, so Python never holds the addresses
   themselves: one statement per chunk (import_rejects), one branch per reason (later
   occurrences of an address in the file, each settled by a primary-key lookup of the
   row its hash named; addresses already in the campaign, a branch left out when the
   campaign had no recipients; suppressed addresses and domains), each row keeping its
   first reason by precedence, into the import's table of rejected rows. Counts and the
   first errors come from that table.
5. One plain `INSERT ... SELECT` per chunk (in a savepoint) adds the rest as `pending`, in
   file order. Under the campaign lock nothing can conflict; if something did, the
   savepoint is rolled back and `ON CONFLICT DO NOTHING` inserts the chunk, the clash
   counted as a duplicate (_insert_recipients). These statements are most of an import's
   time and its floor (bench/import_floor.py: per million rows about 6 s of backend CPU
   on the 2-core dev machine, over 10 times a bare COPY of the file): each row costs a
   heap insert and WAL (~500 MB per million rows) and three index insertions (the
   primary key, ix_recipients_due, uq_recipients_campaign_email 2-4 s; pending rows stay
   out of ix_recipients_campaign_status, migration 0015); each statement's triggers read
   its transition table once each (recipient_counts; the campaign and account
   references, checked per statement since migration 0016, not per row as a foreign key
   would at 3-5 s). Inserting sorted by email (ids still in file order) costs more than
   it saves: the primary key and ix_recipients_due then take their keys in random order.
6. The campaign's field_names become the sorted union with this import's, and one
   `imported` event records the counts (never an address). The staging table is dropped
   in the import's transaction; a failed import drops it at once (Staging).

Precedence when a row has several problems: invalid, then duplicate (in the file,
then already in the campaign), then suppressed. Every non-blank data row ends up in
exactly one of imported / invalid / duplicate / suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import Campaign, CampaignStatus, Event, EventType
from app.services.addresses import AddressValidator
from app.services.clients import clients_of_campaigns
from app.services.csv_reader import CsvSource
from app.services.import_fields import (
    FieldsSql,
    blank_counts,
    csv_fields,
    json_fields,
    sample_rows,
)
from app.services.import_lines import RowError, Tally, csv_copy_lines, json_copy_lines
from app.services.import_rejects import reject_chunk
from app.services.staging import Staging
from app.settings import Settings

log = logging.getLogger(__name__)

CLOSED_STATUSES: Final = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})
# Sorting a million staged addresses in memory rather than on disk; LOCAL, so only
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
    lines = csv_copy_lines(source, header, validator, tally, settings.import_max_rows)
    with Staging(session, text_columns=len(header.names), fields_stored=fields.stored) as staging:
        staging.start(lines)
        stored = _store(session, campaign_id, staging, tally, lambda: fields, template_fields)
        if tally.rows == 0:
            raise InvalidInput("the file has a header row but no data rows", field="file")
    report = _record(session, campaign_id, tally, stored)
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
    names: set[str] = set()
    lines = json_copy_lines(rows, validator, tally, settings.import_max_rows, names)
    # One chunk: every row's fields hold every name of the list, known once all are read.
    with Staging(session, text_columns=0, chunked=False) as staging:
        staging.start(lines)
        stored = _store(
            session, campaign_id, staging, tally, lambda: json_fields(names), template_fields
        )
        if tally.rows == 0:
            raise InvalidInput("no recipients given", field="recipients")
    return _record(session, campaign_id, tally, stored)


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


@dataclass
class _Stored:
    inserted: int
    staged: int
    counts: dict[str, int]  # rejected rows by kind: "duplicate", "suppressed"
    errors: list[RowError]  # the first rejected rows, by row
    fields: FieldsSql
    blank: dict[str, int]
    samples: list[tuple[int, Any]]


def _store(
    session: Session,
    campaign_id: int,
    staging: Staging,
    tally: Tally,
    fields_of: Callable[[], FieldsSql],
    template_fields: Collection[str],
) -> _Stored:
    """Steps 4 and 5 of the module docstring, chunk by chunk as the reader stages them;
    `fields_of` is asked once a chunk is staged (a JSON list's names are known only then)."""
    execute = session.execute
    execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    # Each chunk's statements are planned anew, and their estimates pass jit_above_cost:
    # compiling them took longer (about 40 ms a statement) than running them.
    execute(text("SET LOCAL jit = off"))
    client_id = clients_of_campaigns(session, [campaign_id])[campaign_id]
    had_recipients = bool(
        execute(
            text("SELECT EXISTS (SELECT 1 FROM recipients WHERE campaign_id = :c)"),
            {"c": campaign_id},
        ).scalar()
    )
    inserted = 0
    for bounds in staging.chunks():
        reject_chunk(
            session,
            staging,
            campaign_id,
            client_id,
            bounds,
            campaign_had_recipients=had_recipients,
        )
        inserted += _insert_recipients(session, campaign_id, staging, fields_of().sql, bounds)
    fields = fields_of()
    rej = staging.rejected
    counts: dict[str, int] = {
        kind: n for kind, n in execute(text(f"SELECT kind, count(*) FROM {rej} GROUP BY kind"))
    }
    errors = [
        RowError(row, email, reason)
        for row, email, reason in execute(
            text(f"SELECT row_no, email, reason FROM {rej} ORDER BY row_no LIMIT :n"),
            {"n": tally.error_limit},
        )
    ]
    blank = blank_counts(session, staging, fields, template_fields, inserted)
    samples = sample_rows(session, staging, fields) if template_fields else []
    return _Stored(inserted, staging.rows, counts, errors, fields, blank, samples)


def _record(session: Session, campaign_id: int, tally: Tally, stored: _Stored) -> ImportReport:
    """Step 6: the campaign's field names, the `imported` event, the report."""
    execute = session.execute
    inserted = stored.inserted
    duplicate = stored.counts.get("duplicate", 0)
    suppressed = stored.counts.get("suppressed", 0)
    # Only a concurrent writer that bypassed the campaign lock could make this non-zero.
    duplicate += stored.staged - duplicate - suppressed - inserted
    rejected = {"invalid": tally.invalid, "duplicate": duplicate, "suppressed": suppressed}
    field_names = stored.fields.names

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
    errors = sorted(tally.errors + stored.errors, key=lambda e: e.row)[: tally.error_limit]
    return ImportReport(
        inserted, rejected, errors, sorted(field_names), stored.blank, stored.samples
    )


def _insert_recipients(
    session: Session,
    campaign_id: int,
    staging: Staging,
    fields_sql: str,
    bounds: tuple[int, int],
) -> int:
    """Step 5: the chunk's staged rows not rejected, as pending recipients in file order.

    A plain INSERT first: ON CONFLICT's speculative insertion is a fifth of the
    statement's cost (2.5 of 12 s CPU per million rows). Under the campaign lock nothing
    conflicts; if something did (a writer that bypassed the lock), the savepoint is
    rolled back and the chunk goes in with ON CONFLICT DO NOTHING, the clash counted as
    a duplicate by the caller."""
    insert_sql = (
        "INSERT INTO recipients (campaign_id, email, domain, fields, status) "
        f"SELECT :campaign_id, s.email, s.domain, {fields_sql}, 'pending' "
        f"FROM {staging.table} s WHERE s.row_no > :lo AND s.row_no <= :hi "
        f"AND NOT EXISTS (SELECT 1 FROM {staging.rejected} x WHERE x.row_no = s.row_no) "
        "ORDER BY s.row_no"
    )
    params = {"campaign_id": campaign_id, "lo": bounds[0], "hi": bounds[1]}
    try:
        with session.begin_nested():
            result = session.execute(text(insert_sql), params)
            return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult
    except IntegrityError as exc:
        if getattr(exc.orig, "pgcode", None) != UNIQUE_VIOLATION:
            raise
    log.warning("import.conflict", extra={"campaign_id": campaign_id})
    result = session.execute(
        text(insert_sql + " ON CONFLICT (campaign_id, email) DO NOTHING"), params
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _expire_campaign(session: Session, campaign_id: int) -> None:
    """A Campaign already loaded in this session must not show the old field_names."""
    key = session.identity_key(Campaign, campaign_id)
    campaign = session.identity_map.get(key)
    if campaign is not None:
        session.expire(campaign, ["field_names", "updated_at"])
