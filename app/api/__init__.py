"""REST API /api/v1: one flask-smorest blueprint per resource; the whole surface is listed
in register_api()."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app.api.auth import authenticate_request
from app.api.errors import ErrorSchema, http_error_response

API_PREFIX = "/api/v1"


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        if request.path.startswith("/api/"):
            return http_error_response(error)
        return error


def _protected(blp: Blueprint) -> Blueprint:
    blp.before_request(authenticate_request)
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
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            },
            "info": {"description": "Sendfleet outreach API. Errors: {\"error\": {code, message, field?}}"},
        },
    }


def register_api(app: Flask) -> Api:
    from app.api import health

    api = Api(app)
    api.register_blueprint(health.blp, url_prefix=f"{API_PREFIX}/health")
    return api
