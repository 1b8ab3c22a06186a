"""the warm-up ramp's days and health-check records (reserved for the health/warm-up work)

warmup_days keeps one row per account and judged day: the cap in force, what was sent and
bounced, and whether the ramp advanced or held (and why); its unique (account, day) makes
the daily ramp idempotent. accounts gain their own warm-up start and step (NULL: the
settings'). health_checks keeps each SMTP check's result and masked transcript.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:05:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('warmup_start', sa.Integer(), nullable=True))
    op.add_column('accounts', sa.Column('warmup_step', sa.Integer(), nullable=True))
    op.create_table(
        'warmup_days',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('warmup_day', sa.Integer(), nullable=False),
        sa.Column('cap', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('bounced', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column(
            'details',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ['account_id'], ['accounts.id'],
            name=op.f('fk_warmup_days_account_id_accounts'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_warmup_days')),
        sa.UniqueConstraint('account_id', 'day', name='uq_warmup_days_account_day'),
    )
    op.create_table(
        'health_checks',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column(
            'transcript',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column(
            'checked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ['account_id'], ['accounts.id'],
            name=op.f('fk_health_checks_account_id_accounts'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_health_checks')),
    )
    op.create_index(
        'ix_health_checks_account_checked', 'health_checks', ['account_id', 'checked_at']
    )
    op.create_index('ix_health_checks_checked_at', 'health_checks', ['checked_at'])


def downgrade() -> None:
    op.drop_index('ix_health_checks_checked_at', table_name='health_checks')
    op.drop_index('ix_health_checks_account_checked', table_name='health_checks')
    op.drop_table('health_checks')
    op.drop_table('warmup_days')
    op.drop_column('accounts', 'warmup_step')
    op.drop_column('accounts', 'warmup_start')
