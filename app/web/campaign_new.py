"""/campaigns/new: the new-campaign wizard, one step per page.

upload -> columns (the email column, fields, first rows) -> check (the validation report,
rejected rows as CSV) -> message (subject, bodies, a live preview) -> senders (tags or
accounts, window, daily cap), which creates the draft -> /campaigns/<id>/schedule (the
forecast; start, or keep as a draft). Until the draft is created nothing is stored but the
file and the choices (app/web/wizard_state.py); every check is a rolled-back run of the
real service (app/web/campaign_drafts.py)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import marshmallow as ma
from flask import Response as FlaskResponse
from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from app.api.schemas.campaigns import CampaignFieldsSchema
from app.errors import DomainError, InvalidInput
from app.web import campaign_drafts, web, wizard_state
from app.web.campaign_senders import sender_choices, senders_from_form, window_from_form
from app.web.clients import current_client_id
from app.web.csv_peek import Peek, peek
from app.web.forms import errors_of
from app.web.wizard_state import Wizard

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
STEPS = [
    ("upload", "Upload"),
    ("columns", "Columns"),
    ("check", "Check"),
    ("message", "Message"),
    ("senders", "Senders"),
    ("schedule", "Schedule"),
]
COPY_CHUNK = 1 << 20


def _page(template: str, step: str, **context: Any) -> str:
    return render_template(
        template, active="campaigns", steps=STEPS, step=step, max_bytes=_max_bytes(), **context
    )


def _wizard_or_restart() -> Wizard | Response:
    wizard = wizard_state.current(current_client_id())
    if wizard is None:
        flash("Start by uploading the CSV of your contacts.", "info")
        return redirect(url_for("web.new_campaign"))
    return wizard


@web.route("/campaigns/new", methods=["GET", "POST"])
def new_campaign() -> str | Response | tuple[str, int]:
    if request.method == "GET":
        return _page(
            "web/new_upload.html",
            "upload",
            wizard=wizard_state.current(current_client_id()),
            error=None,
        )
    upload = request.files.get("file")
    error = _upload_problem(upload)
    if error is None:
        assert upload is not None
        wizard = wizard_state.start(
            PurePath(upload.filename or "contacts.csv").name, current_client_id()
        )
        _store(upload, wizard)
        try:
            found = peek(wizard.path, _max_bytes())
        except DomainError as exc:
            wizard.discard()
            error = f"{wizard.filename}: {exc.message}"
        else:
            wizard.email_column = found.guess
            wizard.save()
            return redirect(url_for("web.new_campaign_columns"))
    return _page("web/new_upload.html", "upload", wizard=None, error=error), 422


def _upload_problem(upload: FileStorage | None) -> str | None:
    if upload is None or not upload.filename:
        return "Choose the CSV file of your contacts."
    name = PurePath(upload.filename).name
    suffix = PurePath(name).suffix.lower()
    if suffix not in CSV_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "not a CSV file"
        return (
            f"{name} is {kind}, not CSV. Export the contacts as CSV (comma- or "
            "semicolon-separated values) from your spreadsheet or contacts tool and upload "
            "that."
        )
    return None


def _store(upload: FileStorage, wizard: Wizard) -> None:
    limit = _max_bytes()
    written = 0
    with wizard.path.open("wb") as out:
        while chunk := upload.stream.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit + 1:
                break  # the importer names the limit; the rest is not needed for that
            out.write(chunk)


def _max_bytes() -> int:
    return int(current_app.extensions["settings"].import_max_bytes)


@web.route("/campaigns/new/columns", methods=["GET", "POST"])
def new_campaign_columns() -> str | Response | tuple[str, int]:
    wizard = _wizard_or_restart()
    if isinstance(wizard, Response):
        return wizard
    errors: dict[str, str] = {}
    if request.method == "POST":
        chosen = request.form.get("email_column", "").strip()
        try:
            if not chosen:
                raise InvalidInput(
                    "Choose the column that holds the email addresses.", field="email_column"
                )
            found = peek(wizard.path, _max_bytes(), chosen)
            wizard.email_column = chosen
            wizard.path.with_suffix(".sample.csv").unlink(missing_ok=True)
            wizard.fields = _template_fields(found, chosen)
            wizard.report = campaign_drafts.validation_report(wizard, wizard.fields)
        except DomainError as exc:
            errors = errors_of(exc)
        else:
            wizard.save()
            return redirect(url_for("web.new_campaign_check"))
    try:
        found = peek(wizard.path, _max_bytes(), wizard.email_column)
    except DomainError as exc:
        found = peek(wizard.path, _max_bytes())
        errors.setdefault("email_column", exc.message)
    page = _page("web/new_columns.html", "columns", wizard=wizard, peek=found, errors=errors)
    return (page, 422) if errors else page


def _template_fields(found: Peek, email_column: str) -> list[str]:
    from app.services.csv_headers import same_header

    return [
        name
        for column, name in zip(found.columns, found.fields, strict=True)
        if not same_header(column, email_column)
    ]


@web.route("/campaigns/new/check")
def new_campaign_check() -> str | Response:
    wizard = _wizard_or_restart()
    if isinstance(wizard, Response):
        return wizard
    if wizard.report is None:
        return redirect(url_for("web.new_campaign_columns"))
    return _page("web/new_check.html", "check", wizard=wizard, report=wizard.report)


@web.route("/campaigns/new/rejected.csv")
def new_campaign_rejected() -> Response:
    wizard = _wizard_or_restart()
    if isinstance(wizard, Response):
        return wizard
    name = PurePath(wizard.filename).stem or "contacts"
    return FlaskResponse(
        stream_with_context(campaign_drafts.rejected_rows(wizard)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_safe(name)}-rejected.csv"'},
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "contacts"


MESSAGE_FIELDS = ("name", "subject", "body_text", "body_html", "from_name")
SENDER_FIELDS = frozenset(
    {"account_tags", "account_ids", "daily_cap", "window", "window.timezone", "window.days",
     "window.start_hour", "window.end_hour"}
)  # fmt: skip


def _message_data(wizard: Wizard, form: Any) -> dict[str, Any]:
    values = {key: form.get(key, "") for key in MESSAGE_FIELDS}
    data = campaign_drafts.campaign_data(wizard, **values)
    data["body_html"] = values["body_html"] or None
    data["from_name"] = values["from_name"] or None
    return data


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """The API's own schema checks (lengths, one line, the window ...)."""
    shown = {k: v for k, v in data.items() if v is not None and v != {}}
    loaded: dict[str, Any] = CampaignFieldsSchema().load(shown)
    return loaded


