"""/campaigns/<id>: one campaign's figures, a chart of its sends, the forecast against what
happened, the latest events and its recipients; its schedule page (the wizard's last
step) and its start / pause / resume / cancel buttons. All through app/services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.db import unit_of_work
from app.errors import DomainError
from app.models import RecipientStatus
from app.services import campaign_activity, forecast_snapshots
from app.services import campaigns as campaign_service
from app.services.forecast import campaign_forecast
from app.web import web
from app.web.campaigns import SHOWN_COUNTS, progress_of
from app.web.clients import current_client_id

RECIPIENTS_PAGE = 50
ACTIONS = {
    "start": "Campaign started: the dispatcher picks it up within seconds.",
    "pause": "Campaign paused: nothing more is claimed for sending.",
    "resume": "Campaign resumed.",
    "cancel": "Campaign cancelled: nothing more will be sent.",
}
LIVE_STATUSES = ("running",)
# Hourly bars while the campaign is young; daily ones after this.
HOURLY_FOR = timedelta(hours=48)


def _forecast(campaign_id: int) -> dict[str, Any]:
    app = current_app
    with unit_of_work() as session:
        return campaign_forecast(
            session,
            campaign_id,
            app.extensions["settings"],
            app.extensions["redis"],
            client_id=current_client_id(),
        )


def _live(campaign_id: int) -> dict[str, Any]:
    client_id = current_client_id()
    with unit_of_work() as session:
        view = campaign_service.get_campaign(session, campaign_id, client_id=client_id)
        events = campaign_activity.latest_events(session, campaign_id, client_id=client_id)
    return {
        "c": view,
        "progress": progress_of(view["counts"]),
        "events": events,
        "shown_counts": SHOWN_COUNTS,
        "polling": view["status"] in LIVE_STATUSES,
    }


@web.route("/campaigns/<int:campaign_id>")
def campaign(campaign_id: int) -> str:
    live = _live(campaign_id)
    status = request.args.get("status") or None
    if status not in {s.value for s in RecipientStatus}:
        status = None
    search = (request.args.get("q") or "").strip()[:320] or None
    after = request.args.get("after", "")
    with unit_of_work() as session:
        recipients, next_id = campaign_activity.find_recipients(
            session,
            campaign_id,
            client_id=current_client_id(),
            status=status,
            search=search,
            after_id=int(after) if after.isdigit() else None,
            limit=RECIPIENTS_PAGE,
        )
        snapshot = forecast_snapshots.latest(session, campaign_id)
        sent = campaign_activity.sent_per_day(session, campaign_id, client_id=current_client_id())
    open_campaign = live["c"]["status"] not in ("completed", "cancelled")
    forecast = _forecast(campaign_id) if open_campaign else None
    return render_template(
        "web/campaign.html",
        active="campaigns",
        **live,
        forecast=forecast,
        against=_against(snapshot, sent),
        snapshot=snapshot,
        recipients=recipients,
        next_id=next_id,
        status=status,
        search=search or "",
        statuses=[s.value for s in RecipientStatus],
    )


def _against(snapshot: Any, sent: dict[Any, int]) -> list[dict[str, Any]]:
    """Per day from the start: what the schedule said, what was sent."""
    planned = {d["date"]: d["sends"] for d in snapshot.days} if snapshot else {}
    by_day = {d.isoformat(): n for d, n in sent.items()}
    days = sorted({*planned, *by_day})
    return [{"date": day, "planned": planned.get(day), "sent": by_day.get(day, 0)} for day in days]


@web.route("/campaigns/<int:campaign_id>/live")
def campaign_live(campaign_id: int) -> str:
    """The figures and latest events, polled by htmx while the campaign runs."""
    return render_template("web/_campaign_live.html", **_live(campaign_id))


@web.route("/campaigns/<int:campaign_id>/chart.json")
def campaign_chart(campaign_id: int) -> Response:
    """Sends per hour (the first two days) or per day, and per day the forecast's plan."""
    client_id = current_client_id()
    with unit_of_work() as session:
        view = campaign_service.get_campaign(session, campaign_id, client_id=client_id)
        started = view["started_at"] or view["created_at"]
        young = datetime.now(UTC) - started < HOURLY_FOR
        bucket: campaign_activity.Bucket = "hour" if young else "day"
        rows = campaign_activity.activity(session, campaign_id, client_id=client_id, bucket=bucket)
    return jsonify(
        {
            "bucket": bucket,
            "points": [
                {
                    "at": r["at"].strftime("%Y-%m-%dT%H:%M:00Z"),
                    **{k: r[k] for k in campaign_activity.OUTCOMES},
                }
                for r in rows
            ],
        }
    )


@web.route("/campaigns/<int:campaign_id>/schedule")
def campaign_schedule(campaign_id: int) -> str:
    """The wizard's last step: when the draft will be sent, before it is started."""
    with unit_of_work() as session:
        view = campaign_service.get_campaign(session, campaign_id, client_id=current_client_id())
    return render_template(
        "web/campaign_schedule.html",
        active="campaigns",
        c=view,
        forecast=_forecast(campaign_id),
        steps=[
            ("upload", "Upload"),
            ("columns", "Columns"),
            ("check", "Check"),
            ("message", "Message"),
            ("senders", "Senders"),
            ("schedule", "Schedule"),
        ],
        step="schedule",
    )


@web.route(
    "/campaigns/<int:campaign_id>/<any(start, pause, resume, cancel):action>", methods=["POST"]
)
def campaign_action(campaign_id: int, action: str) -> Response:
    client_id = current_client_id()
    # The schedule it starts with, kept to compare with what it then sends (a resume keeps
    # the plan it started with: that is what the operator was promised).
    planned = _forecast(campaign_id) if action == "start" else None
    try:
        with unit_of_work() as session:
            campaign_service.change_status(session, campaign_id, action, client_id=client_id)
            if planned is not None:
                forecast_snapshots.keep(session, campaign_id, planned)
    except DomainError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        flash(ACTIONS[action], "success")
    return redirect(url_for("web.campaign", campaign_id=campaign_id))
