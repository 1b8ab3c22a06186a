"""/suppressions: search, add an address or a whole domain, remove (through a confirmation
page; a person's own opt-out only when the operator confirms they asked to be mailed
again), import a CSV, export one. On app.services.suppressions, as the API."""

from __future__ import annotations

import logging
from typing import Any, BinaryIO, cast

from flask import (
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from app.db import unit_of_work
from app.errors import DomainError, InvalidInput, NotFound
from app.models import SuppressionKind, SuppressionReason
from app.services import suppressions as suppression_service
from app.services.suppression_files import export_suppressions, import_suppressions
from app.web import web
from app.web.clients import current_client_id

log = logging.getLogger(__name__)

PAGE_SIZE = 100
ERRORS_SHOWN = 50


def _page(
    *, errors: dict[str, str] | None = None, report: Any = None, status: int = 200
) -> tuple[str, int]:
    query = request.args.get("q", "").strip()
    cursor = request.args.get("cursor", "")
    with unit_of_work() as session:
        rows, next_cursor = suppression_service.list_suppressions(
            session,
            client_id=current_client_id(),
            query=query or None,
            after_id=int(cursor) if cursor.isdigit() else None,
            limit=PAGE_SIZE,
        )
        items = [
            {
                "value": r.value,
                "kind": r.kind,
                "reason": r.reason,
                "source": r.source,
                "scope": "global" if r.client_id is None else "client",
                "created_at": r.created_at,
            }
            for r in rows
        ]
    page = render_template(
        "web/suppressions.html",
        active="suppressions",
        items=items,
        query=query,
        next_cursor=next_cursor,
        errors=errors or {},
        report=report,
        errors_shown=ERRORS_SHOWN,
        form=request.form if request.method == "POST" else {},
    )
    return page, status


@web.route("/suppressions")
def suppressions() -> tuple[str, int]:
    return _page()


@web.route("/suppressions", methods=["POST"])
def add_suppression() -> BaseResponse | tuple[str, int]:
    raw = request.form.get("value", "").strip()
    kind = SuppressionKind.DOMAIN if request.form.get("kind") == "domain" else SuppressionKind.EMAIL
    if not raw:
        return _page(errors={"value": "Enter an address or a domain."}, status=422)
    if kind is SuppressionKind.EMAIL and "@" not in raw:
        return _page(
            errors={"value": f"{raw} is not an address; choose “Whole domain” for a domain."},
            status=422,
        )
    client_id = _owner(request.form.get("everyone") == "on")
    try:
        with unit_of_work() as session:
            row, created = suppression_service.add_suppression(
                session, kind, raw, reason=SuppressionReason.MANUAL.value, source="web",
                client_id=client_id,
            )  # fmt: skip
            value = row.value
    except InvalidInput as exc:
        return _page(errors={"value": exc.message.split(": ", 1)[-1]}, status=422)
    if created:
        flash(f"{value} is suppressed: no campaign will send to it.", "success")
    else:
        flash(f"{value} was already suppressed.", "info")
    return redirect(url_for("web.suppressions", q=value))


def _owner(everyone: bool) -> int | None:
    """The operator's block is the current client's; an admin may make it everyone's."""
    if everyone and getattr(current_user, "is_admin", False):
        return None
    return current_client_id()


@web.route("/suppressions/remove", methods=["GET", "POST"])
def remove_suppression() -> BaseResponse | str | tuple[str, int]:
    """GET: what would be lifted, and what to confirm; POST: lift it."""
    value = (request.values.get("value") or "").strip()
    with unit_of_work() as session:
        row = suppression_service.find_suppression(
            session, value, client_id=current_client_id(), global_first=_is_admin()
        )
        shown = {
            "value": row.value,
            "kind": row.kind,
            "reason": row.reason,
            "source": row.source,
            "scope": "global" if row.client_id is None else "client",
            "created_at": row.created_at,
            "opt_out": row.reason in suppression_service.OPT_OUT_REASONS,
        }
    error = None
    if request.method == "POST":
        confirmed = request.form.get("confirm") == "on"
        if shown["opt_out"] and not confirmed:
            error = "Tick the box to confirm the person asked to be mailed again."
        else:
            try:
                with unit_of_work() as session:
                    suppression_service.delete_suppression(
                        session,
                        value,
                        client_id=current_client_id(),
                        is_admin=_is_admin(),
                        confirmed=confirmed,
                        who={"user_id": current_user.id, "user_email": current_user.email},
                    )
            except NotFound:
                raise
            except DomainError as exc:
                error = exc.message
            else:
                flash(f"{shown['value']} is no longer suppressed.", "success")
                return redirect(url_for("web.suppressions"))
    page = render_template(
        "web/suppression_remove.html", active="suppressions", s=shown, error=error
    )
    return (page, 409) if error else page


def _is_admin() -> bool:
    return bool(getattr(current_user, "is_admin", False))


@web.route("/suppressions/import", methods=["POST"])
def import_suppression_file() -> tuple[str, int]:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page(errors={"file": "Choose a CSV file."}, status=422)
    if not upload.filename.lower().endswith((".csv", ".txt")):
        return _page(errors={"file": f"{upload.filename} is not a CSV file."}, status=422)
    settings = current_app.extensions["settings"]
    try:
        with unit_of_work() as session:
            report = import_suppressions(
                session,
                cast(BinaryIO, upload.stream),
                client_id=_owner(request.form.get("everyone") == "on"),
                reason=SuppressionReason.MANUAL.value,
                max_bytes=settings.import_max_bytes,
                max_rows=settings.import_max_rows,
            )
    except DomainError as exc:
        return _page(errors={"file": exc.message}, status=exc.status)
    log.info("web.suppressions_imported", extra={"added": report.added})
    return _page(report=report)


@web.route("/suppressions/export.csv")
def export_suppression_file() -> Response:
    client_id = current_client_id()

    def lines() -> Any:
        with unit_of_work() as session:
            yield from export_suppressions(session, client_id=client_id)

    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )
