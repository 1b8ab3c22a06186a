"""Who paused an account or a campaign and why (paused_by, pause_details); accounts.sending_ip

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:05:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('accounts', 'campaigns'):
        op.add_column(table, sa.Column('paused_by', sa.String(length=32), nullable=True))
        op.add_column(
            table,
            sa.Column('pause_details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        )
    op.add_column('accounts', sa.Column('sending_ip', sa.String(length=45), nullable=True))


def downgrade() -> None:
    op.drop_column('accounts', 'sending_ip')
    for table in ('campaigns', 'accounts'):
        op.drop_column(table, 'pause_details')
        op.drop_column(table, 'paused_by')
