"""send core hardening: bounded hand-backs, claim holders, campaign pause reasons,
recipient-domain back-off

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    # How often an account-level refusal handed this recipient back to the pool; bounded
    # by the number of accounts the campaign allows (three at most).
    op.add_column(
        'recipients',
        sa.Column('handbacks', sa.Integer(), server_default=sa.text('0'), nullable=False),
    )
    # The send process that holds a queued or sending row (its heartbeat lives in Redis).
    op.add_column('recipients', sa.Column('claimed_by', sa.String(length=128), nullable=True))
    op.add_column('campaigns', sa.Column('paused_reason', sa.Text(), nullable=True))
    # A receiving domain that asked us to slow down (greylisting, per-domain throttling):
    # the dispatcher sends it nothing before `until`.
    op.create_table(
        'domain_backoffs',
        sa.Column('domain', sa.String(length=255), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('hits', sa.Integer(), server_default=sa.text('1'), nullable=False),
        sa.Column(
            'updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint('domain'),
    )


def downgrade():
    op.drop_table('domain_backoffs')
    op.drop_column('campaigns', 'paused_reason')
    op.drop_column('recipients', 'claimed_by')
    op.drop_column('recipients', 'handbacks')
