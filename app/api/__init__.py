"""REST API /api/v1: one flask-smorest blueprint per resource; the whole surface is listed
in register_api()."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app.api.auth import authenticate_request
from app.api.errors import ErrorSchema, UnsupportedMediaType, http_error_response
from app.errors import DomainError
from app.extensions import csrf

API_PREFIX = "/api/v1"


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return http_error_response(error)
        return error


def _protected(blp: Blueprint) -> Blueprint:
    """API-key auth; no CSRF (no cookies are involved, the key is the credential)."""
    # Blueprints are module-level singletons: a second create_app() (tests, a CLI next to a
    # server) registers them again, when Flask no longer accepts setup calls on them.
    if authenticate_request not in blp.before_request_funcs.get(None, []):
        blp.before_request(authenticate_request)
    csrf.exempt(blp)
    return blp


def api_config() -> dict[str, Any]:
    return {
        "API_TITLE": "Sendfleet",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": API_PREFIX,
        "OPENAPI_JSON_PATH": "openapi.json",
        "API_SPEC_OPTIONS": {
            "security": [{"bearerAuth": []}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "info": {
                "description": 'Sendfleet outreach API. Errors: {"error": {code, message, field?}}'
            },
        },
    }


def register_api(app: Flask) -> Api:
    from app.api import (
        accounts,
        campaigns,
        clients,
        dns_checks,
        health,
        limits,
        suppressions,
    )

    api = Api(app)
    api.register_blueprint(health.blp, url_prefix=f"{API_PREFIX}/health")
    api.register_blueprint(_protected(accounts.blp), url_prefix=f"{API_PREFIX}/accounts")
    api.register_blueprint(_protected(campaigns.blp), url_prefix=f"{API_PREFIX}/campaigns")
    api.register_blueprint(_protected(suppressions.blp), url_prefix=f"{API_PREFIX}/suppressions")
    api.register_blueprint(_protected(limits.blp), url_prefix=f"{API_PREFIX}/limits")
    api.register_blueprint(_protected(clients.blp), url_prefix=f"{API_PREFIX}/clients")
    api.register_blueprint(
        _protected(dns_checks.blacklist_blp), url_prefix=f"{API_PREFIX}/blacklist"
    )
    api.register_blueprint(_protected(dns_checks.domains_blp), url_prefix=f"{API_PREFIX}/domains")
    return api


# --- request bodies -------------------------------------------------------------------

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
MULTIPART = "multipart/form-data"
JSON_BODY_KEY = "sendfleet.json_body"


def accepts_upload(view: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a view that takes multipart/form-data besides JSON (put it under @blp.route)."""
    view.accepts_upload = True  # type: ignore[attr-defined]
    return view


def require_json_body() -> None:
    """before_request of the JSON resources: a body must be JSON (or multipart where the
    view accepts an upload), else 415; JSON that does not parse is 400 invalid_json."""
    if request.method not in BODY_METHODS or not has_body():
        return
    if request.is_json:
        json_body()
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if request.mimetype == MULTIPART and getattr(view, "accepts_upload", False):
        return
    accepted = "application/json"
    if getattr(view, "accepts_upload", False):
        accepted += f" or {MULTIPART}"
    given = request.mimetype or "untyped"
    raise UnsupportedMediaType(f"the body must be {accepted}, not {given}")


def has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def json_body() -> Any:
    """The parsed JSON body (cached for the request); an empty body is an empty object."""
    if JSON_BODY_KEY not in request.environ:
        raw = request.get_data(cache=True)
        try:
            request.environ[JSON_BODY_KEY] = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            raise DomainError("the request body is not valid JSON", code="invalid_json") from None
    return request.environ[JSON_BODY_KEY]
