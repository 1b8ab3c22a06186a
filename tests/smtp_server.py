"""A scriptable SMTP server for tests (aiosmtpd in a thread of the test process).

It listens on 127.0.0.1 with a real port, so a client in another process (a Celery
worker) can reach it. Counts are exact: `received` holds every accepted message,
`connections` every client connection (the controller's own start-up probe excluded).

Failures can be scripted per recipient (at RCPT), for every message (at end of DATA),
or as dropped connections:
- drop_connection_mid_data: the server closes the connection when the client sends
  DATA, before any message data is accepted: the client sees a connection lost
  before end-of-data (nothing delivered, safe to retry).
- drop_after_data: the server receives the whole message, records it as received,
  and closes without replying: the client cannot know it was accepted.

With pipelining=True the EHLO reply offers PIPELINING (RFC 2920; aiosmtpd reads pipelined
commands but does not announce it). `reads` holds the bytes of every read from a client, as
they arrived, so a test can see which commands came in one write.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default
from typing import Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Rule = Callable[[str, int], tuple[int, str] | None]


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    data: bytes
    message_id: str | None
    received_at: float


class _Budget:
    """A one-shot-or-more switch: `take()` is True `times` times (None: forever)."""

    def __init__(self, times: int | None) -> None:
        self.left = times

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class ScriptedSMTPServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        smtputf8: bool = True,
        pipelining: bool = False,
    ) -> None:
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531) in the EHLO reply, as Gmail does
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920) in the EHLO reply
        self.reads: list[bytes] = []  # every read from a client, as it arrived
        self.data_without_recipients: list[bytes] = []  # see accept_data_without_recipients
        self._accept_data_without_recipients = False
        self._data_command_failures: list[tuple[int, str, _Budget]] = []
        self.host = host
        self.port = port
        self.auth = auth
        self.tls_context = tls_context
        self.received: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._fail_all: list[tuple[int, str, _Budget]] = []
        self._drop_mid_data = _Budget(0)
        self._drop_after_data = _Budget(0)
        self._garble_data_reply = _Budget(0)
        self.mail_options: list[list[str]] = []  # MAIL FROM parameters, per transaction
        self._attempts: Counter[str] = Counter()
        self._delay_data = _Budget(0)
        self._delay_seconds = 0.0
        self._mail_failures: list[tuple[int, str, _Budget]] = []
        self._drop_connection: Callable[[int], bool] | None = None
        self._drop_data: Callable[[int], bool] | None = None
        self._data_commands = 0
        self._live: set[_ScriptedSMTP] = set()
        self._controller: _Controller | None = None

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> ScriptedSMTPServer:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=False)
        kwargs.update(enable_SMTPUTF8=self.smtputf8)
        controller = _Controller(self, hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller
        self.port = controller.port
        with self._lock:
            self.connections = 0  # the controller's start-up probe
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> ScriptedSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ----------------------------------------------------------------------

    def script(self, rule: Rule) -> None:
        """rule(recipient, attempt) -> (code, text) to refuse that RCPT, or None for 250.
        attempt counts RCPTs for that recipient, starting at 1."""
        with self._lock:
            self._rules.append(rule)

    def fail_rcpt(self, email: str, code: int, text: str, times: int | None = None) -> None:
        budget = _Budget(times)
        target = email.lower()

        def rule(recipient: str, attempt: int) -> tuple[int, str] | None:
            if recipient.lower() == target and budget.take():
                return code, text
            return None

        self.script(rule)

    def fail_all(self, code: int, text: str, times: int | None = None) -> None:
        """Answer every message's end of DATA with this reply (the message is not kept)."""
        with self._lock:
            self._fail_all.append((code, text, _Budget(times)))

    def fail_mail(self, code: int, text: str, times: int | None = None) -> None:
        """Refuse MAIL FROM with this reply (a session-level refusal)."""
        with self._lock:
            self._mail_failures.append((code, text, _Budget(times)))

    def drop_connections(self, when: Callable[[int], bool]) -> None:
        """when(n) for the n-th client connection (from 1): True closes it at once, before
        the greeting."""
        with self._lock:
            self._drop_connection = when

    def drop_data_when(self, when: Callable[[int], bool]) -> None:
        """when(n) for the n-th DATA command (from 1): True closes the connection there,
        before any message data is accepted."""
        with self._lock:
            self._drop_data = when

    def drop_connection_mid_data(self, times: int = 1) -> None:
        with self._lock:
            self._drop_mid_data = _Budget(times)

    def drop_after_data(self, times: int = 1) -> None:
        with self._lock:
            self._drop_after_data = _Budget(times)

    def garble_data_reply(self, times: int = 1) -> None:
        """Keep the message, then answer the final dot with a line that is no SMTP reply."""
        with self._lock:
            self._garble_data_reply = _Budget(times)

    def delay_data_reply(self, seconds: float, times: int = 1) -> None:
        """Receive the message, record it, and wait `seconds` before answering 250:
        a client that times out first cannot know the message was accepted."""
        with self._lock:
            self._delay_data = _Budget(times)
            self._delay_seconds = seconds

    def fail_data_command(self, code: int, text: str, times: int | None = None) -> None:
        """Refuse the DATA command itself with this reply (before any message data)."""
        with self._lock:
            self._data_command_failures.append((code, text, _Budget(times)))

    def accept_data_without_recipients(self) -> None:
        """Behave like a broken server: answer DATA with 354 even when MAIL or every RCPT
        was refused, keep what arrives up to the dot in `data_without_recipients`, and answer
        the dot with 554."""
        with self._lock:
            self._accept_data_without_recipients = True

    def disconnect_all(self) -> None:
        """Close every open client connection, as a server restart or idle timeout does."""
        controller = self._controller
        if controller is None:
            return
        done = threading.Event()

        def close() -> None:
            for protocol in list(self._live):
                if protocol.transport is not None:
                    protocol.transport.close()
            done.set()

        controller.loop.call_soon_threadsafe(close)
        done.wait(5)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.connections = 0
            self._rules.clear()
            self._fail_all.clear()
            self._drop_mid_data = _Budget(0)
            self._drop_after_data = _Budget(0)
            self._delay_data = _Budget(0)
            self._garble_data_reply = _Budget(0)
            self.mail_options.clear()
            self._attempts.clear()
            self._mail_failures.clear()
            self._drop_connection = None
            self._drop_data = None
            self._data_commands = 0
            self.reads.clear()
            self.data_without_recipients.clear()
            self._accept_data_without_recipients = False
            self._data_command_failures.clear()

    # --- reading ------------------------------------------------------------------------

    def messages_for(self, email: str) -> list[Received]:
        target = email.lower()
        with self._lock:
            return [r for r in self.received if target in (x.lower() for x in r.recipients)]

    def messages_with_id(self, message_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.message_id == message_id]

    def attempts(self, email: str) -> int:
        """RCPT commands seen for this recipient, refused or not."""
        with self._lock:
            return self._attempts[email.lower()]

    # --- called from the server thread --------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth is not None
        if isinstance(data, LoginPassword):
            given = (
                data.login.decode("utf-8", "replace"),
                data.password.decode("utf-8", "replace"),
            )
            if given == self.auth:
                return AuthResult(success=True, auth_data=data)
        # aiosmtpd answers "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    @property
    def open_connections(self) -> int:
        """Clients connected right now."""
        return len(self._live)

    def _on_connect(self, protocol: _ScriptedSMTP) -> bool:
        """Counts the connection; True when it is scripted to be dropped at once."""
        with self._lock:
            self.connections += 1
            drop = self._drop_connection is not None and self._drop_connection(self.connections)
        self._live.add(protocol)  # only touched from the server thread
        return drop

    def _mail_reply(self) -> str | None:
        with self._lock:
            for code, text, budget in self._mail_failures:
                if budget.take():
                    return f"{code} {text}"
        return None

    def _data_command_reply(self) -> str | None:
        with self._lock:
            for code, text, budget in self._data_command_failures:
                if budget.take():
                    return f"{code} {text}"
        return None

    def _on_read(self, data: bytes) -> None:
        with self._lock:
            self.reads.append(bytes(data))

    def _on_disconnect(self, protocol: _ScriptedSMTP) -> None:
        self._live.discard(protocol)

    def _take_delay(self) -> float:
        with self._lock:
            return self._delay_seconds if self._delay_data.take() else 0.0

    def _take_drop_mid_data(self) -> bool:
        with self._lock:
            self._data_commands += 1
            if self._drop_data is not None and self._drop_data(self._data_commands):
                return True
            return self._drop_mid_data.take()

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            key = address.lower()
            self._attempts[key] += 1
            attempt = self._attempts[key]
            rules = list(self._rules)
        for rule in rules:
            reply = rule(address, attempt)
            if reply is not None:
                return f"{reply[0]} {reply[1]}"
        return None

    def _data_reply(self, envelope: Envelope, server: SMTP) -> str | None:
        with self._lock:
            for code, text, budget in self._fail_all:
                if budget.take():
                    return f"{code} {text}"
            drop = self._drop_after_data.take()
            garble = self._garble_data_reply.take()
            data = bytes(envelope.original_content or b"")
            self.received.append(
                Received(
                    envelope_from=str(envelope.mail_from),
                    recipients=list(envelope.rcpt_tos),
                    data=data,
                    message_id=_message_id(data),
                    received_at=time.time(),
                )
            )
        if drop:
            assert server.transport is not None
            server.transport.close()
            return ""
        if garble:
            return "OK, got it"
        return None


