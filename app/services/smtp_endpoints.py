"""Where an account connects: its own server with its decrypted secret, or SANDBOX_SMTP_URL
for every account, with the TLS trust of SMTP_CA_FILE. One answer for the send path and
the health check; only the per-step timeout differs between them."""

from __future__ import annotations

from dataclasses import replace

from app.crypto import SecretBox
from app.models import Account
from app.settings import Settings
from rotator.endpoint import SmtpEndpoint, endpoint_from_url
from rotator.providers.base import Security


def account_endpoint(settings: Settings, account: Account, *, timeout: float) -> SmtpEndpoint:
    if settings.sandbox_smtp_url:
        sandbox = endpoint_from_url(settings.sandbox_smtp_url)
        return replace(sandbox, timeout=timeout, ca_file=settings.smtp_ca_file)
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
        timeout=timeout,
        ca_file=settings.smtp_ca_file,
    )
