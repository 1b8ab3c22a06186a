"""/campaigns/new: the new-campaign wizard."""

from __future__ import annotations

from flask import render_template

from app.web import web


@web.route("/campaigns/new")
def new_campaign() -> str:
    return render_template("web/campaign_new.html", active="campaigns")
