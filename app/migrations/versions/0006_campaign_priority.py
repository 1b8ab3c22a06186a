"""campaigns.priority: a campaign's share of its client's capacity (1..100, default 1)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:20:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'campaigns',
        sa.Column('priority', sa.Integer(), server_default=sa.text('1'), nullable=False),
    )
    op.create_check_constraint(
        op.f('ck_campaigns_priority'), 'campaigns', 'priority BETWEEN 1 AND 100'
    )


def downgrade() -> None:
    op.drop_constraint(op.f('ck_campaigns_priority'), 'campaigns', type_='check')
    op.drop_column('campaigns', 'priority')
