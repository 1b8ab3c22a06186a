"""The web UI: server-rendered Jinja pages on the same services as the API.

For whoever adds a page (the conventions every screen follows):

- Views live in one module per screen (`app/web/campaigns.py`, `app/web/accounts.py` ...),
  decorated with `@web.route(...)` on the blueprint below, and are imported at the bottom
  of this file so they register (add yours on its own import line there). Every route
  needs a signed-in user (see `_require_login`); only PUBLIC_ENDPOINTS do not.
- Data comes from app/services, never from a copy of their logic: open the transaction
  with `app.db.unit_of_work()` and pass `client_id=current_client_id()` (app/web/clients.py),
  the client the user has chosen in the switcher. Domain errors (InvalidInput, NotFound,
  Conflict ...) become messages next to the fields with app.web.forms.errors_of(exc)
  (for macros.field(errors=...)); raised out of a view they render the error page.
- Templates extend "web/base.html" and fill these blocks:
    title    the page's <title> (the layout appends " · Sendfleet")
    header   the page heading row; use macros.page_header(title, subtitle) or your own
    content  the page
    scripts  page scripts at the end of <body> (htmx and Chart.js are always loaded)
  and set `{% set active = "accounts" %}` (campaigns, accounts, suppressions, domains) to
  highlight the navigation entry. "web/_macros.html" has: field (label + input + the
  error under it), status_badge, progress, page_header, empty_state, button_form (a
  POST button with its CSRF token), flashes. Every <form method="post"> carries
  `{{ csrf_token_field() }}`; a POST without it gets a clear 400 page and changes nothing.
- Fragments polled by htmx are ordinary routes returning a partial template (name them
  `_<page>_<part>.html`); keep them idempotent GETs.
- Styles: app/web/static/web.css (CSS variables at its top); no inline styles.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, redirect, request, url_for
from flask_login import current_user
from markupsafe import Markup
from werkzeug.wrappers import Response

web = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui-static",
)

PUBLIC_ENDPOINTS = frozenset({"web.login", "web.static"})


@web.before_request
def _require_login() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    return redirect(url_for("web.login", next=safe_next(request.full_path)))


# The pages load only their own scripts (htmx, Chart.js, web.js); the inline styles are the
# progress bars' widths. The HTML preview is a sandboxed srcdoc frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@web.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def safe_next(target: str | None) -> str | None:
    """A local path to return to after signing in; anything else (another host, a scheme,
    `//evil`) is dropped."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return None
    target = target.rstrip("?")
    return None if target in ("/", "/login") else target


@web.app_template_global()
def csrf_token_field() -> Markup:
    from flask_wtf.csrf import generate_csrf

    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(generate_csrf())


web.add_app_template_global(zip, "zip")


@web.route("/")
def index() -> Response:
    return redirect(url_for("web.campaigns"))


def register_web(app: Flask) -> None:
    from app.web.errors import register_error_pages

    app.register_blueprint(web)
    register_error_pages(app)
    app.context_processor(_layout_context)


def _layout_context() -> dict[str, Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from app.web.clients import layout_clients

    try:
        return layout_clients()
    except SQLAlchemyError:
        # An error page must render even when the database is what failed.
        return {"clients": [], "current_client": None}


# Each screen's module registers its routes on `web`.
from app.web import auth, campaign_new, campaign_page, campaigns, clients, errors  # noqa: E402,F401,I001
from app.web import accounts, domains, suppressions  # noqa: E402,F401
