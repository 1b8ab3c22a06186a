"""The send path's statements (worker.jobs.send), each a compare-and-set on the state the
previous step left, so a duplicated task or a second worker changes nothing."""

from __future__ import annotations

from sqlalchemy import text

# Nothing is claimed for a paused campaign, account or client (the row is handed back);
# suppressed means a global suppression or an unsubscribe from the campaign's client.
# A group of one account's rows claimed in one statement (SEND_CLAIM_GROUP); RETURNING comes
# in no particular order, the caller puts it back in the batch's. The row's own conditions
# and its campaign's, client's and account's sit in one scalar subquery, so that the primary
# key is the only index the planner can reach recipients by: with `r.status = 'queued'` or a
# join to campaigns at top level, a table whose statistics were missing or stale (a new
# install, a fresh campaign) got plans that walked every queued row of the campaign through
# ix_recipients_campaign_status or ix_recipients_in_flight, 3-4 ms a claim instead of 1.
CLAIM_GROUP = text(
    """
    UPDATE recipients AS r
    SET status = 'sending', sending_since = :now, updated_at = :now,
        attempts = r.attempts + 1, claimed_by = :holder,
        message_id = (CAST(:message_ids AS text[]))[array_position(CAST(:ids AS bigint[]), r.id)]
    WHERE r.id = ANY(CAST(:ids AS bigint[])) AND r.account_id = :account_id
      AND (SELECT r.status = 'queued' AND c.status = 'running' AND cl.status = 'active'
                  AND a.status = 'active'
           FROM campaigns AS c, clients AS cl, accounts AS a
           WHERE c.id = r.campaign_id AND cl.id = c.client_id AND a.id = r.account_id)
    RETURNING r.id, r.campaign_id, r.email, r.domain, r.fields, r.attempts, r.reservation,
        r.message_id,
        EXISTS (SELECT 1 FROM suppressions s
                WHERE (s.value = r.email OR (s.kind = 'domain' AND s.value = r.domain))
                  AND (s.client_id IS NULL OR s.client_id =
                       (SELECT c.client_id FROM campaigns AS c WHERE c.id = r.campaign_id)))
            AS suppressed
    """
)

# The plain successes of a group, with their events, in one statement. Each row is found by
# its primary key (array_position picks its values); the status check sits in a subquery for
# the claim's reason: `r.status = 'sending'` at top level took ix_recipients_in_flight, whose
# 'sending' entries include one (dead until vacuum) for every row that was ever sent.
_FINISH_SENT = """
    UPDATE recipients AS r
    SET status = 'sent', sent_at = :now, updated_at = :now, sending_since = NULL,
        last_smtp_code =
            (CAST(:codes AS int[]))[array_position(CAST(:done_ids AS bigint[]), r.id)],
        last_smtp_text =
            (CAST(:replies AS text[]))[array_position(CAST(:done_ids AS bigint[]), r.id)]
    WHERE r.id = ANY(CAST(:done_ids AS bigint[])) AND (SELECT r.status = 'sending')
    RETURNING r.id, r.campaign_id, r.account_id,
        (CAST(:data AS text[]))[array_position(CAST(:done_ids AS bigint[]), r.id)] AS data,
        (CAST(:client_ids AS int[]))[array_position(CAST(:done_ids AS bigint[]), r.id)]
            AS client_id
"""
# client_id given, so events' fill-in trigger (a lookup per row) does not fire.
_SENT_EVENTS = """
    INSERT INTO events (type, campaign_id, recipient_id, account_id, client_id, data)
    SELECT 'sent', campaign_id, id, account_id, client_id, CAST(data AS jsonb) FROM done
"""
FINISH_SENT_GROUP = text(f"WITH done AS ({_FINISH_SENT}) {_SENT_EVENTS}")

# The common case in one round trip: the previous group's plain successes recorded and
# this group claimed, committed together. Data-modifying CTEs run whether or not they are
# read; they change other rows than the claim.
FINISH_SENT_THEN_CLAIM_GROUP = text(
    f"WITH done AS ({_FINISH_SENT}), logged AS ({_SENT_EVENTS}) {CLAIM_GROUP.text}"
)

# Claimed rows that were not attempted (an earlier message of the group stopped it, or the
# batch failed mid-way): queued again and still held, as before their claim. Each row by
# the Message-ID this batch's claim gave it, so that no other claim of the row (a duplicate
# task that took it after this batch gave it back) is undone.
UNCLAIM = text(
    """
    UPDATE recipients AS r
    SET status = 'queued', sending_since = NULL, attempts = r.attempts - 1, message_id = NULL,
        updated_at = :now
    FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                 unnest(CAST(:message_ids AS text[])) AS message_id) AS v
    WHERE r.id = v.id AND r.message_id = v.message_id AND r.status = 'sending'
      AND r.claimed_by = :holder
    """
)

# A queued row that may not go now (campaign paused or cancelled, account left rotation):
# back to the dispatcher. RETURNING shows new values, so the reservation to release is
# read from the locked snapshot `held`.
HAND_BACK_QUEUED = text(
    """
    WITH held AS (
        SELECT id, reservation FROM recipients
        WHERE id = ANY(:ids) AND status = 'queued' AND account_id = :account_id
        FOR UPDATE
    )
    UPDATE recipients AS r
    SET status = 'pending', account_id = NULL, reservation = NULL, queued_at = NULL,
        slot_at = NULL,
        claimed_by = NULL, updated_at = :now
    FROM held
    WHERE r.id = held.id AND r.status = 'queued'
    RETURNING r.id, r.campaign_id, r.domain, held.reservation,
              CAST(:account_id AS int) AS account_id
    """
)

# At task start: this process holds the batch's queued rows, so recovery returns them to
# `pending` as soon as it dies instead of after QUEUED_STALE_SECONDS (acks_late: the broker
# would redeliver the task only after its visibility timeout).
MARK_HELD = text(
    """
    UPDATE recipients SET claimed_by = :holder
    WHERE id = ANY(:ids) AND status = 'queued' AND account_id = :account_id
    RETURNING id, slot_at, reservation, domain, campaign_id
    """
)

# A batch that stops on an exception gives up its rows: this process lives on, so its
# heartbeat would keep recovery away from them for good. Without a holder the age rules
# apply: queued ones go back after QUEUED_STALE_SECONDS, and one left `sending` (its outcome
# never written) becomes `unknown` after SEND_LEASE_SECONDS, never resent.
RELEASE_HELD = text(
    """
    UPDATE recipients SET claimed_by = NULL
    WHERE id = ANY(:ids) AND status IN ('queued', 'sending') AND claimed_by = :holder
    """
)

SUPPRESS_CLAIMED = text(
    """
    WITH moved AS (
        UPDATE recipients SET status = 'suppressed', sending_since = NULL, updated_at = :now
        WHERE id = :id AND status = 'sending'
        RETURNING id, campaign_id, account_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
    SELECT 'suppressed', campaign_id, id, account_id, '{"stage": "send"}'::jsonb FROM moved
    """
)
