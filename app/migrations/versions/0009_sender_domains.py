"""sender-authentication results per sending domain (reserved for the DNS checks work)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:05:00

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
