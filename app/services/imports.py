"""Recipient imports (CSV upload or JSON list) into a campaign: one transaction, all valid
rows or none. The caller owns the transaction (app.db.unit_of_work); nothing here commits.

How an import runs, and why this way (a 1,000,000-row file peaks at ~195 MB RSS, the
app's own 130 MB and 64-bit hashes of the addresses; see bench/import.py):

1. The campaign row is locked (FOR NO KEY UPDATE: recipients' foreign-key checks
   still pass) so two imports into one campaign, or an import and a cancel, take
   turns and the report's figures stay exact.
2. Python streams the input once (import_lines): decoding and CSV parsing (csv_reader), address
   validation (addresses; per-domain cache). Invalid rows are counted here and the
   first `import_error_limit` of them kept; nothing else about a row outlives it but its
   address's hash: a row whose address hashes like an earlier row's is flagged `repeat`
   (import_lines.Repeats).
3. Valid rows stream through COPY into a temporary staging table with their row
   number; CSV cells go in as text columns and PostgreSQL builds the JSONB fields,
   which is cheaper than json.dumps per row, in a generated column: the backend builds
   them while it waits for Python's next batch of lines, not in step 5.
4. PostgreSQL finds the rest, so Python never holds the addresses themselves:
   one statement yields the small table of rejected rows, one branch per reason
   (later occurrences of an address in the file: the repeats joined to the first row of
   their address, aggregated over the rows with a repeated address only, where one hash
   aggregate over every staged address cost about 1 s per million; addresses already in
   the campaign; suppressed addresses and domains), each row keeping its first reason by
   precedence. Counts and the first errors come from that table.
5. One plain `INSERT ... SELECT` (in a savepoint) adds the rest as `pending`, in file
   order. Under the campaign lock nothing can conflict; if something did, the
   savepoint is rolled back and `ON CONFLICT DO NOTHING` inserts the rest, the clash
   counted as a duplicate (_insert_recipients). This statement is most of an import's
   time and its floor (bench/import_floor.py: per million rows about 6 s of backend CPU
   on the 2-core dev machine, over 10 times a bare COPY of the file): each row costs a
   heap insert and WAL (~500 MB per million rows) and three index insertions (the
   primary key, ix_recipients_due, uq_recipients_campaign_email 2-4 s; pending rows stay
   out of ix_recipients_campaign_status, migration 0015); the statement's triggers read
   its transition table once each (recipient_counts; the campaign and account
   references, checked per statement since migration 0016, not per row as a foreign key
   would at 3-5 s). Inserting sorted by email (ids still in file order) costs more than
   it saves: the primary key and ix_recipients_due then take their keys in random order.
6. The campaign's field_names become the sorted union with this import's, and one
   `imported` event records the counts (never an address).

Precedence when a row has several problems: invalid, then duplicate (in the file,
then already in the campaign), then suppressed. Every non-blank data row ends up in
exactly one of imported / invalid / duplicate / suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
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
from app.services.staging import Staging
from app.settings import Settings

log = logging.getLogger(__name__)

CLOSED_STATUSES: Final = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})
# Sorting a million staged addresses in memory rather than on disk; LOCAL, so only
# for this transaction.
WORK_MEM: Final = "128MB"
UNIQUE_VIOLATION: Final = "23505"
# The staged rows a suppression rejects: (kind, staged column, rank, reason).
_SUPPRESSED: Final = "\n                UNION ALL\n                ".join(
    f"SELECT s.row_no, s.email, {rank}, {reason} FROM {{stg}} s JOIN suppressions x "
    f"ON x.kind = '{kind}' AND x.value = s.{column} "
    "AND (x.client_id IS NULL OR x.client_id = :client_id)"
    for kind, column, rank, reason in (
        ("email", "email", 3, "'the address is suppressed'"),
        ("email", "ascii_email", 3, "'the address is suppressed'"),
        ("domain", "domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
        ("domain", "ascii_domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
    )
)


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
    staging = Staging(session, text_columns=len(header.names), fields_stored=fields.stored)
    staging.copy(csv_copy_lines(source, header, validator, tally, settings.import_max_rows))
    if tally.rows == 0:
        raise InvalidInput("the file has a header row but no data rows", field="file")
    report = _finish(session, campaign_id, staging, tally, fields, template_fields)
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
    staging = Staging(session, text_columns=0)
    staging.copy(json_copy_lines(rows, validator, tally, settings.import_max_rows, names))
    if tally.rows == 0:
        raise InvalidInput("no recipients given", field="recipients")
    return _finish(session, campaign_id, staging, tally, json_fields(names), template_fields)


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


def _finish(
    session: Session,
    campaign_id: int,
    staging: Staging,
    tally: Tally,
    fields: FieldsSql,
    template_fields: Collection[str],
) -> ImportReport:
    """Steps 4-6 of the module docstring, on the staged valid rows."""
    fields_sql, field_names = fields.sql, fields.names
    stg, rej = staging.table, staging.rejected
    execute = session.execute
    # A small sample is enough for the plans below (repeats are few, addresses many).
    execute(text("SET LOCAL default_statistics_target = 10"))
    execute(text(f"ANALYZE {stg}"))
    execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    suppressed = _SUPPRESSED.format(stg=stg)
    execute(
        text(
            f"""
            CREATE TEMP TABLE {rej} ON COMMIT DROP AS
            -- Each branch finds the rows one reason rejects; a row several reasons reject
            -- keeps the first by precedence (rank). Inner joins: a branch whose other side
            -- is empty (a new campaign, no suppressions) stops before reading the staging
            -- table. Later occurrences of an address: the first row of each address that
            -- a row flagged as a repeat (import_lines.Repeats) has, from an aggregate over
            -- the rows with those addresses only; then every later row with one of them.
            WITH firsts AS (
                SELECT email, min(row_no) AS first_row FROM {stg}
                WHERE email IN (SELECT email FROM {stg} WHERE repeat) GROUP BY email
            ), found AS (
                SELECT r.row_no, r.email, 1 AS rank, 'duplicate of row ' || f.first_row AS reason
                FROM {stg} r JOIN firsts f ON f.email = r.email AND r.row_no > f.first_row
                WHERE r.repeat
                UNION ALL
                SELECT s.row_no, s.email, 2, 'already in this campaign'
                FROM {stg} s JOIN recipients ex ON ex.campaign_id = :campaign_id
                    AND ex.email = s.email
                UNION ALL
                -- Global rows and the campaign's client's own unsubscribes, each form of the
                -- address its own equi-join (an OR would rule out the hash join).
                {suppressed}
            )
            SELECT DISTINCT ON (row_no) row_no, email,
                   CASE WHEN rank <= 2 THEN 'duplicate' ELSE 'suppressed' END AS kind, reason
            FROM found ORDER BY row_no, rank
            """
        ),
        {
            "campaign_id": campaign_id,
            "client_id": clients_of_campaigns(session, [campaign_id])[campaign_id],
        },
    )
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
    staged = staging.rows
    inserted = _insert_recipients(session, campaign_id, staging, fields_sql)
    blank = blank_counts(session, staging, fields, template_fields, inserted)
    samples = sample_rows(session, staging, fields) if template_fields else []
    staging.drop()

    duplicate = counts.get("duplicate", 0)
    suppressed = counts.get("suppressed", 0)
    # Only a concurrent writer that bypassed the campaign lock could make this non-zero.
    duplicate += staged - duplicate - suppressed - inserted
    rejected = {"invalid": tally.invalid, "duplicate": duplicate, "suppressed": suppressed}

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
    session: Session, campaign_id: int, staging: Staging, fields_sql: str
) -> int:
    """Step 5: the staged rows not rejected, as pending recipients in file order.

    A plain INSERT first: ON CONFLICT's speculative insertion is a fifth of the
    statement's cost (2.5 of 12 s CPU per million rows). Under the campaign lock nothing
    conflicts; if something did (a writer that bypassed the lock), the savepoint is
    rolled back and the rows go in with ON CONFLICT DO NOTHING, the clash counted as a
    duplicate by the caller."""
    insert_sql = (
        "INSERT INTO recipients (campaign_id, email, domain, fields, status) "
        f"SELECT :campaign_id, s.email, s.domain, {fields_sql}, 'pending' "
        f"FROM {staging.table} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {staging.rejected} x WHERE x.row_no = s.row_no)"
    )
    params = {"campaign_id": campaign_id}
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
