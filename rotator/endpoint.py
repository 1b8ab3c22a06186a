"""Where and how to reach an account's SMTP server, and SANDBOX_SMTP_URL parsing."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from rotator.providers.base import Security


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    verify_tls: bool = True
    # A PEM bundle trusted besides the system's certificates (SMTP_CA_FILE).
    ca_file: str | None = None

    def __repr__(self) -> str:  # never print the password
        return (
            f"SmtpEndpoint(host={self.host!r}, port={self.port}, security={self.security}, "
            f"username={self.username!r}, timeout={self.timeout})"
        )


_SCHEMES = {"smtp": Security.NONE, "smtp+starttls": Security.STARTTLS, "smtps": Security.TLS}
_DEFAULT_PORTS = {Security.NONE: 25, Security.STARTTLS: 587, Security.TLS: 465}


def endpoint_from_url(url: str) -> SmtpEndpoint:
    """SANDBOX_SMTP_URL: smtp://host:port, smtp+starttls://user:pass@host:587, smtps://host:465.

    A ``?verify=false`` query turns off certificate checks (sandbox sinks only).
    """
    parts = urlsplit(url)
    security = _SCHEMES.get(parts.scheme.lower())
    if security is None:
        raise ValueError(
            f"SMTP URL scheme must be one of {', '.join(sorted(_SCHEMES))}: {parts.scheme!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    if parts.path not in ("", "/"):
        raise ValueError("SMTP URL must not have a path")
    verify = True
    if parts.query:
        if parts.query.lower() not in ("verify=false", "verify=0", "verify=true", "verify=1"):
            raise ValueError(f"SMTP URL: unknown query {parts.query!r} (only verify=false)")
        verify = parts.query.lower() in ("verify=true", "verify=1")
    return SmtpEndpoint(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[security],
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        verify_tls=verify,
    )
