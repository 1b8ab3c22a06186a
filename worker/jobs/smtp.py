"""The SMTP side of the send path: one connection pool per process, and where each account
connects (its own server, or SANDBOX_SMTP_URL for all)."""

from __future__ import annotations

import os

from flask import current_app

from app.crypto import SecretBox
from app.models import Account
from app.settings import Settings
from rotator.providers.base import Security
from rotator.transport import SmtpEndpoint, SmtpPool, endpoint_from_url

_pool: SmtpPool | None = None
_pool_pid: int | None = None


def smtp_pool() -> SmtpPool:
    """One pool per process (connections must never cross a fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        settings: Settings = current_app.extensions["settings"]
        _pool = SmtpPool(
            idle_seconds=settings.smtp_idle_seconds,
            max_per_host=settings.smtp_max_connections_per_host,
            max_open=settings.smtp_max_connections,
        )
        _pool_pid = os.getpid()
    return _pool


def endpoint_for(settings: Settings, account: Account) -> SmtpEndpoint:
    if settings.sandbox_smtp_url:
        return endpoint_from_url(settings.sandbox_smtp_url)
    password = None
    if account.secret_encrypted is not None:
        password = SecretBox(settings.credentials_key.get_secret_value()).decrypt(
            account.secret_encrypted
        )
    return SmtpEndpoint(
        host=account.host,
        port=account.port,
        security=Security(account.security),
        username=account.username,
        password=password,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
    )
