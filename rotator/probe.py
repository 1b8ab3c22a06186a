"""The SMTP health probe: connect, EHLO, STARTTLS (or implicit TLS), AUTH, NOOP, an
optional test message to the account itself, QUIT, with the account's real security
settings and the same TLS trust as the send path (rotator.session). It returns what
happened and a transcript of the dialogue in which no secret survives: AUTH arguments and
every answer to a 334 challenge are masked, and so is the password wherever it would
appear, in clear or base64."""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from rotator.endpoint import SmtpEndpoint
from rotator.providers.base import Security
from rotator.reply import SmtpReply, Stage
from rotator.session import (
    Failed,
    Progress,
    _default_local_hostname,
    _login,
    describe,
    expect,
    network_reply,
    tls_context,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

MASK = "****"
MAX_TRANSCRIPT_LINES = 200
DONE = "quit"  # the stage of a probe that got through


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    stage: str  # the Stage where it failed, or DONE
    error: str | None
    transcript: list[str]
    duration_ms: int
    reply: SmtpReply | None = None


@dataclass
class _Transcript:
    secrets: list[str]
    lines: list[str] = field(default_factory=list)
    awaiting_credential: bool = False

    def client(self, raw: str) -> None:
        line = raw.rstrip("\r\n")
        if self.awaiting_credential:
            line = MASK  # the answer to a 334 challenge is a credential
        elif line.upper().startswith("AUTH "):
            mechanism = line.split(" ", 2)[1]
            line = f"AUTH {mechanism} {MASK}" if len(line.split(" ")) > 2 else line
        self._add("C: " + self._mask(line))

    def server(self, code: int, message: bytes) -> None:
        self.awaiting_credential = code == 334
        text = message.decode("utf-8", "replace").splitlines() or [""]
        for n, part in enumerate(text):
            sep = " " if n == len(text) - 1 else "-"
            self._add(f"S: {code}{sep}{self._mask(part)}".rstrip())

    def note(self, text: str) -> None:
        self._add("-- " + self._mask(text))

    def _mask(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line

    def _add(self, line: str) -> None:
        if len(self.lines) < MAX_TRANSCRIPT_LINES:
            self.lines.append(line)


def _secret_forms(endpoint: SmtpEndpoint) -> list[str]:
    """The password as it may appear on the wire: itself, base64 alone (LOGIN) and inside
    the PLAIN token."""
    if not endpoint.password:
        return []
    password, user = endpoint.password, endpoint.username or ""
    forms = [password]
    for raw in (password, f"\0{user}\0{password}", f"{user}\0{password}"):
        forms.append(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    return sorted(set(forms), key=len, reverse=True)


class _RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP with every command and reply copied to a transcript; with `context`,
    TLS from the first byte (implicit TLS, as smtplib.SMTP_SSL does)."""

    def __init__(
        self,
        transcript: _Transcript,
        host: str,
        port: int,
        *,
        local_hostname: str,
        timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.transcript = transcript
        self.implicit_tls = context
        self.tls_hostname = host
        super().__init__(host, port, local_hostname=local_hostname, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's own connect step (SMTP_SSL overrides it the same way).
        sock = socket.create_connection((host, port), timeout, self.source_address)
        if self.implicit_tls is None:
            return sock
        return self.implicit_tls.wrap_socket(sock, server_hostname=self.tls_hostname)

    def send(self, s: ReadableBuffer | str) -> None:
        if isinstance(s, str):
            self.transcript.client(s)
        else:  # smtplib sends commands as str; bytes are the message itself
            self.transcript.note(f"{len(memoryview(s))} bytes of message data")
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        code, message = super().getreply()
        self.transcript.server(code, message)
        return code, message


def probe(endpoint: SmtpEndpoint, *, test_send_from: str | None = None) -> ProbeResult:
    """One check. With `test_send_from`, a short message goes from and to that address."""
    started = time.monotonic()
    transcript = _Transcript(secrets=_secret_forms(endpoint))
    progress = Progress()
    transcript.note(f"connecting to {endpoint.host}:{endpoint.port} ({endpoint.security})")
    try:
        smtp = _connect(endpoint, transcript, progress)
        try:
            _converse(smtp, endpoint, transcript, progress, test_send_from)
        finally:
            smtp.close()
    except Failed as failure:
        transcript.note(f"failed at {progress.stage}: {failure.reply.text}")
        return ProbeResult(
            ok=False,
            stage=str(progress.stage),
            error=transcript._mask(_error_text(failure.reply)),
            transcript=transcript.lines,
            duration_ms=_ms(started),
            reply=failure.reply,
        )
    return ProbeResult(
        ok=True, stage=DONE, error=None, transcript=transcript.lines, duration_ms=_ms(started)
    )


def _connect(endpoint: SmtpEndpoint, transcript: _Transcript, progress: Progress) -> smtplib.SMTP:
    local = endpoint.local_hostname or _default_local_hostname()
    progress.stage = Stage.TLS if endpoint.security is Security.TLS else Stage.CONNECT
    implicit = tls_context(endpoint) if endpoint.security is Security.TLS else None
    try:
        return _RecordingSMTP(
            transcript,
            endpoint.host,
            endpoint.port,
            local_hostname=local,
            timeout=endpoint.timeout,
            context=implicit,
        )
    except smtplib.SMTPConnectError as exc:
        message = exc.smtp_error if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise Failed(SmtpReply.parse(exc.smtp_code, message)) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise Failed(SmtpReply.from_error("tls_failed", describe(exc))) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        raise Failed(network_reply(exc)) from None
    except OSError as exc:
        raise Failed(SmtpReply.from_error("connect_failed", describe(exc))) from None


def _converse(
    smtp: smtplib.SMTP,
    endpoint: SmtpEndpoint,
    transcript: _Transcript,
    progress: Progress,
    test_send_from: str | None,
) -> None:
    progress.stage = Stage.EHLO
    expect(smtp, 250, lambda: smtp.ehlo())
    if endpoint.security is Security.STARTTLS:
        progress.stage = Stage.TLS
        if not smtp.has_extn("starttls"):
            raise Failed(SmtpReply.from_error("tls_failed", "server does not offer STARTTLS"))
        expect(smtp, 220, lambda: smtp.starttls(context=tls_context(endpoint)))
        transcript.note("TLS established")
        progress.stage = Stage.EHLO
        expect(smtp, 250, lambda: smtp.ehlo())
    if endpoint.username:
        progress.stage = Stage.AUTH
        _login(smtp, endpoint.username, endpoint.password or "")
    progress.stage = Stage.NOOP
    expect(smtp, 250, lambda: smtp.noop())
    if test_send_from is not None:
        _test_send(smtp, test_send_from, progress)
    # Every step that matters has answered: a server that drops QUIT is no failure.
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()


def _test_send(smtp: smtplib.SMTP, address: str, progress: Progress) -> None:
    message = EmailMessage()
    message["From"] = message["To"] = address
    message["Subject"] = "Sendfleet health check"
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or None)
    message.set_content("A test message of Sendfleet's health check. No action needed.\n")
    progress.stage = Stage.MAIL
    expect(smtp, 250, lambda: smtp.mail(address))
    progress.stage = Stage.RCPT
    code, reply = smtp.rcpt(address)
    if code not in (250, 251):
        raise Failed(SmtpReply.parse(code, reply))
    progress.stage = Stage.DATA
    expect(smtp, 250, lambda: smtp.data(message.as_bytes()))


def _error_text(reply: SmtpReply) -> str:
    parts = [str(reply.code) if reply.code is not None else None, reply.enhanced, reply.text]
    return " ".join(p for p in parts if p)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
