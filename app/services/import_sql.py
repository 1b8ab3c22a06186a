"""The import's statements over its staged rows (app.services.imports, steps 4 and 5): which
rows are rejected and why, and the insert of the rest as pending recipients.

Each statement takes a set of staged rows, `batch`: a chunk as COPY staged it, without its
repeats (`chunk_statement`), or, after the last chunk, every repeat (`repeats_statement`).
It writes the batch's rejected rows into the rejected table and inserts the others, in
one statement: a data-modifying CTE hands the rejected row numbers to the INSERT.
"""

from __future__ import annotations

from typing import Final

# The staged rows a suppression rejects: (kind, staged column, rank, reason).
_SUPPRESSED: Final = "\n        UNION ALL\n        ".join(
    f"SELECT s.row_no, s.email, {rank}, {reason} FROM batch s JOIN suppressions x "
    f"ON x.kind = '{kind}' AND x.value = s.{column} "
    "AND (x.client_id IS NULL OR x.client_id = :client_id)"
    for kind, column, rank, reason in (
        ("email", "email", 3, "'the address is suppressed'"),
        ("email", "ascii_email", 3, "'the address is suppressed'"),
        ("domain", "domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
        ("domain", "ascii_domain", 4, "'the domain ' || s.domain || ' is suppressed'"),
    )
)
# An index probe per row of the batch (LATERAL ... LIMIT 1), never a scan of the campaign,
# which the chunks before have been growing.
_IN_CAMPAIGN: Final = """SELECT s.row_no, s.email, 2, 'already in this campaign'
        FROM batch s CROSS JOIN LATERAL (
            SELECT 1 FROM recipients ex
            WHERE ex.campaign_id = :campaign_id AND ex.email = s.email LIMIT 1
        ) ex
        UNION ALL
        """
# A repeat's first occurrence: the earliest row of the file with its address.
_REPEATED: Final = """SELECT s.row_no, s.email, 1, 'duplicate of row ' || f.first_row
        FROM batch s JOIN (
            SELECT b.row_no, min(e.row_no) AS first_row FROM batch b
            JOIN {staging} e ON e.email = b.email AND e.row_no < b.row_no GROUP BY b.row_no
        ) f ON f.row_no = s.row_no
        UNION ALL
        """
_BATCH_COLUMNS: Final = "s.row_no, s.email, s.domain, s.ascii_domain, s.ascii_email, s.fields"


def chunk_statement(
    staging: str, rejected: str, fields_sql: str, *, in_campaign: bool, on_conflict: bool
) -> str:
    """The rows of one chunk (parameters :from_tid, :first_row) that are not repeats.

    Such a row is no later occurrence of an address of the file, so only the campaign's
    earlier recipients and the suppressions can reject it: the campaign check only when the
    campaign had recipients before this import (`in_campaign`), because a row not flagged
    cannot meet the ones the chunks before added."""
    batch = (
        f"SELECT {_BATCH_COLUMNS} FROM {staging} s WHERE s.ctid >= CAST(:from_tid AS tid) "
        "AND s.row_no >= :first_row AND NOT s.repeat"
    )
    return _statement(batch, rejected, fields_sql, _IN_CAMPAIGN if in_campaign else "", on_conflict)


def repeats_statement(staging: str, rejected: str, fields_sql: str, *, on_conflict: bool) -> str:
    """Every repeat: a later occurrence of an earlier row's address, or (about never) a row
    whose address only hashed like one. Its ids come after the chunks', so a collision's
    row is the one recipient of a file not in file order."""
    batch = f"SELECT {_BATCH_COLUMNS} FROM {staging} s WHERE s.repeat"
    # A repeat is checked against the campaign too: a real one matches the rows this
    # import added, but its duplicate reason outranks that match.
    branches = _REPEATED.format(staging=staging) + _IN_CAMPAIGN
    return _statement(batch, rejected, fields_sql, branches, on_conflict)


def _statement(batch: str, rejected: str, fields_sql: str, branches: str, on_conflict: bool) -> str:
    # Each branch finds the rows one reason rejects; a row several reasons reject keeps the
    # first by precedence (rank). Inner joins: a branch whose other side is empty (no
    # suppressions) stops before reading the batch. The INSERT reads the batch in staging
    # order, so ids follow the file.
    conflict = " ON CONFLICT (campaign_id, email) DO NOTHING" if on_conflict else ""
    return f"""
        WITH batch AS MATERIALIZED ({batch}),
        found (row_no, email, rank, reason) AS (
        {branches}{_SUPPRESSED}
        ), rejected AS (
            INSERT INTO {rejected} (row_no, email, kind, reason)
            SELECT DISTINCT ON (row_no) row_no, email,
                   CASE WHEN rank <= 2 THEN 'duplicate' ELSE 'suppressed' END, reason
            FROM found ORDER BY row_no, rank
            RETURNING row_no
        )
        INSERT INTO recipients (campaign_id, email, domain, fields, status)
        SELECT :campaign_id, s.email, s.domain, {fields_sql}, 'pending' FROM batch s
        WHERE NOT EXISTS (SELECT 1 FROM rejected x WHERE x.row_no = s.row_no){conflict}
        """
