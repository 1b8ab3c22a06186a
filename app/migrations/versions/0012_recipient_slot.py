"""recipients.slot_at: the moment the dispatcher placed a queued send at (limits on the wire)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 04:45:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('recipients', sa.Column('slot_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('recipients', 'slot_at')
