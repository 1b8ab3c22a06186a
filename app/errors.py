"""Domain exceptions and the one JSON error shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(DomainError):
    status = 422
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class PayloadTooLarge(DomainError):
    status = 413
    code = "too_large"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    response = jsonify({"error": body})
    response.status_code = status
    return response


def domain_error_response(exc: DomainError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="sendfleet"'
    return response
