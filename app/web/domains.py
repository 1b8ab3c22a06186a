"""/domains: per own sending domain of the client's accounts, the latest SPF / DKIM / DMARC /
MX (and PTR for own IPs) verdicts with what was found and the fix to publish
(app.services.sender_domains.list_domains, as GET /api/v1/domains), and its blacklist
standing; "not checked yet" until the daily check has run for it. Freemail From domains
(gmail.com ...) are listed apart: their DNS is the provider's."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from app.db import unit_of_work
from app.services import accounts as account_service
from app.services.blacklist import latest_checks
from app.services.sender_domains import ITEMS, list_domains
from app.web import web
from app.web.clients import current_client_id


@web.route("/domains")
def domains() -> str:
    settings = current_app.extensions["settings"]
    client_id = current_client_id()
    with unit_of_work() as session:
        own = list_domains(session, settings, client_id=client_id)
        accounts = account_service.list_accounts(session, client_id=client_id)
        names = {a.id: a.name for a in accounts}
        listed = {c.target: c for c in latest_checks(session, [d["domain"] for d in own])}
        freemail = sorted(
            {a.sending_domain for a in accounts if settings.is_freemail(a.sending_domain)}
        )
    rows = [
        {
            "domain": d["domain"],
            "accounts": [names[i] for i in d["accounts"] if i in names],
            "checked_at": d["checked_at"],
            "status": _overall(d),
            "items": {item: d[item] for item in ITEMS if d.get(item)},
            "blacklist": listed.get(d["domain"]),
        }
        for d in own
    ]
    return render_template("web/domains.html", active="domains", rows=rows, freemail=freemail)


def _overall(domain: dict[str, Any]) -> str:
    if domain["checked_at"] is None:
        return "not checked yet"
    verdicts = {(domain.get(i) or {}).get("status") for i in ("spf", "dkim", "dmarc")}
    if "fail" in verdicts:
        return "fail"
    return "pass" if verdicts == {"pass"} else "unknown"
