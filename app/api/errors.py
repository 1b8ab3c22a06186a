"""Maps every error under /api to DESIGN's JSON shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import marshmallow as ma
from flask import Response, request
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app.errors import DomainError, error_response

F = TypeVar("F", bound=Callable[..., Any])

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Machine-readable code"})
    message = ma.fields.String(required=True)
    field = ma.fields.String(metadata={"description": "The input field at fault, if any"})


class ErrorSchema(ma.Schema):
    """The error envelope of every 4xx/5xx answer of /api/v1."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)


_LOCATIONS = frozenset({"json", "form", "files", "query", "_schema"})


def _first_message(messages: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """Walks webargs' nested {location: {field: [msg]}} to the first field and message."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            key = str(key)
            field_path = path if key in _LOCATIONS else (*path, key)
            return _first_message(value, field_path)
    if isinstance(messages, list) and messages:
        return _first_message(messages[0], path)
    return (".".join(path) or None), str(messages)


def validation_error_response(messages: Any, status: int = 422) -> Response:
    field, message = _first_message(messages)
    if field == "_schema" or (field or "").endswith("._schema"):
        field = None
    if message == "Invalid JSON body.":
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    code = "invalid" if status == 422 else HTTP_CODES.get(status, "bad_request")
    text = f"{field}: {message}" if field else message
    return error_response(status, code, text, field)


def http_error_response(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if "messages" in data:
        return validation_error_response(data["messages"], status)
    message = data.get("message") or error.description or error.name
    if status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif status == 404 and not data.get("message"):
        message = f"no such resource: {request.path}"
    return error_response(status, HTTP_CODES.get(status, "error"), message)


def error_responses(blp: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Documents error answers of a view (each with the error envelope, ErrorSchema)."""

    def decorate(view: F) -> F:
        for status in statuses:
            view = blp.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorate
