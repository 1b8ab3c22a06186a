"""What the DNS checks say about an account for its warm-up: a blacklist listing of its
domain or IP, and its domain's SPF and DKIM (app.services.blacklist, .sender_domains)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import Account
from app.services.blacklist import account_blacklisted
from app.services.sender_domains import domain_auth_passing
from app.settings import Settings


def dns_problems(session: Session, account: Account, settings: Settings) -> list[str]:
    problems = []
    if account_blacklisted(session, account.id, settings=settings):
        problems.append("its domain or IP is listed on a blacklist")
    if settings.is_freemail(account.sending_domain):
        return problems  # a freemail domain's DNS is its provider's, not ours to fix
    passing = domain_auth_passing(session, account.sending_domain)
    if passing is False:
        problems.append(f"SPF or DKIM of {account.sending_domain} fails")
    elif passing is None:
        problems.append(
            f"SPF and DKIM of {account.sending_domain} not shown passing yet (no verdict)"
        )
    return problems
