"""Pooled SMTP connections: one per key (account) per process, reused across messages.

`send` never raises for SMTP or network outcomes; it returns the SmtpReply. The one
distinction that matters most is where a failure happened: before the end-of-data
dot (nothing was delivered, safe to retry later) or after it (the server may have
accepted the message: "outcome_lost", never retried automatically). That is why DATA
is driven by hand below rather than with smtplib.sendmail.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from rotator.providers.base import Security
from rotator.reply import SmtpReply

log = logging.getLogger(__name__)

# An idle connection older than this is probed with NOOP before use: servers drop
# idle clients silently (Postfix smtpd_timeout, Gmail after a few minutes).
PROBE_AFTER_SECONDS = 5.0
_DOT_STUFF = re.compile(rb"(?m)^\.")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


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


class _Failed(Exception):
    """Internal: a step failed with this reply; the connection is unusable."""

    def __init__(self, reply: SmtpReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass
class _Connection:
    smtp: smtplib.SMTP
    endpoint: SmtpEndpoint
    last_used: float
    messages: int = 0


class SmtpPool:
    def __init__(
        self, *, idle_seconds: float = 60.0, max_messages_per_connection: int = 500
    ) -> None:
        self._idle_seconds = idle_seconds
        self._max_messages = max_messages_per_connection
        self._conns: dict[str, _Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def send(
        self, key: str, endpoint: SmtpEndpoint, envelope_from: str, recipient: str, data: bytes
    ) -> SmtpReply:
        with self._lock_for(key):
            try:
                return self._send(key, endpoint, envelope_from, recipient, data)
            except _Failed as failed:
                self._drop(key)
                return failed.reply

    def check(self, endpoint: SmtpEndpoint) -> SmtpReply:
        """Health check on a fresh connection: connect, EHLO, STARTTLS, AUTH, NOOP."""
        try:
            smtp = _open(endpoint)
        except _Failed as failed:
            return failed.reply
        try:
            code, message = _step(smtp, smtp.noop)
            return SmtpReply.parse(code, message)
        except _Failed as failed:
            return failed.reply
        finally:
            _quit(smtp)

    def close(self, key: str) -> None:
        with self._lock_for(key):
            conn = self._conns.pop(key, None)
            if conn is not None:
                _quit(conn.smtp)

    def close_all(self) -> None:
        for key in list(self._conns):
            self.close(key)

    # --- internals ---------------------------------------------------------------------

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _drop(self, key: str) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.smtp.close()

    def _connection(self, key: str, endpoint: SmtpEndpoint) -> tuple[_Connection, bool]:
        """The key's open connection, or a new one. Returns (connection, reused)."""
        conn = self._conns.get(key)
        now = time.monotonic()
        if conn is not None:
            idle = now - conn.last_used
            if (
                conn.endpoint != endpoint
                or conn.messages >= self._max_messages
                or idle > self._idle_seconds
            ):
                self._conns.pop(key)
                _quit(conn.smtp)
                conn = None
            elif idle > PROBE_AFTER_SECONDS and not _alive(conn.smtp):
                self._drop(key)
                conn = None
        if conn is not None:
            return conn, True
        conn = _Connection(_open(endpoint), endpoint, now)
        self._conns[key] = conn
        return conn, False

    def _send(
        self, key: str, endpoint: SmtpEndpoint, envelope_from: str, recipient: str, data: bytes
    ) -> SmtpReply:
        conn, reused = self._connection(key, endpoint)
        smtp = conn.smtp
        conn.messages += 1
        try:
            code, message = _step(smtp, lambda: smtp.mail(envelope_from))
        except _Failed:
            if not reused:
                raise
            code, message = 421, b""
        if code == 421 and reused:
            # A reused connection the server already gave up on (idle timeout, per-
            # connection message cap): nothing of this message was sent, so opening
            # a fresh connection once is a reconnect, not a retry of the message.
            self._drop(key)
            conn, _ = self._connection(key, endpoint)
            smtp = conn.smtp
            conn.messages += 1
            code, message = _step(smtp, lambda: smtp.mail(envelope_from))
        conn.last_used = time.monotonic()
        if code != 250:
            return self._refused(key, smtp, code, message)
        code, message = _step(smtp, lambda: smtp.rcpt(recipient))
        if code not in (250, 251):
            return self._refused(key, smtp, code, message)
        code, message = _step(smtp, lambda: smtp.docmd("data"))
        if code != 354:
            return self._refused(key, smtp, code, message)
        _send_payload(smtp, data)
        # The end-of-data dot is on its way: from here on, no reply means "unknown".
        try:
            code, message = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Failed(SmtpReply.from_error("outcome_lost", _describe(exc))) from None
        conn.last_used = time.monotonic()
        reply = SmtpReply.parse(code, message)
        if code == 421:
            self._drop(key)
        log.debug("smtp.sent", extra={"key": key, "smtp_code": code})
        return reply

    def _refused(self, key: str, smtp: smtplib.SMTP, code: int, message: bytes) -> SmtpReply:
        """A MAIL/RCPT/DATA refusal: reset the transaction so the connection stays usable."""
        reply = SmtpReply.parse(code, message)
        if code == 421:
            self._drop(key)  # the server is closing the channel
            return reply
        try:
            rset_code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            rset_code = 0
        if rset_code != 250:
            self._drop(key)
        return reply


