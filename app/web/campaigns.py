"""/campaigns: every campaign of the current client with its progress; the table body is
a fragment htmx polls while a campaign runs."""

from __future__ import annotations

from typing import Any

from flask import render_template

from app.db import unit_of_work
from app.models import FINAL_STATUSES
from app.services import campaigns as campaign_service
from app.web import web
from app.web.clients import current_client_id

LIST_LIMIT = 200
SHOWN_COUNTS = ("sent", "deferred", "bounced", "unsubscribed", "failed", "unknown")
ACTIVE = ("running",)


def progress_of(counts: dict[str, int]) -> dict[str, int]:
    """done = sent or otherwise final (bounced, failed, suppressed, unsubscribed, unknown)."""
    total = sum(counts.values())
    done = sum(n for status, n in counts.items() if status in FINAL_STATUSES)
    return {"done": done, "total": total}


def _campaign_rows() -> list[dict[str, Any]]:
    with unit_of_work() as session:
        items, _ = campaign_service.list_campaigns(
            session, client_id=current_client_id(), before_id=None, limit=LIST_LIMIT
        )
    return [{**c, "progress": progress_of(c["counts"])} for c in items]


@web.route("/campaigns")
def campaigns() -> str:
    rows = _campaign_rows()
    return render_template(
        "web/campaigns.html",
        active="campaigns",
        rows=rows,
        shown_counts=SHOWN_COUNTS,
        polling=any(r["status"] in ACTIVE for r in rows),
    )


@web.route("/campaigns/rows")
def campaigns_rows() -> str:
    rows = _campaign_rows()
    polling = any(r["status"] in ACTIVE for r in rows)
    return render_template(
        "web/_campaigns_rows.html", rows=rows, shown_counts=SHOWN_COUNTS, polling=polling
    )
