"""Which staged rows of one chunk an import rejects, and why (step 4 of app.services.imports).

One statement per chunk adds the chunk's rejected rows to the import's table of them
(`Staging.rejected`), each keeping its first reason by precedence: a later occurrence of
an address in the file, then an address already in the campaign, then a suppressed
address or domain. Every branch reads the chunk's rows by row number (the staging table's
primary key), never the whole staging table.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.services.staging import Staging

_CHUNK: Final = "{a}.row_no > :lo AND {a}.row_no <= :hi"

# A row staged with a first_row (import_lines.Repeats) is a later occurrence when that row
# has its address, the common case, settled by one primary-key lookup; when the two only
# hashed alike, its own address's first earlier row, if any, is found by a scan (rare).
_REPEATS: Final = f"""
    SELECT r.row_no, r.email, 1 AS rank, 'duplicate of row ' || f.row_no AS reason
    FROM {{stg}} r JOIN {{stg}} f ON f.row_no = r.first_row AND f.email = r.email
    WHERE {_CHUNK.format(a="r")}
    UNION ALL
    SELECT r.row_no, r.email, 1, 'duplicate of row ' || e.first_row
    FROM {{stg}} r JOIN {{stg}} f ON f.row_no = r.first_row AND f.email <> r.email
    CROSS JOIN LATERAL (
        SELECT min(x.row_no) AS first_row FROM {{stg}} x
        WHERE x.email = r.email AND x.row_no < r.row_no
    ) e
    WHERE {_CHUNK.format(a="r")} AND e.first_row IS NOT NULL"""

# Rows of earlier chunks are in `recipients` by now, but only a later occurrence of their
# address can meet them here, and that row is rejected as such first (rank 1).
_EXISTING: Final = f"""
    UNION ALL
    SELECT s.row_no, s.email, 2, 'already in this campaign'
    FROM {{stg}} s JOIN recipients ex ON ex.campaign_id = :campaign_id AND ex.email = s.email
    WHERE {_CHUNK.format(a="s")}"""

# Global rows and the campaign's client's own unsubscribes, each form of the address its
# own equi-join (an OR would rule out the index and hash joins).
_SUPPRESSED: Final = "".join(
    "\n    UNION ALL\n    "
    f"SELECT s.row_no, s.email, {rank}, {reason} FROM {{stg}} s JOIN suppressions x "
    f"ON x.kind = '{kind}' AND x.value = s.{column} "
    "AND (x.client_id IS NULL OR x.client_id = :client_id) "
    f"WHERE {_CHUNK.format(a='s')}"
    for kind, column, rank, reason in (
        ("email", "email", 3, "'the address is suppressed'"),
        ("email", "ascii_email", 3, "'the address is suppressed'"),
        ("domain", "domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
        ("domain", "ascii_domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
    )
)


def reject_chunk(
    session: Session,
    staging: Staging,
    campaign_id: int,
    client_id: int,
    bounds: tuple[int, int],
    *,
    campaign_had_recipients: bool,
) -> None:
    """Adds the rejected rows with lo < row_no <= hi to `staging.rejected`.

    `campaign_had_recipients=False` (the campaign had none when the import took its lock)
    leaves out the search for addresses already in it: only this import's own rows can
    be there, and those are later occurrences, found first."""
    branches = _REPEATS + (_EXISTING if campaign_had_recipients else "") + _SUPPRESSED
    lo, hi = bounds
    session.execute(
        text(
            f"INSERT INTO {staging.rejected} (row_no, email, kind, reason) "
            f"SELECT DISTINCT ON (row_no) row_no, email, "
            "CASE WHEN rank <= 2 THEN 'duplicate' ELSE 'suppressed' END, reason "
            f"FROM ({branches.format(stg=staging.table)}\n) found ORDER BY row_no, rank"
        ),
        {"campaign_id": campaign_id, "client_id": client_id, "lo": lo, "hi": hi},
    )