def _wire_data(data: bytes) -> bytes:
    """CRLF line endings, dot-stuffed (RFC 5321 4.5.2), terminated by CRLF.CRLF."""
    if b"\n" in data or b"\r" in data:
        data = _BARE_CR.sub(b"\r\n", _BARE_LF.sub(b"\r\n", data))
    data = _DOT_STUFF.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


@lru_cache(maxsize=1)
def _default_local_hostname() -> str:
    # smtplib would call getfqdn() (a DNS lookup) on every connection.
    return socket.getfqdn() or "localhost"


@lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _open(endpoint: SmtpEndpoint) -> smtplib.SMTP:
    """Connect, EHLO, STARTTLS when asked, AUTH when a username is set."""
    local = endpoint.local_hostname or _default_local_hostname()
    smtp: smtplib.SMTP
    try:
        # Host given to the constructor: smtplib keeps it for TLS server_hostname.
        if endpoint.security is Security.TLS:
            smtp = smtplib.SMTP_SSL(
                endpoint.host,
                endpoint.port,
                local_hostname=local,
                timeout=endpoint.timeout,
                context=_tls_context(endpoint.verify_tls),
            )
        else:
            smtp = smtplib.SMTP(
                endpoint.host, endpoint.port, local_hostname=local, timeout=endpoint.timeout
            )
    except smtplib.SMTPConnectError as exc:  # a greeting other than 220
        raise _Failed(SmtpReply.parse(exc.smtp_code, _as_bytes(exc.smtp_error))) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise _Failed(SmtpReply.from_error("tls_failed", _describe(exc))) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        kind = "timeout" if _timed_out(exc) else "connection_lost"
        raise _Failed(SmtpReply.from_error(kind, _describe(exc))) from None
    except OSError as exc:
        raise _Failed(SmtpReply.from_error("connect_failed", _describe(exc))) from None
    try:
        _expect(smtp, 250, lambda: smtp.ehlo())
        if endpoint.security is Security.STARTTLS:
            if not smtp.has_extn("starttls"):
                raise _Failed(SmtpReply.from_error("tls_failed", "server does not offer STARTTLS"))
            _expect(smtp, 220, lambda: smtp.starttls(context=_tls_context(endpoint.verify_tls)))
            _expect(smtp, 250, lambda: smtp.ehlo())
        if endpoint.username:
            _login(smtp, endpoint.username, endpoint.password or "")
    except _Failed:
        smtp.close()
        raise
    return smtp


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if not smtp.has_extn("auth"):
        raise _Failed(SmtpReply.from_error("auth_unavailable", "server does not offer AUTH"))
    try:
        smtp.login(username, password)
    except smtplib.SMTPAuthenticationError as exc:
        raise _Failed(SmtpReply.parse(exc.smtp_code, exc.smtp_error)) from None
    except smtplib.SMTPResponseException as exc:
        raise _Failed(SmtpReply.parse(exc.smtp_code, exc.smtp_error)) from None
    except smtplib.SMTPException as exc:
        raise _Failed(SmtpReply.from_error("auth_unavailable", str(exc))) from None
    except OSError as exc:
        raise _Failed(_network_reply(exc)) from None


def _expect(smtp: smtplib.SMTP, expected: int, call: Callable[[], tuple[int, bytes]]) -> None:
    code, message = _step(smtp, call)
    if code != expected:
        raise _Failed(SmtpReply.parse(code, message))


def _step(smtp: smtplib.SMTP, call: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
    """Run one command; network and TLS failures become _Failed of the right kind."""
    try:
        return call()
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code, _as_bytes(exc.smtp_error)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise _Failed(SmtpReply.from_error("tls_failed", _describe(exc))) from None
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise _Failed(_network_reply(exc)) from None


def _send_payload(smtp: smtplib.SMTP, data: bytes) -> None:
    """Message bytes then the end-of-data dot, in one write. If the write fails, the
    kernel did not take every byte, so the server cannot have seen the final dot."""
    try:
        smtp.send(_wire_data(data))
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise _Failed(_network_reply(exc)) from None


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "replace")


def _timed_out(exc: BaseException) -> bool:
    # smtplib wraps socket errors in SMTPServerDisconnected; the cause stays in the chain.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _network_reply(exc: BaseException) -> SmtpReply:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return SmtpReply.from_error("tls_failed", _describe(seen))
        seen = seen.__cause__ or seen.__context__
    kind = "timeout" if _timed_out(exc) else "connection_lost"
    return SmtpReply.from_error(kind, _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _alive(smtp: smtplib.SMTP) -> bool:
    try:
        code, _ = smtp.noop()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def _quit(smtp: smtplib.SMTP) -> None:
    """Polite close; a server that does not answer QUIT only costs one short wait."""
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(min(smtp.timeout, 5.0))
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