@web.route("/campaigns/new/message", methods=["GET", "POST"])
def new_campaign_message() -> str | Response | tuple[str, int]:
    wizard = _wizard_or_restart()
    if isinstance(wizard, Response):
        return wizard
    if wizard.report is None:
        return redirect(url_for("web.new_campaign_columns"))
    errors: dict[str, str] = {}
    values = {key: getattr(wizard, key) for key in MESSAGE_FIELDS}
    if not values["name"]:
        values["name"] = PurePath(wizard.filename).stem.replace("_", " ")
    if request.method == "POST":
        values = {key: request.form.get(key, "") for key in MESSAGE_FIELDS}
        data = _message_data(wizard, request.form)
        try:
            _checked(data)
            result = campaign_drafts.preview(wizard, data, None)
            if result.get("problem") and result.get("chosen"):
                raise InvalidInput(result["problem"], field="body_text")
        except ma.ValidationError as exc:
            errors = errors_of(exc)
        except DomainError as exc:
            errors = errors_of(exc)
        else:
            for key in MESSAGE_FIELDS:
                setattr(wizard, key, values[key])
            wizard.save()
            return redirect(url_for("web.new_campaign_senders"))
    page = _page("web/new_message.html", "message", wizard=wizard, values=values, errors=errors)
    return (page, 422) if errors else page


@web.route("/campaigns/new/preview", methods=["POST"])
def new_campaign_preview() -> str:
    """The live preview fragment (htmx posts the message form here as it is typed)."""
    wizard = wizard_state.current(current_client_id())
    if wizard is None or wizard.report is None:
        return render_template(
            "web/_preview.html", result={"problem": "The upload has expired: start again."}
        )
    data = _message_data(wizard, request.form)
    try:
        _checked({**data, "name": data["name"] or "preview"})
        result = campaign_drafts.preview(wizard, data, request.form.get("preview_email"))
    except ma.ValidationError as exc:
        result = {"problem": "; ".join(f"{k}: {v}" for k, v in errors_of(exc).items())}
    except DomainError as exc:
        result = {"problem": exc.message}
    return render_template("web/_preview.html", result=result)


@web.route("/campaigns/new/senders", methods=["GET", "POST"])
def new_campaign_senders() -> str | Response | tuple[str, int]:
    wizard = _wizard_or_restart()
    if isinstance(wizard, Response):
        return wizard
    if not wizard.subject:
        return redirect(url_for("web.new_campaign_message"))
    errors: dict[str, str] = {}
    form: Any = request.form if request.method == "POST" else None
    if form is not None:
        try:
            wizard.senders = senders_from_form(form)
            wizard.window = window_from_form(form)
            cap = form.get("daily_cap", "").strip()
            wizard.daily_cap = int(cap) if cap.isdigit() else None
            if cap and not cap.isdigit():
                raise InvalidInput("a whole number of messages a day, or empty", field="daily_cap")
            _checked(campaign_drafts.campaign_data(wizard))
            campaign_id, report = campaign_drafts.create(wizard)
        except ma.ValidationError as exc:
            errors = errors_of(exc)
        except DomainError as exc:
            errors = errors_of(exc)
        else:
            wizard.discard()
            flash(
                f"Draft saved with {report['imported']:,} recipients. Check the schedule, "
                "then start it.",
                "success",
            )
            return redirect(url_for("web.campaign_schedule", campaign_id=campaign_id))
    # A refusal about an earlier step (the whole file against the templates, say) is shown
    # at the top of this one, naming its field.
    for key in [k for k in errors if k not in SENDER_FIELDS]:
        message = errors.pop(key)
        errors["_form"] = f"{key.replace('_', ' ')}: {message}" if key != "_form" else message
    page = _page(
        "web/new_senders.html",
        "senders",
        wizard=wizard,
        choices=sender_choices(current_client_id()),
        form=form,
        errors=errors,
    )
    return (page, 422) if errors else page


@web.route("/campaigns/new/cancel", methods=["POST"])
def new_campaign_cancel() -> Response:
    wizard = wizard_state.current()
    if wizard is not None:
        wizard.discard()
    flash("The upload was discarded. Nothing was created.", "info")
    return redirect(url_for("web.campaigns"))
