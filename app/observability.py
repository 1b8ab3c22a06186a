"""Sentry: on when SENTRY_DSN is set, with Flask and Celery integrations and no PII.

Error reports leave the machine, so they carry less than the logs: no local variables of
stack frames (a send's frames hold the rendered message and the recipient), no request
bodies (CSV uploads are address lists), no default PII (IPs, cookies, users), and a
before_send / before_breadcrumb pass through app.redaction over everything else: recipient
addresses, subjects and bodies, and secrets by key, by pattern and by value."""

from __future__ import annotations

from typing import Any

from app.redaction import Redactor, secrets_of
from app.settings import Settings

_initialised_dsn: str | None = None


def init_sentry(settings: Settings) -> None:
    """Idempotent per DSN: create_app runs in the API, in `celery -A worker` (before the
    prefork pool forks; the SDK's transport thread restarts itself in each child) and in
    tests, which build several apps."""
    global _initialised_dsn
    if settings.sentry_dsn is None:
        return
    dsn = settings.sentry_dsn.get_secret_value()
    if dsn == _initialised_dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    redactor = Redactor(secrets_of(settings))
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.sendfleet_env,
        integrations=[FlaskIntegration(), CeleryIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0.0,
        before_send=lambda event, _hint: scrub_event(redactor, event),
        before_breadcrumb=lambda crumb, _hint: scrub_event(redactor, crumb),
    )
    _initialised_dsn = dsn


def scrub_event(redactor: Redactor, event: Any) -> Any:
    """An event or a breadcrumb, with what must not leave the process taken out."""
    request = event.get("request")
    if isinstance(request, dict):
        # Query strings name addresses (/u/<token>?email=, ?status=...&cursor=); the body is
        # never kept (max_request_body_size) and cookies are PII.
        for key in ("data", "cookies", "query_string"):
            if request.get(key):
                request[key] = "[Filtered]"
    return redactor.value(event)
