"""/domains: per sending domain of the client's accounts, the latest SPF / DKIM / DMARC /
MX (and PTR for own IPs) check with the fix to publish, and its blacklist standing; "not
checked yet" until the sender-authentication check has run for it."""

from __future__ import annotations

from collections import defaultdict

from flask import current_app, render_template

from app.db import unit_of_work
from app.services import accounts as account_service
from app.services.blacklist import latest_checks
from app.web import web
from app.web.clients import current_client_id
from app.web.sender_status import AUTH_ITEMS, auth_states


@web.route("/domains")
def domains() -> str:
    settings = current_app.extensions["settings"]
    with unit_of_work() as session:
        accounts = account_service.list_accounts(session, client_id=current_client_id())
        by_domain: dict[str, list[str]] = defaultdict(list)
        for account in accounts:
            by_domain[account.sending_domain.lower()].append(account.name)
        auth = auth_states(session, by_domain)
        listed = {c.target: c for c in latest_checks(session, sorted(by_domain))}
        rows = [
            {
                "domain": domain,
                "accounts": names,
                "auth": auth[domain],
                "blacklist": listed.get(domain),
                "freemail": settings.is_freemail(domain),
            }
            for domain, names in sorted(by_domain.items())
        ]
    return render_template("web/domains.html", active="domains", rows=rows, items=AUTH_ITEMS)
