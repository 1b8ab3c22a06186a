"""The dispatcher's statements (worker.jobs.dispatch)."""

from __future__ import annotations

from sqlalchemy import text

# Each campaign's due rows, oldest first, up to its fair share of the batch
# (rotator.fairness.quotas): one index scan per campaign (ix_recipients_due).
CLAIM_DUE = text(
    """
    SELECT d.id, d.campaign_id, d.email, d.domain, d.next_attempt_at
    FROM unnest(CAST(:campaign_ids AS int[]), CAST(:quotas AS int[])) AS q(campaign_id, quota)
    CROSS JOIN LATERAL (
        SELECT r.id, r.campaign_id, r.email, r.domain, r.next_attempt_at
        FROM recipients r
        WHERE r.campaign_id = q.campaign_id
          AND r.id <> ALL(CAST(:taken AS bigint[]))
          AND r.status IN ('pending', 'deferred')
          AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= :due_by)
        ORDER BY r.next_attempt_at NULLS FIRST, r.id
        LIMIT q.quota
        FOR UPDATE OF r SKIP LOCKED
    ) AS d
    """
)

# The rows are locked by CLAIM_DUE in this transaction, so the status guard is a belt to
# the braces of SKIP LOCKED: a row can only move from a state the dispatcher may move.
# A new queued row is nobody's until its task starts (a holder left from an earlier attempt
# would keep recovery from ever returning it, should its task be lost).
MARK_QUEUED = text(
    """
    UPDATE recipients AS r
    SET status = 'queued', account_id = v.account_id, reservation = v.token,
        queued_at = :now, slot_at = v.slot_at, updated_at = :now, claimed_by = NULL
    FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                 unnest(CAST(:account_ids AS int[])) AS account_id,
                 unnest(CAST(:tokens AS text[])) AS token,
                 unnest(CAST(:slots AS timestamptz[])) AS slot_at) AS v
    WHERE r.id = v.id AND r.status IN ('pending', 'deferred')
    RETURNING r.id, r.campaign_id, r.account_id, r.slot_at
    """
)

POSTPONE = text(
    """
    UPDATE recipients AS r
    SET next_attempt_at = v.at, updated_at = :now
    FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                 unnest(CAST(:ats AS timestamptz[])) AS at) AS v
    WHERE r.id = v.id AND r.status IN ('pending', 'deferred')
    """
)

MARK_SUPPRESSED = text(
    """
    WITH moved AS (
        UPDATE recipients AS r SET status = 'suppressed', updated_at = :now
        WHERE r.id = ANY(:ids) AND r.status IN ('pending', 'deferred')
        RETURNING r.id, r.campaign_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, data)
    SELECT 'suppressed', campaign_id, id, '{"stage": "dispatch"}'::jsonb FROM moved
    """
)

# NULL client: global (bounces, complaints, operator blocks); else one client's unsubscribe.
SUPPRESSED_AMONG = text(
    """
    SELECT client_id, value FROM suppressions
    WHERE value = ANY(:emails) OR (kind = 'domain' AND value = ANY(:domains))
    """
)

QUEUED_EVENTS = text(
    """
    INSERT INTO events (type, campaign_id, recipient_id, account_id)
    SELECT 'queued', unnest(CAST(:campaign_ids AS int[])), unnest(CAST(:ids AS bigint[])),
           unnest(CAST(:account_ids AS int[]))
    """
)

IN_FLIGHT = text("SELECT count(*) FROM recipients WHERE status IN ('queued', 'sending')")

# Completion in two statements. The first locks the running campaigns nobody else holds
# (an import adding recipients holds its campaign's row: skip it). The second decides with
# a fresh snapshot, taken after the locks, so it sees every recipient committed before
# them; one UPDATE alone would re-check a row it waited for against its older snapshot.
LOCK_RUNNING_CAMPAIGNS = text(
    "SELECT id FROM campaigns WHERE status = 'running' FOR UPDATE SKIP LOCKED"
)
# A campaign is done when no recipient is pending, deferred, queued or sending. Asked of
# recipients alone, that walked every row of the campaign (no index holds all four
# statuses since migration 0015) on every pass. recipient_counts answers first: its sums
# are exact for this statement's snapshot (each slot row commits with the recipient rows
# it counts; compaction moves counts within one statement), so a positive sum is a
# recipient that can still be sent, found in a few slot rows. Only when the counts say
# nothing is left do the recipients confirm it, since completing is for good: counts gone
# wrong behind the triggers' back (see recipient_counts.recount) may keep a campaign
# running, never close one with work left. CASE runs the confirmation only then, once per
# campaign, on the index entries of those statuses alone (ix_recipients_due: pending,
# deferred; ix_recipients_campaign_status: not pending). Each probe is a scalar subquery
# ordered as its index is: as an EXISTS the planner may hash every campaign's due rows,
# and with a bare LIMIT 1 scan the table hoping to meet a match early (both seen on small
# tables); a sorted first row is cheap only from the index.
COMPLETE_CAMPAIGNS = text(
    """
    WITH done AS (
        UPDATE campaigns AS c SET status = 'completed', completed_at = :now, updated_at = :now
        WHERE c.id = ANY(:ids) AND c.status = 'running' AND CASE
            WHEN EXISTS (
                SELECT 1 FROM recipient_counts k
                WHERE k.campaign_id = c.id
                  AND k.status IN ('pending', 'deferred', 'queued', 'sending')
                GROUP BY k.status HAVING sum(k.n) > 0)
            THEN false
            ELSE (SELECT r.id FROM recipients r
                  WHERE r.campaign_id = c.id AND r.status IN ('pending', 'deferred')
                  ORDER BY r.next_attempt_at NULLS FIRST, r.id LIMIT 1) IS NULL
             AND (SELECT r.id FROM recipients r
                  WHERE r.campaign_id = c.id AND r.status IN ('deferred', 'queued', 'sending')
                  ORDER BY r.status LIMIT 1) IS NULL
        END
        RETURNING c.id
    )
    INSERT INTO events (type, campaign_id)
    SELECT 'campaign_completed', id FROM done
    RETURNING campaign_id
    """
)
