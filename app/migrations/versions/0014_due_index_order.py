"""ix_recipients_due in the dispatcher's order: (campaign_id, next_attempt_at NULLS FIRST, id)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 05:10:00

The claim orders due rows by next_attempt_at NULLS FIRST, id; the old index (next_attempt_at
ascending, nulls last, no id) could not give that order, so every pass sorted all of a
campaign's due rows to take 500 of them (0.7 s at 1M due rows). Built CONCURRENTLY under a
new name, then swapped, so sending goes on while it builds.
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_DUE = "status IN ('pending', 'deferred')"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_recipients_due_ordered ON recipients "
            f"(campaign_id, next_attempt_at NULLS FIRST, id) WHERE {_DUE}"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_recipients_due")
        op.execute("ALTER INDEX ix_recipients_due_ordered RENAME TO ix_recipients_due")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_recipients_due_old ON recipients "
            f"(campaign_id, next_attempt_at) WHERE {_DUE}"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_recipients_due")
        op.execute("ALTER INDEX ix_recipients_due_old RENAME TO ix_recipients_due")
