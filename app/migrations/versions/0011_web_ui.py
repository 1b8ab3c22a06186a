"""web UI: forecast_snapshots, the forecast a campaign was started with

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 04:05:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'forecast_snapshots',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('made_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('finish_date', sa.Date(), nullable=True),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('days', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_forecast_snapshots_campaign_id_campaigns'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_forecast_snapshots')),
    )


def downgrade() -> None:
    op.drop_table('forecast_snapshots')
