"""Recording what happened to one send: the recipient's final or next state, its event, and
what it means for the account, the sending domain, the recipient's domain and the campaign.

Who bears a refusal depends on what it is about (rotator.classify):
- the recipient: bounced (suppressed) or failed or deferred alone; the account untouched;
- the recipient's domain (greylisting, throttling): deferred, the domain backed off;
- the content: failed; the campaign guard pauses the campaign when it repeats;
- the sending domain's authentication: handed back, every account on the domain paused;
- the account: handed back (bounded, worker.jobs.handbacks), the account paused/disabled.
Session failures and unexplained 5xx count toward the account's failure streak; refusals
of most of its last recipients across several domains pause it (worker.jobs.guards).

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
from app.services.clients import clients_of_campaigns
from app.settings import Settings
from rotator.classify import About, Outcome, SmtpReply, Stage, Verdict
from worker.jobs import alerts, backoffs, guards, rate_guards
from worker.jobs.handbacks import HAND_BACK, handback_limit, handbacks_so_far
from worker.jobs.sender_auth import pause_sending_domain

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

SUPPRESS_BOUNCE = text(
    """
    INSERT INTO suppressions (kind, value, reason, source)
    VALUES ('email', :email, 'bounced', :source)
    ON CONFLICT (client_id, value) DO NOTHING
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
        SET status = :status, paused_until = :until, paused_reason = :reason,
            paused_by = :by, pause_details = CAST(:data AS jsonb), updated_at = now()
        WHERE id = :id AND status = 'active'
        RETURNING id, client_id
    )
    INSERT INTO events (type, account_id, client_id, data)
    SELECT :event, id, client_id, CAST(:data AS jsonb) FROM changed
    RETURNING account_id, client_id
    """
)

# Refusals that say something about the account only as a pattern: the session worked and
# one recipient (or its domain) said no. Content is the campaign guard's business.
_PATTERN_ABOUT = frozenset({About.RECIPIENT, About.RECIPIENT_DOMAIN, About.MESSAGE})
_IN_MESSAGE = frozenset({Stage.RCPT, Stage.DATA, Stage.DOT})


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
    sending_domain: str | None = None,
) -> Recorded:
    outcome = verdict.outcome
    data: dict[str, Any] = {
        "reason": verdict.reason,
        "about": verdict.about.value,
        "stage": reply.stage.value if reply.stage else None,
        "smtp_code": reply.code,
        "enhanced": reply.enhanced,
    }
    if _is_recipient_refusal(reply, verdict):
        data["refused_domain"] = sent.domain  # read back by guards.check_account_pattern
    if outcome is Outcome.SENT:
        _finish(session, sent, RecipientStatus.SENT, EventType.SENT, reply, now, data)
        session.execute(RESET_FAILURES, {"id": account_id})
        return Recorded(outcome, stops_account=False)
    if outcome is Outcome.UNKNOWN:
        _finish(session, sent, RecipientStatus.UNKNOWN, EventType.UNKNOWN, reply, now, data)
        alerts.notify(
            f"outcome-lost:{account_id}",
            f"Account {account_id}: the outcome of a send was lost ({reply.text[:120]}); "
            "the recipient is marked unknown and will not be resent automatically.",
            client_id=clients_of_campaigns(session, [sent.campaign_id]).get(sent.campaign_id),
        )
        return Recorded(outcome, stops_account=False)
    if verdict.stops_account:
        return _account_refusal(
            session, settings, sent, account_id, reply, verdict, now, data,
            pause_until_window_frees, sending_domain,
        )  # fmt: skip
    if outcome is Outcome.BOUNCED:
        _finish(session, sent, RecipientStatus.BOUNCED, EventType.BOUNCED, reply, now, data)
        session.execute(
            SUPPRESS_BOUNCE, {"email": sent.email, "source": f"campaign:{sent.campaign_id}"}
        )
        session.execute(RESET_FAILURES, {"id": account_id})
    elif outcome is Outcome.FAILED:
        _finish(session, sent, RecipientStatus.FAILED, EventType.FAILED, reply, now, data)
        if verdict.about is About.CONTENT:
            guards.check_content(session, settings, sent.campaign_id, reply, now)
    else:
        _defer(session, settings, sent, reply, verdict, now, data)
    stops = verdict.account_failure and _count_failure(session, settings, account_id, reply, now)
    if not stops and "refused_domain" in data:
        stops = _pattern_pause(session, settings, account_id, now)
    if not stops and outcome in (Outcome.BOUNCED, Outcome.FAILED):
        stops = rate_guards.check_after_refusal(
            session, settings, campaign_id=sent.campaign_id, account_id=account_id, now=now
        )
    return Recorded(outcome, stops_account=stops)


def _is_recipient_refusal(reply: SmtpReply, verdict: Verdict) -> bool:
    return (
        verdict.outcome in (Outcome.BOUNCED, Outcome.FAILED, Outcome.DEFERRED)
        and verdict.about in _PATTERN_ABOUT
        and reply.code is not None
        and reply.stage in _IN_MESSAGE
    )


def _account_refusal(
    session: Session,
    settings: Settings,
    sent: Sent,
    account_id: int,
    reply: SmtpReply,
    verdict: Verdict,
    now: datetime,
    data: dict[str, Any],
    pause_until_window_frees: datetime | None,
    sending_domain: str | None,
) -> Recorded:
    """The refusal is about the account (or its sending domain): nothing reached the
    recipient, so it goes back for another account, boundedly; the account leaves."""
    _hand_back(session, settings, sent, account_id, reply, now, data)
    if verdict.about is About.SENDING_DOMAIN and sending_domain:
        pause_sending_domain(
            session, settings, account_id=account_id, sending_domain=sending_domain,
            reply=reply, now=now,
        )  # fmt: skip
    elif verdict.outcome is Outcome.ACCOUNT_DISABLED:
        set_account_status(
            session,
            account_id,
            AccountStatus.DISABLED,
            until=None,
            reason=f"{verdict.reason}: {reply.text[:200]}",
            event=EventType.ACCOUNT_DISABLED,
            by="refusal",
            details=_refusal_details(data),
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
            by="refusal",
            details=_refusal_details(data),
        )
    return Recorded(verdict.outcome, stops_account=True)


def _refusal_details(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in ("about", "stage", "smtp_code", "enhanced")}


def _hand_back(
    session: Session,
    settings: Settings,
    sent: Sent,
    account_id: int,
    reply: SmtpReply,
    now: datetime,
    data: dict[str, Any],
) -> None:
    handbacks = handbacks_so_far(session, sent.recipient_id)
    if handbacks is None:
        return  # no longer ours (recovery got there first)
    limit = handback_limit(session, settings, sent.campaign_id)
    if handbacks >= limit:
        final = {**data, "handbacks": handbacks, "final": True, "attempts": sent.attempts}
        _finish(session, sent, RecipientStatus.FAILED, EventType.FAILED, reply, now, final)
        return
    session.execute(
        HAND_BACK,
        {
            "id": sent.recipient_id,
            "now": now,
            "code": reply.code,
            "reply": reply.text,
            "account_id": account_id,
            "data": json.dumps({**data, "handbacks": handbacks + 1}),
        },
    )


def _defer(
    session: Session,
    settings: Settings,
    sent: Sent,
    reply: SmtpReply,
    verdict: Verdict,
    now: datetime,
    data: dict[str, Any],
) -> None:
    delays = settings.retry_delays_seconds
    # Deferrals so far, this one included: tries refused for an account's sake do not use
    # up the recipient's retries (they are bounded on their own).
    deferrals = sent.attempts - (handbacks_so_far(session, sent.recipient_id) or 0)
    if verdict.about is About.RECIPIENT_DOMAIN:
        reopens = backoffs.slow_down(
            session, settings, sent.domain, str(reply), now, campaign_id=sent.campaign_id
        )
        data = {**data, "domain_backoff_until": reopens.isoformat()}
    else:
        reopens = now
    if deferrals > len(delays):
        final = {**data, "attempts": sent.attempts, "final": True}
        _finish(session, sent, RecipientStatus.FAILED, EventType.FAILED, reply, now, final)
        return
    retry_at = max(now + timedelta(seconds=delays[max(deferrals, 1) - 1]), reopens)
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


def _count_failure(
    session: Session, settings: Settings, account_id: int, reply: SmtpReply, now: datetime
) -> bool:
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
        by="failures",
        details={
            "consecutive_failures": failures,
            "threshold": settings.failures_before_pause,
            "smtp_code": reply.code,
            "enhanced": reply.enhanced,
        },
    )
    return True  # out of rotation, whoever paused it first


def _pattern_pause(session: Session, settings: Settings, account_id: int, now: datetime) -> bool:
    pattern = guards.check_account_pattern(session, settings, account_id, now)
    if pattern is None:
        return False
    set_account_status(
        session,
        account_id,
        AccountStatus.PAUSED,
        until=now + timedelta(seconds=settings.failure_pause_seconds),
        reason=pattern.reason,
        event=EventType.ACCOUNT_PAUSED,
        by=guards.GUARD,
        details=pattern.details,
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
    by: str,
    details: dict[str, Any],
) -> bool:
    """active -> paused/disabled, once: a second worker seeing the same failure changes nothing.
    `by` and `details` record who paused it and the figures (accounts.paused_by/pause_details)."""
    figures = {"reason": reason, "until": until.isoformat() if until else None, **details}
    changed = session.execute(
        SET_ACCOUNT_STATUS,
        {
            "id": account_id,
            "status": status.value,
            "until": until,
            "reason": reason,
            "event": event.value,
            "by": by,
            "data": json.dumps(figures),
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
        client_id=changed.client_id,
    )
    return True
