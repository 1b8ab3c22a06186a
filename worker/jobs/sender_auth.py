"""A receiving server refused a message because the sending domain failed SPF, DKIM or DMARC.

That is a fact about the From domain's DNS, so every account sending as that domain meets
it: all active accounts on the domain are paused at once, with a reason naming the domain
and what failed, and ONE alert says how to fix it. A freemail From domain (gmail.com,
outlook.com ...) is shared with strangers and its DNS is not ours: only this account is
paused, and the fix is to send that address through its own provider.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.settings import Settings
from rotator.classify import SmtpReply, failed_checks
from worker.jobs import alerts

log = logging.getLogger(__name__)

PAUSE_ACCOUNTS = text(
    """
    WITH changed AS (
        UPDATE accounts
        SET status = 'paused', paused_until = :until, paused_reason = :reason,
            paused_by = 'sender_auth', pause_details = CAST(:data AS jsonb), updated_at = now()
        WHERE status = 'active'
          AND (id = :account_id OR (:whole_domain AND sending_domain = :domain
               AND client_id = (SELECT client_id FROM accounts WHERE id = :account_id)))
        RETURNING id, client_id
    )
    INSERT INTO events (type, account_id, client_id, data)
    SELECT 'account_paused', id, client_id, CAST(:data AS jsonb) FROM changed
    RETURNING account_id, client_id
    """
)

_FIX = {
    "SPF": "publish (or correct) the SPF record of {domain}: a TXT record "
    '"v=spf1 include:<your provider\'s SPF domain> ~all" that covers every server you send '
    "through",
    "DKIM": "turn on DKIM signing for {domain} at the provider and publish its public key "
    "(the TXT or CNAME record <selector>._domainkey.{domain} the provider gives you)",
    "DMARC": "make SPF or DKIM pass for {domain} itself (aligned with the From address) and "
    'publish a DMARC record: TXT _dmarc.{domain} "v=DMARC1; p=none; rua=mailto:<you>"',
    "null MX": "{domain} publishes a null MX (RFC 7505): remove it or send from a domain "
    "that receives mail",
}


def pause_sending_domain(
    session: Session,
    settings: Settings,
    *,
    account_id: int,
    sending_domain: str,
    reply: SmtpReply,
    now: datetime,
) -> list[int]:
    """Pauses the accounts of `account_id`'s client on `sending_domain` (only `account_id`
    for freemail); returns the ids that changed. Accounts already paused or disabled, and
    other clients' accounts, are left as they are."""
    checks = failed_checks(reply)
    named = "/".join(checks)
    whole_domain = not settings.is_freemail(sending_domain)
    reason = (
        f"sending domain {sending_domain} failed {named} at a receiving server: {str(reply)[:200]}"
    )
    until = now + timedelta(seconds=settings.policy_pause_seconds)
    data = {
        "reason": reason,
        "sending_domain": sending_domain,
        "failed": list(checks),
        "until": until.isoformat(),
        "smtp_code": reply.code,
        "enhanced": reply.enhanced,
        "whole_domain": whole_domain,
    }
    rows = list(
        session.execute(
            PAUSE_ACCOUNTS,
            {
                "account_id": account_id,
                "whole_domain": whole_domain,
                "domain": sending_domain,
                "until": until,
                "reason": reason,
                "data": json.dumps(data),
            },
        )
    )
    paused = [row.account_id for row in rows]
    if not paused:
        return paused
    log.warning(
        "sending_domain.paused",
        extra={"sending_domain": sending_domain, "accounts": paused, "failed": named},
    )
    text_ = _alert_text(sending_domain, checks, paused, whole_domain, reason, until)
    # Per client: the domain pause acts within the client whose send was refused.
    client_id = rows[0].client_id
    alerts.notify(f"sender-auth:{client_id}:{sending_domain}", text_, client_id=client_id)
    return paused


def _alert_text(
    domain: str,
    checks: tuple[str, ...],
    paused: list[int],
    whole_domain: bool,
    reason: str,
    until: datetime,
) -> str:
    who = (
        f"all {len(paused)} active account(s) on {domain} ({', '.join(map(str, paused))})"
        if whole_domain
        else f"account {paused[0]} (From {domain}, a freemail domain: only this account)"
    )
    if whole_domain:
        fixes = "; ".join(_FIX[c].format(domain=domain) for c in checks if c in _FIX)
    else:
        fixes = (
            f"{domain} addresses pass SPF/DKIM/DMARC only when sent through {domain}'s own "
            "servers: send this account through its own provider, or use an address on a "
            "domain you control"
        )
    return (
        f"{reason}. Paused {who} until {until:%Y-%m-%d %H:%M} UTC. Fix: {fixes}. "
        "Then resume the accounts."
    )