def _message_id(data: bytes) -> str | None:
    value = BytesHeaderParser(policy=default).parsebytes(data).get("Message-ID")
    return None if value is None else str(value).strip()


class _Handler:
    def __init__(self, owner: ScriptedSMTPServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.owner._lock:
            self.owner.mail_options.append(list(options))
        refusal = self.owner._mail_reply()
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.owner._rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.owner._data_reply(envelope, server)
        delay = self.owner._take_delay()
        if delay:
            await asyncio.sleep(delay)
        return "250 OK queued" if reply is None else reply


class _PipeliningHandler(_Handler):
    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _ScriptedSMTP(SMTP):
    def __init__(self, owner: ScriptedSMTPServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and self._owner._on_connect(self):
            # Not the STARTTLS re-wrap of a connection, and scripted to drop: closed before
            # the greeting, as an overloaded server or a middlebox does.
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._on_disconnect(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        self._owner._on_read(data)
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        if (
            self.envelope is not None
            and not self.envelope.rcpt_tos
            and self._owner._accept_data_without_recipients
        ):
            await self._data_without_recipients()
            return
        if self.envelope is not None and self.envelope.rcpt_tos:
            refusal = self._owner._data_command_reply()
            if refusal is not None:
                await self.push(refusal)
                return
        if (
            self.envelope is not None
            and self.envelope.rcpt_tos
            and self._owner._take_drop_mid_data()
        ):
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_DATA(arg)

    async def _data_without_recipients(self) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        while True:
            line = await self._reader.readuntil(b"\r\n")
            if line == b".\r\n":
                break
            lines.append(line)
        with self._owner._lock:
            self._owner.data_without_recipients.append(b"".join(lines))
        self._set_post_data_state()
        await self.push("554 5.5.1 Error: no valid recipients")

    async def push(self, status: AnyStr) -> None:
        if not status:
            return  # drop_after_data: the connection is closed, say nothing
        await super().push(status)


class _Controller(Controller):
    def __init__(self, owner: ScriptedSMTPServer, **kwargs: Any) -> None:
        super().__init__(
            _PipeliningHandler(owner) if owner.pipelining else _Handler(owner), **kwargs
        )
        self._owner = owner

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": on purpose, for plain test sinks.
            warnings.simplefilter("ignore", UserWarning)
            return _ScriptedSMTP(self._owner, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        # Port 0: bind first, then learn the real port so the start-up probe finds it.
        async def bind() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()
