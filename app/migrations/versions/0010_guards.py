"""guard records: a partial index on events for account resumes, so the rate guards find
an account's last resume (where its window starts) without scanning its day of events

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:05:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CONCURRENTLY: events is the largest table; a plain CREATE INDEX would hold every
    # send's INSERT for as long as it takes to build.
    with op.get_context().autocommit_block():
        op.create_index(
            'ix_events_account_resumed',
            'events',
            ['account_id', 'created_at'],
            postgresql_where=sa.text("type = 'account_resumed'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            'ix_events_account_resumed',
            table_name='events',
            postgresql_concurrently=True,
            if_exists=True,
        )
