"""sender-authentication results per sending domain (reserved for the DNS checks work)

blacklist_checks gains a status (clean / listed / unknown: a list that did not answer is
never "clean"), a note and the answer of each list; accounts gain an own DKIM selector;
sender_auth_checks keeps each run's SPF / DKIM / DMARC / MX / PTR verdicts per domain.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:05:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'blacklist_checks',
        sa.Column('status', sa.String(length=16), server_default='clean', nullable=False),
    )
    op.execute("UPDATE blacklist_checks SET status = 'listed' WHERE listed")
    op.add_column('blacklist_checks', sa.Column('note', sa.Text(), nullable=True))
    op.add_column(
        'blacklist_checks',
        sa.Column(
            'list_results',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column('accounts', sa.Column('dkim_selector', sa.String(length=63), nullable=True))
    op.create_table(
        'sender_auth_checks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('domain', sa.String(length=255), nullable=False),
        sa.Column('spf', sa.String(length=8), nullable=False),
        sa.Column('dkim', sa.String(length=8), nullable=False),
        sa.Column('dmarc', sa.String(length=8), nullable=False),
        sa.Column('mx', sa.String(length=8), nullable=False),
        sa.Column('ptr', sa.String(length=8), nullable=True),
        sa.Column(
            'results',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            'checked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sender_auth_checks')),
    )
    op.create_index(
        'ix_sender_auth_checks_domain_checked', 'sender_auth_checks', ['domain', 'checked_at']
    )


def downgrade() -> None:
    op.drop_index('ix_sender_auth_checks_domain_checked', table_name='sender_auth_checks')
    op.drop_table('sender_auth_checks')
    op.drop_column('accounts', 'dkim_selector')
    op.drop_column('blacklist_checks', 'list_results')
    op.drop_column('blacklist_checks', 'note')
    op.drop_column('blacklist_checks', 'status')
