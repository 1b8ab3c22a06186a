"""recipient_counts: recipients per campaign and status, kept by statement triggers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:00:00

Each statement that inserts, deletes or updates recipients adds what it changed to the
rows of its own backend (slot = pg_backend_pid()), from the statement's transition tables:
one upsert of a few rows per statement, whatever its size. Two transactions running at
once are two backends, so they never wait on each other's counter rows (no lock queue, no
deadlock on the hot path); a campaign's counts are the sum over its slots, committed with
the recipient rows they describe, so a read is exact for its snapshot. Slot 0 holds the
backfill and what app.services.recipient_counts.compact folds in from backends gone.
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Adds the net change per (campaign, status) of `changes` (campaign_id, status, n).
UPSERT = """
    INSERT INTO recipient_counts AS c (campaign_id, status, slot, n)
    SELECT d.campaign_id, d.status, pg_backend_pid(), sum(d.n)
    FROM ({changes}) AS d
    GROUP BY d.campaign_id, d.status
    HAVING sum(d.n) <> 0
    ORDER BY 1, 2
    ON CONFLICT (campaign_id, status, slot) DO UPDATE SET n = c.n + excluded.n
"""
INSERTED = "SELECT campaign_id, status, 1 AS n FROM new_rows"
# A campaign deleted in this statement (the cascade) has no counts left to keep.
DELETED = (
    "SELECT o.campaign_id, o.status, -1 AS n FROM old_rows o "
    "WHERE EXISTS (SELECT 1 FROM campaigns k WHERE k.id = o.campaign_id)"
)
UPDATED = (
    "SELECT campaign_id, status, 1 AS n FROM new_rows "
    "UNION ALL SELECT campaign_id, status, -1 FROM old_rows"
)
FUNCTIONS = {
    'recipient_counts_inserted': INSERTED,
    'recipient_counts_deleted': DELETED,
    'recipient_counts_updated': UPDATED,
}
# Transition tables rule out `UPDATE OF status`: every UPDATE of recipients fires it, and
# one that changes no status nets to nothing (HAVING) and writes nothing.
TRIGGERS = {
    'recipient_counts_insert': ('INSERT', 'NEW TABLE AS new_rows', 'recipient_counts_inserted'),
    'recipient_counts_delete': ('DELETE', 'OLD TABLE AS old_rows', 'recipient_counts_deleted'),
    'recipient_counts_update': (
        'UPDATE', 'OLD TABLE AS old_rows NEW TABLE AS new_rows', 'recipient_counts_updated'
    ),
}


def upgrade() -> None:
    op.create_table(
        'recipient_counts',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('slot', sa.Integer(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('campaign_id', 'status', 'slot', name=op.f('pk_recipient_counts')),
    )
    for name, changes in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{UPSERT.format(changes=changes)};\nRETURN NULL;\nEND\n$$"
        )
    op.execute(
        "CREATE FUNCTION recipient_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\nDELETE FROM recipient_counts;\nRETURN NULL;\nEND\n$$"
    )
    op.execute(
        "CREATE FUNCTION recipient_counts_campaigns_deleted() RETURNS trigger "
        "LANGUAGE plpgsql AS $$\nBEGIN\n"
        "DELETE FROM recipient_counts WHERE campaign_id IN (SELECT id FROM old_campaigns);\n"
        "RETURN NULL;\nEND\n$$"
    )
    # CREATE TRIGGER locks recipients against writes until this transaction commits, so
    # the backfill below counts exactly the rows the triggers will go on from.
    for name, (event, referencing, function) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON recipients REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.execute(
        "CREATE TRIGGER recipient_counts_truncate AFTER TRUNCATE ON recipients "
        "FOR EACH STATEMENT EXECUTE FUNCTION recipient_counts_truncated()"
    )
    op.execute(
        "CREATE TRIGGER recipient_counts_campaigns_delete AFTER DELETE ON campaigns "
        "REFERENCING OLD TABLE AS old_campaigns FOR EACH STATEMENT "
        "EXECUTE FUNCTION recipient_counts_campaigns_deleted()"
    )
    op.execute(
        "INSERT INTO recipient_counts (campaign_id, status, slot, n) "
        "SELECT campaign_id, status, 0, count(*) FROM recipients GROUP BY campaign_id, status"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER recipient_counts_campaigns_delete ON campaigns")
    op.execute("DROP TRIGGER recipient_counts_truncate ON recipients")
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON recipients")
    for name in (*FUNCTIONS, 'recipient_counts_truncated', 'recipient_counts_campaigns_deleted'):
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table('recipient_counts')
