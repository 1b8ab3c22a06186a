"""Sendfleet's Flask application. create_app() is the only wiring point; importing this
package connects to nothing, and imports no Flask either: beat (worker/beat_app.py) reads
app.settings without carrying the web stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.settings import Settings, load_settings

if TYPE_CHECKING:
    from flask import Flask, Response


def create_app(settings: Settings | None = None) -> Flask:
    from flask import Flask
    from redis import Redis

    from app.api import api_config, register_api
    from app.cli import register_cli
    from app.extensions import csrf, db, login, migrate
    from app.logs import configure_logging
    from app.metrics import init_metrics
    from app.observability import init_sentry
    from app.public import public
    from app.web import register_web

    settings = settings or load_settings()
    configure_logging(settings)
    init_sentry(settings)

    app = Flask(__name__)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The address only (ProxyFix believes X-Forwarded-Proto unless told not to): a
        # request made "secure" turns on Flask-WTF's strict Referer check, which a proxy
        # that rewrites Host (nginx's default) or drops the Referer fails on every form.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0
        )
    app.config.from_mapping(flask_config(settings))
    app.config.update(api_config())
    app.extensions["settings"] = settings
    app.extensions["redis"] = Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )

    db.init_app(app)
    migrate.init_app(app, db)
    login.init_app(app)
    from app import users  # noqa: F401  (registers the Flask-Login user loader)

    csrf.init_app(app)

    register_api(app)
    app.register_blueprint(public)
    init_metrics(app)
    register_web(app)
    register_cli(app)
    _register_error_handlers(app)
    app.before_request(_limit_json_bodies)
    return app


FORM_MEMORY_BYTES = 8 * 1024 * 1024


def flask_config(settings: Settings) -> dict[str, Any]:
    return {
        "SECRET_KEY": settings.secret_key.get_secret_value(),
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 3, "application_name": "sendfleet"},
        },
        # A multipart upload: the CSV (spooled to disk by Werkzeug, read by the importer up
        # to IMPORT_MAX_BYTES) plus its form fields and part headers. JSON bodies have
        # their own, smaller cap (_limit_json_bodies).
        "MAX_CONTENT_LENGTH": settings.import_max_bytes + FORM_MEMORY_BYTES + 1024 * 1024,
        # Form fields of a multipart campaign (body_text, body_html up to 1,000,000 characters
        # as in JSON, 4 bytes each at worst); Werkzeug's default stops at 500 kB.
        "MAX_FORM_MEMORY_SIZE": FORM_MEMORY_BYTES,
        "JSON_SORT_KEYS": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Secure everywhere but on a developer's plain-http localhost (browsers treat
        # http://127.0.0.1 and localhost as secure, so the browser tests keep it).
        "SESSION_COOKIE_SECURE": settings.sendfleet_env != "development"
        or settings.public_base_url.startswith("https://"),
        "SESSION_COOKIE_NAME": "sendfleet_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": settings.sendfleet_env != "development"
        or settings.public_base_url.startswith("https://"),
        # A form's CSRF token is good for the whole signed-in session, so a wizard left open
        # over lunch still submits.
        "WTF_CSRF_TIME_LIMIT": None,
        "TESTING": settings.sendfleet_env == "test",
    }


def _register_error_handlers(app: Flask) -> None:
    from flask import request

    from app.errors import DomainError, domain_error_response, error_response
    from app.outages import register_outage_handlers

    app.register_error_handler(DomainError, domain_error_response)
    register_outage_handlers(app)

    @app.errorhandler(500)
    def internal_error(exc: Exception) -> Response | tuple[str, int]:
        if request.path.startswith("/api/"):
            return error_response(500, "internal", "internal error; it has been logged")
        from app.web.errors import render_error

        return render_error(500, "The error has been logged. Try again in a moment.")


def _limit_json_bodies() -> Response | None:
    """MAX_CONTENT_LENGTH admits CSV uploads of IMPORT_MAX_BYTES; a body that is parsed
    whole (anything but multipart) stops at API_MAX_JSON_BYTES, before it is read."""
    from flask import current_app, request

    from app.errors import error_response

    limit = current_app.extensions["settings"].api_max_json_bytes
    if request.mimetype == "multipart/form-data" or (request.content_length or 0) <= limit:
        return None
    return error_response(
        413,
        "too_large",
        f"the request body is larger than {limit:,} bytes (API_MAX_JSON_BYTES); "
        "send more recipients as a CSV upload (multipart, up to IMPORT_MAX_BYTES) or in "
        "several requests",
    )
