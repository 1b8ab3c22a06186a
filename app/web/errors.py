"""Error pages of the web UI in its own layout: 400 (a form without its CSRF token), 403,
404, 405, 413 and 500. /api/ paths keep their JSON errors."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.errors import DomainError
from app.web import web

log = logging.getLogger(__name__)

TITLES = {
    400: "That request could not be used",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    413: "That upload is too large",
    500: "Something went wrong on our side",
}


def wants_page() -> bool:
    return not request.path.startswith(("/api/", "/metrics", "/u/"))


def render_error(status: int, message: str) -> tuple[str, int]:
    return (
        render_template(
            "web/error.html", status=status, title=TITLES.get(status, "Error"), message=message
        ),
        status,
    )


def register_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(exc: CSRFError) -> tuple[str, int]:
        log.warning("web.csrf_refused", extra={"path": request.path})
        return render_error(
            400,
            "This form was sent without a valid security token (it may have been open too "
            "long, or come from another site). Nothing was changed. Go back, reload the page "
            "and try again.",
        )

    for status in (403, 404, 405, 413):
        app.register_error_handler(status, _http_error)


def _http_error(exc: HTTPException) -> Any:
    if not wants_page():
        from app.api.errors import http_error_response

        return http_error_response(exc)
    status = exc.code or 500
    default = {
        404: "There is nothing at this address. It may have been removed, or the link is wrong.",
        403: "You do not have access to this page.",
        405: "This page cannot be used that way.",
        413: "The file is larger than this installation accepts (IMPORT_MAX_BYTES).",
    }
    description = (
        exc.description
        if exc.description
        and not exc.description.startswith(
            ("The requested URL", "You don't have", "The method is not", "The data value")
        )
        else default.get(status, "")
    )
    return render_error(status, description)


@web.errorhandler(DomainError)
def domain_error_page(exc: DomainError) -> tuple[str, int]:
    """A service's refusal met outside a form that shows it inline (a missing or another
    client's campaign is the 404 page, like a missing page)."""
    return render_error(exc.status, exc.message)
