"""client scoping: limits per client (and a client scope), back-offs per client, events
told their client by the database, clients paused with a reason

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:40:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Every writer of events (the send path's SQL, the dispatcher's, the services) gets the
# client from the campaign or the account the event names: none can forget it.
EVENT_CLIENT_FUNCTION = """
CREATE FUNCTION events_fill_client_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_id IS NULL AND NEW.campaign_id IS NOT NULL THEN
        SELECT client_id INTO NEW.client_id FROM campaigns WHERE id = NEW.campaign_id;
    END IF;
    IF NEW.client_id IS NULL AND NEW.account_id IS NOT NULL THEN
        SELECT client_id INTO NEW.client_id FROM accounts WHERE id = NEW.account_id;
    END IF;
    RETURN NEW;
END
$$
"""
EVENT_CLIENT_TRIGGER = (
    'CREATE TRIGGER events_client_id BEFORE INSERT ON events '
    'FOR EACH ROW WHEN (NEW.client_id IS NULL) EXECUTE FUNCTION events_fill_client_id()'
)
LIMIT_SCOPES = "('system', 'account', 'sending_domain', 'recipient_domain', 'client')"
OLD_LIMIT_SCOPES = "('system', 'account', 'sending_domain', 'recipient_domain')"


def upgrade() -> None:
    # A client's caps are overrides of the `client` limit scope (PUT /limits/client/<id>),
    # one mechanism with the other scopes; the columns 0003 added for them go.
    op.drop_constraint(op.f('ck_clients_daily_cap'), 'clients', type_='check')
    op.drop_constraint(op.f('ck_clients_per_minute_cap'), 'clients', type_='check')
    op.drop_column('clients', 'daily_cap')
    op.drop_column('clients', 'per_minute_cap')
    op.add_column('clients', sa.Column('paused_reason', sa.Text(), nullable=True))

    # Limits: the system scope is the installation's (client NULL); recipient-domain and
    # sending-domain overrides are a client's own; a client's caps are the `client` scope.
    op.drop_constraint(op.f('ck_limits_scope'), 'limits', type_='check')
    op.create_check_constraint(op.f('ck_limits_scope'), 'limits', f'scope IN {LIMIT_SCOPES}')
    op.alter_column('limits', 'client_id', nullable=True)
    op.execute("UPDATE limits SET client_id = NULL WHERE scope = 'system'")
    op.drop_constraint('uq_limits_scope_key', 'limits', type_='unique')
    op.create_unique_constraint(
        'uq_limits_scope_key_client', 'limits', ['scope', 'key', 'client_id'],
        postgresql_nulls_not_distinct=True,
    )
    op.create_check_constraint(
        op.f('ck_limits_client_scoped'), 'limits',
        "(scope = 'system') = (client_id IS NULL)",
    )

    # A domain that asked one client's senders to slow down holds that client's sends only.
    op.add_column('domain_backoffs', sa.Column('client_id', sa.Integer(), nullable=True))
    op.execute('UPDATE domain_backoffs SET client_id = (SELECT min(id) FROM clients)')
    op.alter_column('domain_backoffs', 'client_id', nullable=False)
    op.drop_constraint(op.f('pk_domain_backoffs'), 'domain_backoffs', type_='primary')
    op.create_primary_key(op.f('pk_domain_backoffs'), 'domain_backoffs', ['client_id', 'domain'])
    op.create_foreign_key(
        op.f('fk_domain_backoffs_client_id_clients'), 'domain_backoffs', 'clients',
        ['client_id'], ['id'], ondelete='CASCADE',
    )

    # Keys made before clients existed could change everything in the flat installation
    # (the system limit, any suppression): they keep that power as admin keys, so the
    # operators' scripts go on working. New keys belong to one client.
    op.execute(
        'UPDATE api_keys SET is_admin = true '
        'WHERE created_at < (SELECT min(created_at) FROM clients)'
    )

    op.execute(EVENT_CLIENT_FUNCTION)
    op.execute(EVENT_CLIENT_TRIGGER)
    op.execute(
        'UPDATE events e SET client_id = c.client_id FROM campaigns c '
        'WHERE e.client_id IS NULL AND e.campaign_id = c.id'
    )


def downgrade() -> None:
    op.execute('DROP TRIGGER events_client_id ON events')
    op.execute('DROP FUNCTION events_fill_client_id()')
    op.drop_constraint(op.f('fk_domain_backoffs_client_id_clients'), 'domain_backoffs',
                       type_='foreignkey')
    op.drop_constraint(op.f('pk_domain_backoffs'), 'domain_backoffs', type_='primary')
    op.execute(
        'DELETE FROM domain_backoffs a USING domain_backoffs b '
        'WHERE a.domain = b.domain AND a.until < b.until'
    )
    op.create_primary_key(op.f('pk_domain_backoffs'), 'domain_backoffs', ['domain'])
    op.drop_column('domain_backoffs', 'client_id')

    op.drop_constraint(op.f('ck_limits_client_scoped'), 'limits', type_='check')
    op.drop_constraint('uq_limits_scope_key_client', 'limits', type_='unique')
    op.execute("DELETE FROM limits WHERE scope = 'client'")
    op.execute(
        'DELETE FROM limits a USING limits b '
        'WHERE a.scope = b.scope AND a.key = b.key AND a.id > b.id'
    )
    op.execute('UPDATE limits SET client_id = (SELECT min(id) FROM clients) '
               'WHERE client_id IS NULL')
    op.alter_column('limits', 'client_id', nullable=False)
    op.create_unique_constraint('uq_limits_scope_key', 'limits', ['scope', 'key'])
    op.drop_constraint(op.f('ck_limits_scope'), 'limits', type_='check')
    op.create_check_constraint(op.f('ck_limits_scope'), 'limits', f'scope IN {OLD_LIMIT_SCOPES}')

    op.drop_column('clients', 'paused_reason')
    op.add_column('clients', sa.Column('per_minute_cap', sa.Integer(), nullable=True))
    op.add_column('clients', sa.Column('daily_cap', sa.Integer(), nullable=True))
    op.create_check_constraint(op.f('ck_clients_daily_cap'), 'clients',
                               'daily_cap IS NULL OR daily_cap >= 0')
    op.create_check_constraint(op.f('ck_clients_per_minute_cap'), 'clients',
                               'per_minute_cap IS NULL OR per_minute_cap >= 0')
