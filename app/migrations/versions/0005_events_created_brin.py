"""events: a BRIN index on created_at, for reading the last day's sends when the limiter's
windows are rebuilt (the table is append-only, so its rows lie in created_at order and
the index stays tiny)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:30:00

"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_events_created_brin', 'events', ['created_at'], postgresql_using='brin'
    )


def downgrade() -> None:
    op.drop_index('ix_events_created_brin', table_name='events')
