"""recipients' two foreign keys kept per statement by triggers, not per row

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:00:00

A declarative foreign key checks every inserted row on its own: an after-row trigger event
per row, and for each one a lookup of the parent taking FOR KEY SHARE. For an import that
is most of its cost: of the INSERT of a million recipients (bench/import_floor.py, about
11 s of backend CPU) the campaign's key took 5 s and the account's, NULL on every
imported row, up to 2 s more, though both ask the same question a million times.

The same rules hold here, asked once per statement from its transition table (shared with
the recipient_counts triggers, so nothing more is captured):

- recipients_parents_insert / _update: the distinct campaign_id and non-NULL account_id of
  the new rows (of an UPDATE: only the values its old rows did not already hold, so the
  send path's status changes lock and read no parent, as a foreign key skips an update
  that leaves its key alone) are locked FOR KEY SHARE, as the foreign key would lock them,
  then looked up afresh (plpgsql takes a new snapshot per statement); one missing raises
  SQLSTATE 23503 (foreign_key_violation) naming the old constraint, so callers see the same
  IntegrityError. A parent deleted by a transaction that committed meanwhile is skipped by
  the lock and then missing; one being deleted makes the lock wait for that transaction's
  end.
- campaigns_recipients_cascade: deleting campaigns deletes their recipients (ON DELETE
  CASCADE); accounts_recipients_set_null: deleting accounts clears recipients' account_id
  (ON DELETE SET NULL). A delete waits for the KEY SHARE lock of an insert still open and
  then, in its own statement, sees and removes that insert's rows.

What the declarative keys did and these do not: refuse an UPDATE of campaigns.id or
accounts.id (serial keys nothing updates) and refuse TRUNCATE of a parent alone. The
downgrade puts the keys back (validating every row).
"""
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# One pass over the transition table gives both keys' distinct values (a hash aggregate to
# a few pairs); each parent table is then locked and read once per distinct key.
_INSERTED = """
    SELECT array_agg(DISTINCT p.campaign_id),
           array_agg(DISTINCT p.account_id) FILTER (WHERE p.account_id IS NOT NULL)
    INTO campaign_ids, account_ids
    FROM (SELECT campaign_id, account_id FROM new_rows GROUP BY 1, 2) p;
"""
# Of an UPDATE, only the values it brings in: a parent its old rows already referenced
# existed, and a delete of it waits on these rows' locks, then sees what this commits.
_UPDATED = """
    SELECT array_agg(p.id) FILTER (WHERE p.parent = 'c'),
           array_agg(p.id) FILTER (WHERE p.parent = 'a')
    INTO campaign_ids, account_ids
    FROM (
        (SELECT 'c' AS parent, campaign_id AS id FROM new_rows
         EXCEPT SELECT 'c', campaign_id FROM old_rows)
        UNION ALL
        (SELECT 'a', account_id FROM new_rows WHERE account_id IS NOT NULL
         EXCEPT SELECT 'a', account_id FROM old_rows)
    ) p;
"""
_MISSING = """
    PERFORM 1 FROM {parent} WHERE id = ANY({ids}) ORDER BY id FOR KEY SHARE;
    SELECT n INTO missing FROM unnest({ids}) n
    WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = n)
    LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "recipients" violates foreign key '
                      'constraint "{constraint}"',
            DETAIL = format('Key ({column})=(%s) is not present in table "{parent}".', missing),
            CONSTRAINT = '{constraint}', TABLE = 'recipients';
    END IF;
"""
_KEYS = (
    ('campaign_id', 'campaigns', 'fk_recipients_campaign_id_campaigns', 'CASCADE'),
    ('account_id', 'accounts', 'fk_recipients_account_id_accounts', 'SET NULL'),
)
_CHECKS = "".join(
    _MISSING.format(
        column=column, parent=parent, constraint=constraint, ids=f"{parent[:-1]}_ids"
    )
    for column, parent, constraint, _ in _KEYS
)
# trigger -> (its function, the transition tables it reads, how it finds the keys to check)
_PARENT_CHECKS = {
    'recipients_parents_insert': (
        'recipients_parents_inserted', 'INSERT', 'NEW TABLE AS new_rows', _INSERTED,
    ),
    'recipients_parents_update': (
        'recipients_parents_updated', 'UPDATE', 'OLD TABLE AS old_rows NEW TABLE AS new_rows',
        _UPDATED,
    ),
}
_ON_PARENT_DELETE = {
    'campaigns_recipients_cascade': (
        'campaigns',
        "DELETE FROM recipients WHERE campaign_id IN (SELECT id FROM old_parents)",
    ),
    'accounts_recipients_set_null': (
        'accounts',
        "UPDATE recipients SET account_id = NULL WHERE account_id IN (SELECT id FROM old_parents)",
    ),
}


def upgrade() -> None:
    for trigger, (function, event, referencing, keys) in _PARENT_CHECKS.items():
        op.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "DECLARE campaign_ids integer[]; account_ids integer[]; missing bigint;\n"
            f"BEGIN\n{keys}{_CHECKS}RETURN NULL;\nEND\n$$"
        )
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {event} ON recipients REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    for name, (parent, action) in _ON_PARENT_DELETE.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{action};\nRETURN NULL;\nEND\n$$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER DELETE ON {parent} "
            "REFERENCING OLD TABLE AS old_parents FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {name}()"
        )
    for _, _, constraint, _ in _KEYS:
        op.drop_constraint(constraint, 'recipients', type_='foreignkey')


def downgrade() -> None:
    for column, parent, constraint, on_delete in _KEYS:
        op.create_foreign_key(
            constraint, 'recipients', parent, [column], ['id'], ondelete=on_delete
        )
    for name, (parent, _) in _ON_PARENT_DELETE.items():
        op.execute(f"DROP TRIGGER {name} ON {parent}")
        op.execute(f"DROP FUNCTION {name}()")
    for trigger, (function, *_) in _PARENT_CHECKS.items():
        op.execute(f"DROP TRIGGER {trigger} ON recipients")
        op.execute(f"DROP FUNCTION {function}()")
