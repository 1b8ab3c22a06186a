"""Account health checks: the SMTP probe (rotator.probe) with the account's own server,
security and credentials, and what its result does.

- Every result is kept (health_checks) and shown on the account (last_health_*); the
  dispatcher leaves out accounts whose last check failed.
- A paused account whose pause has run out (paused_until <= now, whoever set it: the
  failure counter, a policy pause, a blacklist delisting, an operator's timed pause)
  returns to rotation only when its check passes. When the check fails it stays paused for
  another HEALTH_CHECK_INTERVAL_SECONDS, paused_by 'health', with the failure as reason.
- An untimed pause (paused_until NULL: an operator's, or one that waits for a person) is
  checked and shown, never lifted here.

The probe runs outside any transaction: it may take SMTP_TIMEOUT-bounded seconds per step,
and no row is locked meanwhile. record_check() then writes with compare-and-set UPDATEs,
so a pause or a resume that happened during the probe is never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from app.models import Account, HealthCheck
from app.services import smtp_endpoints
from app.settings import Settings
from rotator.endpoint import SmtpEndpoint
from rotator.probe import ProbeResult, probe

# Through SELECT FROM accounts: an account deleted while its probe ran records nothing.
INSERT_CHECK = text(
    """
    INSERT INTO health_checks (account_id, ok, stage, error, transcript, duration_ms, checked_at)
    SELECT id, :ok, :stage, :error, CAST(:transcript AS jsonb), :duration_ms, :now
    FROM accounts WHERE id = :id
    RETURNING id
    """
)

STORE_RESULT = text(
    """
    UPDATE accounts
    SET last_health_check_at = :now, last_health_ok = :ok, last_health_error = :error
    WHERE id = :id
    """
)

RESUME_PASSED = text(
    """
    WITH resumed AS (
        UPDATE accounts
        SET status = 'active', paused_until = NULL, paused_reason = NULL, paused_by = NULL,
            pause_details = NULL, consecutive_failures = 0, updated_at = :now
        WHERE id = :id AND status = 'paused' AND paused_until IS NOT NULL
          AND paused_until <= :now
        RETURNING id, client_id
    ), logged AS (
        INSERT INTO events (type, account_id, client_id, data)
        SELECT 'account_resumed', id, client_id,
               jsonb_build_object('reason', 'pause over and health check passed')
        FROM resumed
    )
    SELECT id FROM resumed
    """
)

KEEP_PAUSED = text(
    """
    WITH kept AS (
        UPDATE accounts
        SET paused_until = :until, paused_by = 'health', paused_reason = :reason,
            pause_details = CAST(:details AS jsonb), updated_at = :now
        WHERE id = :id AND status = 'paused' AND paused_until IS NOT NULL
          AND paused_until <= :now
        RETURNING id, client_id
    ), logged AS (
        INSERT INTO events (type, account_id, client_id, data)
        SELECT 'account_paused', id, client_id, CAST(:details AS jsonb) FROM kept
    )
    SELECT id FROM kept
    """
)

PAUSE_BEFORE = text(
    "SELECT paused_reason, paused_by FROM accounts WHERE id = :id AND status = 'paused'"
)


@dataclass(frozen=True)
class CheckOutcome:
    account_id: int
    result: ProbeResult
    resumed: bool = False  # a pause that had run out ended: the check passed
    kept_paused: bool = False  # a pause that had run out goes on: the check failed


def account_endpoint(settings: Settings, account: Account) -> SmtpEndpoint:
    """The server the send path reaches for this account (SANDBOX_SMTP_URL when set), with
    HEALTH_CHECK_TIMEOUT_SECONDS per step."""
    return smtp_endpoints.account_endpoint(
        settings, account, timeout=settings.health_check_timeout_seconds
    )


def probe_account(settings: Settings, endpoint: SmtpEndpoint, email: str) -> ProbeResult:
    """The SMTP side alone (no database): safe to run in a thread per account."""
    return probe(endpoint, test_send_from=email if settings.health_check_test_send else None)


def record_check(
    session: Session, settings: Settings, account_id: int, result: ProbeResult, *, now: datetime
) -> CheckOutcome:
    row = {
        "id": account_id,
        "now": now,
        "ok": result.ok,
        "stage": result.stage,
        "error": result.error,
        "transcript": json.dumps(result.transcript),
        "duration_ms": result.duration_ms,
    }
    if session.execute(INSERT_CHECK, row).first() is None:
        return CheckOutcome(account_id, result)  # the account was deleted meanwhile
    session.execute(
        STORE_RESULT, {"id": account_id, "now": now, "ok": result.ok, "error": result.error}
    )
    if result.ok:
        resumed = session.execute(RESUME_PASSED, {"id": account_id, "now": now}).first()
        return CheckOutcome(account_id, result, resumed=resumed is not None)
    before = session.execute(PAUSE_BEFORE, {"id": account_id}).first()
    details = {
        "reason": "health check failed",
        "stage": result.stage,
        "error": result.error,
        "previous_reason": before.paused_reason if before else None,
        "previous_by": before.paused_by if before else None,
    }
    until = now + timedelta(seconds=settings.health_check_interval_seconds)
    kept = session.execute(
        KEEP_PAUSED,
        {
            "id": account_id,
            "now": now,
            "until": until,
            "reason": f"health check failed at {result.stage}: {result.error}"[:1000],
            "details": json.dumps(details),
        },
    ).first()
    return CheckOutcome(account_id, result, kept_paused=kept is not None)


def prune_history(session: Session, settings: Settings, *, now: datetime) -> int:
    cutoff = now - timedelta(days=settings.health_history_days)
    return session.execute(delete(HealthCheck).where(HealthCheck.checked_at < cutoff)).rowcount
