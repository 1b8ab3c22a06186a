"""One SMTP session with smtplib: open (connect, EHLO, STARTTLS, AUTH), one command at a
time, the message payload, a polite close. Network and TLS failures become `Failed`
carrying the SmtpReply of the right kind; the pool (rotator.transport) decides what a
failure means for the connection."""

from __future__ import annotations

import re
import select
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from rotator.endpoint import SmtpEndpoint
from rotator.providers.base import Security
from rotator.reply import SmtpReply, Stage

_DOT_STUFF = re.compile(rb"(?m)^\.")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


class Failed(Exception):
    """A step failed with this reply; the connection is unusable."""

    def __init__(self, reply: SmtpReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass
class Progress:
    """How far the current attempt got; failures are placed at this stage."""

    stage: Stage = Stage.CONNECT


def wire_data(data: bytes) -> bytes:
    """CRLF line endings, dot-stuffed (RFC 5321 4.5.2), terminated by CRLF.CRLF."""
    # The builder's messages are CRLF already and rarely have a line starting with a dot:
    # counting (in C) finds that out in a fraction of what the substitutions cost.
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _BARE_CR.sub(b"\r\n", _BARE_LF.sub(b"\r\n", data))
    if data.startswith(b".") or b"\n." in data:
        data = _DOT_STUFF.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


@lru_cache(maxsize=1)
def _default_local_hostname() -> str:
    # smtplib would call getfqdn() (a DNS lookup) on every connection.
    return socket.getfqdn() or "localhost"


@lru_cache(maxsize=8)
def _tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_context(endpoint: SmtpEndpoint) -> ssl.SSLContext:
    return _tls_context(endpoint.verify_tls, endpoint.ca_file)


def open_session(endpoint: SmtpEndpoint, progress: Progress) -> smtplib.SMTP:
    """Connect, EHLO, STARTTLS when asked, AUTH when a username is set."""
    local = endpoint.local_hostname or _default_local_hostname()
    progress.stage = Stage.TLS if endpoint.security is Security.TLS else Stage.CONNECT
    smtp: smtplib.SMTP
    try:
        # Host given to the constructor: smtplib keeps it for TLS server_hostname.
        if endpoint.security is Security.TLS:
            smtp = smtplib.SMTP_SSL(
                endpoint.host,
                endpoint.port,
                local_hostname=local,
                timeout=endpoint.timeout,
                context=tls_context(endpoint),
            )
        else:
            smtp = smtplib.SMTP(
                endpoint.host, endpoint.port, local_hostname=local, timeout=endpoint.timeout
            )
    except smtplib.SMTPConnectError as exc:  # a greeting other than 220
        raise Failed(SmtpReply.parse(exc.smtp_code, _as_bytes(exc.smtp_error))) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise Failed(SmtpReply.from_error("tls_failed", describe(exc))) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        kind = "timeout" if _timed_out(exc) else "connection_lost"
        raise Failed(SmtpReply.from_error(kind, describe(exc))) from None
    except OSError as exc:
        raise Failed(SmtpReply.from_error("connect_failed", describe(exc))) from None
    try:
        progress.stage = Stage.EHLO
        expect(smtp, 250, lambda: smtp.ehlo())
        if endpoint.security is Security.STARTTLS:
            progress.stage = Stage.TLS
            if not smtp.has_extn("starttls"):
                raise Failed(SmtpReply.from_error("tls_failed", "server does not offer STARTTLS"))
            expect(smtp, 220, lambda: smtp.starttls(context=tls_context(endpoint)))
            progress.stage = Stage.EHLO
            expect(smtp, 250, lambda: smtp.ehlo())
        if endpoint.username:
            progress.stage = Stage.AUTH
            _login(smtp, endpoint.username, endpoint.password or "")
    except Failed:
        smtp.close()
        raise
    return smtp


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if not smtp.has_extn("auth"):
        raise Failed(SmtpReply.from_error("auth_unavailable", "server does not offer AUTH"))
    try:
        smtp.login(username, password)
    except smtplib.SMTPAuthenticationError as exc:
        raise Failed(SmtpReply.parse(exc.smtp_code, exc.smtp_error)) from None
    except smtplib.SMTPResponseException as exc:
        raise Failed(SmtpReply.parse(exc.smtp_code, exc.smtp_error)) from None
    except smtplib.SMTPException as exc:
        raise Failed(SmtpReply.from_error("auth_unavailable", str(exc))) from None
    except OSError as exc:
        raise Failed(network_reply(exc)) from None


def expect(smtp: smtplib.SMTP, expected: int, call: Callable[[], tuple[int, bytes]]) -> None:
    code, message = step(smtp, call)
    if code != expected:
        raise Failed(SmtpReply.parse(code, message))


def step(smtp: smtplib.SMTP, call: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
    """Run one command; network and TLS failures become Failed of the right kind."""
    try:
        return call()
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code, _as_bytes(exc.smtp_error)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise Failed(SmtpReply.from_error("tls_failed", describe(exc))) from None
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise Failed(network_reply(exc)) from None


def send_payload(smtp: smtplib.SMTP, data: bytes, then: bytes = b"") -> None:
    """Message bytes, the end-of-data dot and `then` (the next message's envelope, if any)
    in one write. A write that fails before the kernel took the final dot cannot have let
    the server see it: connection lost, nothing delivered. Once the dot is taken, a failure
    (writing `then`) is an outcome lost, as when no reply comes."""
    payload = wire_data(data)
    sock = smtp.sock
    if sock is None:
        raise Failed(SmtpReply.from_error("connection_lost", "not connected"))
    view = memoryview(payload + then)
    taken = 0
    try:
        while taken < len(view):
            taken += sock.send(view[taken:])
    except OSError as exc:
        if taken >= len(payload):
            raise Failed(SmtpReply.from_error("outcome_lost", describe(exc), Stage.DOT)) from None
        raise Failed(network_reply(exc)) from None


def spoke_out_of_turn(smtp: smtplib.SMTP) -> bool:
    """Something to read, or the end of the stream, where the server should be waiting for
    message data: it is closing (or out of step), so the data must not go."""
    sock = smtp.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


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


def network_reply(exc: BaseException) -> SmtpReply:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return SmtpReply.from_error("tls_failed", describe(seen))
        seen = seen.__cause__ or seen.__context__
    kind = "timeout" if _timed_out(exc) else "connection_lost"
    return SmtpReply.from_error(kind, describe(exc))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def alive(smtp: smtplib.SMTP) -> bool:
    try:
        code, _ = smtp.noop()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def quit_politely(smtp: smtplib.SMTP) -> None:
    """Polite close; a server that does not answer QUIT only costs one short wait."""
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(min(smtp.timeout, 5.0))
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
