"""/campaigns/<id>: one campaign's figures, chart, forecast, events and recipients."""

from __future__ import annotations

from flask import render_template

from app.db import unit_of_work
from app.services import campaigns as campaign_service
from app.web import web
from app.web.campaigns import progress_of
from app.web.clients import current_client_id


@web.route("/campaigns/<int:campaign_id>")
def campaign(campaign_id: int) -> str:
    with unit_of_work() as session:
        view = campaign_service.get_campaign(session, campaign_id, client_id=current_client_id())
    return render_template(
        "web/campaign.html", active="campaigns", c=view, progress=progress_of(view["counts"])
    )
