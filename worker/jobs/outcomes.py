"""Recording what happened to one send: the recipient's final or next state, its event, and
what it means for the account (failure counter, pause, disable) and for suppressions.

Every write is a compare-and-set on the state the send path left (`sending`): a row that is
no longer `sending` (recovery marked it `unknown`) is never overwritten."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.models import AccountStatus, EventType, RecipientStatus
from app.settings import Settings
from rotator.classify import Outcome, SmtpReply, Verdict
from worker.jobs import alerts

log = logging.getLogger(__name__)

FINISH = text(
    """
    WITH done AS (
        UPDATE recipients
        SET status = :status, updated_at = :now, sending_since = NULL,
            sent_at = CASE WHEN :status = 'sent' THEN CAST(:now AS timestamptz) ELSE sent_at END,
            next_attempt_at = :next_attempt_at,
            last_smtp_code = :code, last_smtp_text = :reply
        WHERE id = :id AND status = 'sending'
        RETURNING id, campaign_id, account_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
    SELECT :event, campaign_id, id, account_id, CAST(:data AS jsonb) FROM done
    RETURNING recipient_id
    """
)

# Account-level refusal: nothing reached the recipient, so the attempt does not count
# against it and it goes straight back to the dispatcher for another account.
HAND_BACK = text(
    """
    WITH back AS (
        UPDATE recipients
        SET status = 'pending', updated_at = :now, sending_since = NULL, next_attempt_at = NULL,
            attempts = greatest(attempts - 1, 0), account_id = NULL, reservation = NULL,
            message_id = NULL, last_smtp_code = :code, last_smtp_text = :reply
        WHERE id = :id AND status = 'sending'
        RETURNING id, campaign_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
    SELECT 'requeued', campaign_id, id, :account_id, CAST(:data AS jsonb) FROM back
    RETURNING recipient_id
    """
)

SUPPRESS_BOUNCE = text(
    """
    INSERT INTO suppressions (kind, value, reason, source)
    VALUES ('email', :email, 'bounced', :source)
    ON CONFLICT (value) DO NOTHING
    """
)

COUNT_FAILURE = text(
    """
    UPDATE accounts SET consecutive_failures = consecutive_failures + 1, updated_at = now()
    WHERE id = :id RETURNING consecutive_failures
    """
)

RESET_FAILURES = text(
    "UPDATE accounts SET consecutive_failures = 0 WHERE id = :id AND consecutive_failures <> 0"
)

SET_ACCOUNT_STATUS = text(
    """
    WITH changed AS (
        UPDATE accounts
        SET status = :status, paused_until = :until, paused_reason = :reason, updated_at = now()
        WHERE id = :id AND status = 'active'
        RETURNING id
    )
    INSERT INTO events (type, account_id, data)
    SELECT :event, id, CAST(:data AS jsonb) FROM changed
    RETURNING account_id
    """
)


@dataclass(frozen=True)
class Sent:
    """What the send path knows about one claimed recipient when it records the outcome."""

    recipient_id: int
    campaign_id: int
    email: str
    domain: str
    attempts: int
    message_id: str


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    stops_account: bool  # the account left rotation: the rest of its batch goes back


def record(
    session: Session,
    settings: Settings,
    *,
    sent: Sent,
    account_id: int,
    reply: SmtpReply,
    verdict: Verdict,
    now: datetime,
    pause_until_window_frees: datetime | None = None,
) -> Recorded:
    outcome = verdict.outcome
    data = {"reason": verdict.reason, "smtp_code": reply.code, "enhanced": reply.enhanced}
    if outcome is Outcome.SENT:
        _finish(session, sent, RecipientStatus.SENT, EventType.SENT, reply, now, data)
        session.execute(RESET_FAILURES, {"id": account_id})
        return Recorded(outcome, stops_account=False)
    if outcome is Outcome.BOUNCED:
        _finish(session, sent, RecipientStatus.BOUNCED, EventType.BOUNCED, reply, now, data)
        session.execute(
            SUPPRESS_BOUNCE, {"email": sent.email, "source": f"campaign:{sent.campaign_id}"}
        )
        session.execute(RESET_FAILURES, {"id": account_id})
        return Recorded(outcome, stops_account=False)
    if outcome is Outcome.FAILED:
        _finish(session, sent, RecipientStatus.FAILED, EventType.FAILED, reply, now, data)
        return Recorded(outcome, stops_account=False)
    if outcome is Outcome.UNKNOWN:
        _finish(session, sent, RecipientStatus.UNKNOWN, EventType.UNKNOWN, reply, now, data)
        alerts.notify(
            f"outcome-lost:{account_id}",
            f"Account {account_id}: the outcome of a send was lost ({reply.text[:120]}); "
            "the recipient is marked unknown and will not be resent automatically.",
        )
        return Recorded(outcome, stops_account=False)
    if outcome is Outcome.DEFERRED:
        stops = _defer(session, settings, sent, account_id, reply, now, data)
        return Recorded(outcome, stops_account=stops)
    # Account-level refusal: ACCOUNT_PAUSED or ACCOUNT_DISABLED.
    session.execute(
        HAND_BACK,
        {
            "id": sent.recipient_id,
            "now": now,
            "code": reply.code,
            "reply": reply.text,
            "account_id": account_id,
            "data": json.dumps(data),
        },
    )
    if outcome is Outcome.ACCOUNT_DISABLED:
        set_account_status(
            session,
            account_id,
            AccountStatus.DISABLED,
            until=None,
            reason=f"{verdict.reason}: {reply.text[:200]}",
            event=EventType.ACCOUNT_DISABLED,
        )
    else:
        until = (
            pause_until_window_frees
            if verdict.pause_until_window_frees and pause_until_window_frees is not None
            else now + timedelta(seconds=settings.policy_pause_seconds)
        )
        set_account_status(
            session,
            account_id,
            AccountStatus.PAUSED,
            until=until,
            reason=f"{verdict.reason}: {reply.text[:200]}",
            event=EventType.ACCOUNT_PAUSED,
        )
    return Recorded(outcome, stops_account=True)


def _defer(
    session: Session,
    settings: Settings,
    sent: Sent,
    account_id: int,
    reply: SmtpReply,
    now: datetime,
    data: dict[str, Any],
) -> bool:
    delays = settings.retry_delays_seconds
    if sent.attempts > len(delays):
        _finish(
            session,
            sent,
            RecipientStatus.FAILED,
            EventType.FAILED,
            reply,
            now,
            {**data, "attempts": sent.attempts, "final": True},
        )
    else:
        retry_at = now + timedelta(seconds=delays[sent.attempts - 1])
        _finish(
            session,
            sent,
            RecipientStatus.DEFERRED,
            EventType.DEFERRED,
            reply,
            now,
            {**data, "attempts": sent.attempts},
            next_attempt_at=retry_at,
        )
    failures = session.execute(COUNT_FAILURE, {"id": account_id}).scalar_one()
    if failures < settings.failures_before_pause:
        return False
    set_account_status(
        session,
        account_id,
        AccountStatus.PAUSED,
        until=now + timedelta(seconds=settings.failure_pause_seconds),
        reason=f"{failures} consecutive failures, last: {reply.text[:200]}",
        event=EventType.ACCOUNT_PAUSED,
    )
    return True


def event_data(sent: Sent, reply: SmtpReply, verdict: Verdict) -> str:
    return json.dumps(
        {
            "reason": verdict.reason,
            "smtp_code": reply.code,
            "enhanced": reply.enhanced,
            "message_id": sent.message_id,
        }
    )


def _finish(
    session: Session,
    sent: Sent,
    status: RecipientStatus,
    event: EventType,
    reply: SmtpReply,
    now: datetime,
    data: dict[str, Any],
    *,
    next_attempt_at: datetime | None = None,
) -> None:
    session.execute(
        FINISH,
        {
            "id": sent.recipient_id,
            "status": status.value,
            "event": event.value,
            "now": now,
            "next_attempt_at": next_attempt_at,
            "code": reply.code,
            "reply": reply.text,
            "data": json.dumps({**data, "message_id": sent.message_id}),
        },
    )


def set_account_status(
    session: Session,
    account_id: int,
    status: AccountStatus,
    *,
    until: datetime | None,
    reason: str,
    event: EventType,
) -> bool:
    """active -> paused/disabled, once: a second worker seeing the same failure changes nothing."""
    changed = session.execute(
        SET_ACCOUNT_STATUS,
        {
            "id": account_id,
            "status": status.value,
            "until": until,
            "reason": reason,
            "event": event.value,
            "data": json.dumps({"reason": reason, "until": until.isoformat() if until else None}),
        },
    ).first()
    if changed is None:
        return False
    log.warning(
        "account.%s", status.value, extra={"account_id": account_id, "reason": reason[:200]}
    )
    alerts.notify(
        f"account-{status.value}:{account_id}",
        f"Account {account_id} {status.value}"
        + (f" until {until:%Y-%m-%d %H:%M} UTC" if until else "")
        + f": {reason}",
    )
    return True
