"""clients: every owned row belongs to a client; existing data goes to the first client

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:45:00

"""
from alembic import op
import sqlalchemy as sa
from flask import current_app

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Tables whose rows each belong to one client (NOT NULL, foreign key, indexed).
OWNED = ('accounts', 'campaigns', 'limits', 'api_keys')


def _default_client_name() -> str:
    # Migrations run inside the app (env.py), so the name comes from Settings
    # (DEFAULT_CLIENT_NAME), never from os.environ here.
    name: str = current_app.extensions['settings'].default_client_name
    return name


def upgrade() -> None:
    op.create_table(
        'clients',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
        sa.Column('daily_cap', sa.Integer(), nullable=True),
        sa.Column('per_minute_cap', sa.Integer(), nullable=True),
        sa.Column('telegram_chat_id', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f('ck_clients_status')),
        sa.CheckConstraint('daily_cap IS NULL OR daily_cap >= 0',
                           name=op.f('ck_clients_daily_cap')),
        sa.CheckConstraint('per_minute_cap IS NULL OR per_minute_cap >= 0',
                           name=op.f('ck_clients_per_minute_cap')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_clients')),
        sa.UniqueConstraint('name', name=op.f('uq_clients_name')),
    )
    default_id = op.get_bind().execute(
        sa.text('INSERT INTO clients (name) VALUES (:name) RETURNING id'),
        {'name': _default_client_name()},
    ).scalar_one()

    for table in OWNED:
        op.add_column(table, sa.Column('client_id', sa.Integer(), nullable=True))
        op.execute(sa.text(f'UPDATE {table} SET client_id = :id').bindparams(id=default_id))
        op.alter_column(table, 'client_id', nullable=False)
        op.create_foreign_key(
            op.f(f'fk_{table}_client_id_clients'), table, 'clients', ['client_id'], ['id']
        )
        op.create_index(op.f(f'ix_{table}_client_id'), table, ['client_id'])

    # Account names are unique within a client, no longer across the installation.
    op.drop_constraint('uq_accounts_name', 'accounts', type_='unique')
    op.create_unique_constraint('uq_accounts_client_name', 'accounts', ['client_id', 'name'])

    op.add_column(
        'api_keys',
        sa.Column('is_admin', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    )

    # Events keep no foreign keys (see app.models.events); NULL where the writer did not
    # know the client. Existing events are the default client's.
    op.add_column('events', sa.Column('client_id', sa.Integer(), nullable=True))
    op.execute(sa.text('UPDATE events SET client_id = :id').bindparams(id=default_id))
    op.create_index('ix_events_client_created', 'events', ['client_id', 'created_at'])

    # An unsubscribe is from one client; bounces, complaints and operator blocks stay global
    # (NULL). One row per (client, value) and one global row per value.
    op.add_column('suppressions', sa.Column('client_id', sa.Integer(), nullable=True))
    op.execute(
        sa.text("UPDATE suppressions SET client_id = :id WHERE reason = 'unsubscribed'")
        .bindparams(id=default_id)
    )
    op.create_foreign_key(
        op.f('fk_suppressions_client_id_clients'), 'suppressions', 'clients', ['client_id'], ['id']
    )
    op.create_index(op.f('ix_suppressions_client_id'), 'suppressions', ['client_id'])
    op.drop_constraint('uq_suppressions_value', 'suppressions', type_='unique')
    op.create_unique_constraint(
        'uq_suppressions_client_value', 'suppressions', ['client_id', 'value'],
        postgresql_nulls_not_distinct=True,
    )
    # The send path looks suppressions up by value alone.
    op.create_index(op.f('ix_suppressions_value'), 'suppressions', ['value'])

    op.create_table(
        'user_clients',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=16), server_default='member', nullable=False),
        sa.CheckConstraint("role IN ('admin', 'member')", name=op.f('ck_user_clients_role')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE',
                                name=op.f('fk_user_clients_user_id_users')),
        sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE',
                                name=op.f('fk_user_clients_client_id_clients')),
        sa.PrimaryKeyConstraint('user_id', 'client_id', name=op.f('pk_user_clients')),
    )
    op.create_index(op.f('ix_user_clients_client_id'), 'user_clients', ['client_id'])
    # Existing users are members of the default client.
    op.execute(
        sa.text("INSERT INTO user_clients (user_id, client_id, role) "
                "SELECT id, :id, 'member' FROM users").bindparams(id=default_id)
    )


def downgrade() -> None:
    # Going back to one flat space: per-client copies of a value collapse into one row.
    op.drop_table('user_clients')
    op.drop_index(op.f('ix_suppressions_value'), table_name='suppressions')
    op.drop_constraint('uq_suppressions_client_value', 'suppressions', type_='unique')
    op.execute(
        'DELETE FROM suppressions a USING suppressions b '
        'WHERE a.value = b.value AND a.id > b.id'
    )
    op.create_unique_constraint('uq_suppressions_value', 'suppressions', ['value'])
    op.drop_index(op.f('ix_suppressions_client_id'), table_name='suppressions')
    op.drop_constraint(op.f('fk_suppressions_client_id_clients'), 'suppressions',
                       type_='foreignkey')
    op.drop_column('suppressions', 'client_id')
    op.drop_index('ix_events_client_created', table_name='events')
    op.drop_column('events', 'client_id')
    op.drop_column('api_keys', 'is_admin')
    # Fails, as it should, if two clients now hold accounts of the same name.
    op.drop_constraint('uq_accounts_client_name', 'accounts', type_='unique')
    op.create_unique_constraint('uq_accounts_name', 'accounts', ['name'])
    for table in OWNED:
        op.drop_index(op.f(f'ix_{table}_client_id'), table_name=table)
        op.drop_constraint(op.f(f'fk_{table}_client_id_clients'), table, type_='foreignkey')
        op.drop_column(table, 'client_id')
    op.drop_table('clients')
