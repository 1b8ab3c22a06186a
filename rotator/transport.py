"""Pooled SMTP connections: one per key (account) per process, reused across messages.

The pool is bounded: at most `max_per_host` open connections to one SMTP server (many
accounts often share one relay, which serves a limited number of clients at once) and
`max_open` in all; opening one more closes the least recently used idle one first, and
connections idle longer than `idle_seconds` are closed whenever a new one is opened.

`send` never raises for SMTP or network outcomes; it returns the SmtpReply. The one
distinction that matters most is where a failure happened: before the end-of-data
dot (nothing was delivered, safe to retry later) or after it (the server may have
accepted the message: "outcome_lost", never retried automatically). That is why DATA
is driven by hand below rather than with smtplib.sendmail. Every reply carries the Stage
it arrived at, because what a refusal is about depends on it.

Where the server offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA go out in one
write (rotator/wire.py) and their three replies are read after it, in order: two round
trips a message instead of four. The payload still waits for DATA's 354, so a refused
envelope never sends the body, and a refusal is still reported at the command that was
refused. A caller that knows the next message for the same key passes it as `then`: its
envelope goes out in the same write as this message's data (content may be the first
command of a group, RFC 2920 3.1), so a run of messages costs one round trip each. Its
replies are read by the next `send`; a connection whose envelope written ahead is not
used (another message comes, the last data was refused, the caller stops) is closed
without a word, which abandons that transaction: its data was never sent.

Whatever goes wrong inside a transaction, an SMTP refusal or an exception of our own, the
connection is reset (RSET) or dropped before the next message uses it: one message's
failure never leaks into the next one's transaction.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from rotator.endpoint import SmtpEndpoint, endpoint_from_url
from rotator.envelope import UnencodableAddress, WireAddress, wire_address
from rotator.reply import SmtpReply, Stage
from rotator.session import (
    Failed,
    Progress,
    alive,
    describe,
    open_session,
    quit_politely,
    send_payload,
    spoke_out_of_turn,
    step,
)
from rotator.wire import (
    ahead_commands,
    begin,
    pipelined_envelope,
    readable,
    stepwise_envelope,
)

__all__ = ["NextMessage", "SmtpEndpoint", "SmtpPool", "endpoint_from_url"]

log = logging.getLogger(__name__)

# An idle connection older than this is probed with NOOP before use: servers drop
# idle clients silently (Postfix smtpd_timeout, Gmail after a few minutes).
PROBE_AFTER_SECONDS = 5.0


@dataclass
class _Connection:
    smtp: smtplib.SMTP
    endpoint: SmtpEndpoint
    last_used: float
    messages: int = 0
    # The next message's envelope, written after the last data; its replies are unread.
    ahead: bytes | None = None


class NextMessage(NamedTuple):
    """The message the caller sends next over the same key, if it sends one."""

    envelope_from: str
    recipient: str
    data: bytes


def _retire(conn: _Connection) -> None:
    """QUIT, unless an envelope went out ahead: the server may be reading data then, and
    only closing the connection abandons that transaction."""
    if conn.ahead is None:
        quit_politely(conn.smtp)
    else:
        conn.smtp.close()


class SmtpPool:
    def __init__(
        self,
        *,
        idle_seconds: float = 60.0,
        max_messages_per_connection: int = 500,
        max_per_host: int = 4,
        max_open: int = 100,
    ) -> None:
        self._idle_seconds = idle_seconds
        self._max_messages = max_messages_per_connection
        self._max_per_host = max_per_host
        self._max_open = max_open
        self._conns: dict[str, _Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def send(
        self,
        key: str,
        endpoint: SmtpEndpoint,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        then: NextMessage | None = None,
    ) -> SmtpReply:
        try:
            sender = wire_address(envelope_from)
        except UnencodableAddress as exc:
            return SmtpReply.from_error("address_unencodable", str(exc), Stage.MAIL)
        try:
            target = wire_address(recipient)
        except UnencodableAddress as exc:
            return SmtpReply.from_error("address_unencodable", str(exc), Stage.RCPT)
        with self._lock_for(key):
            progress = Progress()
            try:
                return self._send(key, endpoint, sender, target, data, progress, then)
            except Failed as failed:
                self._drop(key)
                return failed.reply.at(progress.stage)
            except Exception as exc:
                # A bug or an encoding error of ours, possibly mid-transaction: the
                # connection is dropped so nothing of this message reaches the next one.
                self._drop(key)
                log.warning(
                    "smtp.client_error",
                    extra={"key": key, "stage": progress.stage.value, "error": describe(exc)},
                )
                kind = "outcome_lost" if progress.stage is Stage.DOT else "client_error"
                return SmtpReply.from_error(kind, describe(exc), progress.stage)

    def check(self, endpoint: SmtpEndpoint) -> SmtpReply:
        """Health check on a fresh connection: connect, EHLO, STARTTLS, AUTH, NOOP."""
        progress = Progress()
        try:
            smtp = open_session(endpoint, progress)
        except Failed as failed:
            return failed.reply.at(progress.stage)
        try:
            code, message = step(smtp, smtp.noop)
            return SmtpReply.parse(code, message, Stage.NOOP)
        except Failed as failed:
            return failed.reply.at(Stage.NOOP)
        finally:
            quit_politely(smtp)

    def close(self, key: str) -> None:
        with self._lock_for(key):
            conn = self._conns.pop(key, None)
            if conn is not None:
                _retire(conn)

    def close_all(self) -> None:
        for key in list(self._conns):
            self.close(key)

    def open_connections(self) -> dict[tuple[str, int], int]:
        """Open connections per (host, port)."""
        counts: dict[tuple[str, int], int] = {}
        for conn in list(self._conns.values()):
            server = (conn.endpoint.host, conn.endpoint.port)
            counts[server] = counts.get(server, 0) + 1
        return counts

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

    def _connection(
        self, key: str, endpoint: SmtpEndpoint, progress: Progress
    ) -> tuple[_Connection, bool]:
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
                _retire(conn)
                conn = None
            elif idle > PROBE_AFTER_SECONDS and (conn.ahead is not None or not alive(conn.smtp)):
                self._drop(key)
                conn = None
        if conn is not None:
            return conn, True
        self._make_room(key, endpoint, now)
        conn = _Connection(open_session(endpoint, progress), endpoint, now)
        self._conns[key] = conn
        return conn, False

    def _make_room(self, key: str, endpoint: SmtpEndpoint, now: float) -> None:
        """Before opening a connection for `key`: close the idle ones, then the least
        recently used of the same server (and of all) while the bounds are reached. A
        connection in use by another thread (its key's lock held) is never touched."""
        for other, conn in list(self._conns.items()):
            if other != key and now - conn.last_used > self._idle_seconds:
                self._close_if_free(other)
        server = (endpoint.host, endpoint.port)

        def same_server(conn: _Connection) -> bool:
            return (conn.endpoint.host, conn.endpoint.port) == server

        for bound, among in ((self._max_per_host, same_server), (self._max_open, None)):
            while True:
                open_now = [
                    (c.last_used, k)
                    for k, c in list(self._conns.items())
                    if k != key and (among is None or among(c))
                ]
                if len(open_now) < bound:
                    break
                closed = False
                for _, oldest in sorted(open_now):
                    if self._close_if_free(oldest):
                        closed = True
                        break
                if not closed:
                    break  # every one is in use: opening one more beats waiting

    def _close_if_free(self, key: str) -> bool:
        lock = self._lock_for(key)
        if not lock.acquire(blocking=False):
            return False
        try:
            conn = self._conns.pop(key, None)
            if conn is not None:
                _retire(conn)
            return conn is not None
        finally:
            lock.release()

    def _send(
        self,
        key: str,
        endpoint: SmtpEndpoint,
        sender: WireAddress,
        target: WireAddress,
        data: bytes,
        progress: Progress,
        then: NextMessage | None,
    ) -> SmtpReply:
        conn, reused = self._connection(key, endpoint, progress)
        if conn.ahead is not None and conn.ahead != ahead_commands(conn.smtp, sender, target, data):
            # An envelope written ahead for another message: abandoned with its connection.
            self._drop(key)
            conn, reused = self._connection(key, endpoint, progress)
        smtp = conn.smtp
        needs_smtputf8 = sender.needs_smtputf8 or target.needs_smtputf8
        if needs_smtputf8 and not smtp.has_extn("smtputf8"):
            # Refused before MAIL: no transaction is open, the connection stays usable.
            who = "recipient" if target.needs_smtputf8 else "sender"
            return SmtpReply.from_error(
                "address_unencodable",
                f"the {who} has a non-ASCII local part and the server does not offer SMTPUTF8",
                Stage.RCPT if target.needs_smtputf8 else Stage.MAIL,
            )
        try:
            return self._transaction(
                key, conn, reused, endpoint, sender, target, data, progress, then
            )
        finally:
            smtp.command_encoding = "ascii"  # smtplib leaves it at utf-8 after SMTPUTF8

    def _transaction(
        self,
        key: str,
        conn: _Connection,
        reused: bool,
        endpoint: SmtpEndpoint,
        sender: WireAddress,
        target: WireAddress,
        data: bytes,
        progress: Progress,
        then: NextMessage | None,
    ) -> SmtpReply:
        smtp = conn.smtp
        conn.messages += 1
        progress.stage = Stage.MAIL
        # Only ever this message's envelope: _send dropped a connection holding another's.
        written, conn.ahead = conn.ahead is not None, None
        try:
            pipelined, code, message = begin(smtp, sender, target, data, written=written)
        except Failed:
            if not reused:
                raise
            pipelined, code, message = False, 421, b""
        if code == 421 and reused:
            # A reused connection the server already gave up on (idle timeout, per-
            # connection message cap): nothing of the payload was sent (at most the
            # envelope commands), so opening a fresh connection once is a reconnect, not
            # a retry of the message.
            self._drop(key)
            conn, _ = self._connection(key, endpoint, progress)
            smtp = conn.smtp
            conn.messages += 1
            progress.stage = Stage.MAIL
            pipelined, code, message = begin(smtp, sender, target, data)
        conn.last_used = time.monotonic()

        def drop() -> None:
            self._drop(key)

        if pipelined:
            refusal = pipelined_envelope(smtp, code, message, progress, drop)
        else:
            refusal = stepwise_envelope(smtp, code, message, target, progress, drop)
        if refusal is not None:
            return refusal
        if written and spoke_out_of_turn(smtp):
            # Its 354 came a while ago, while the last message was being finished.
            drop()
            return SmtpReply.from_error(
                "connection_lost", "the server closed the connection in DATA", Stage.DATA
            )
        ahead = self._ahead(conn, then)
        send_payload(smtp, data, ahead or b"")
        conn.ahead = ahead
        # The end-of-data dot is on its way: from here on, no reply means "unknown".
        progress.stage = Stage.DOT
        try:
            code, message = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise Failed(SmtpReply.from_error("outcome_lost", describe(exc))) from None
        conn.last_used = time.monotonic()
        if not readable(code):
            # smtplib's -1: no three-digit code. The server may well have taken the
            # message, and the dialogue is out of step: unknown, and a fresh connection.
            self._drop(key)
            return SmtpReply.from_error(
                "outcome_lost",
                f"unreadable reply after the final dot: {message[:120]!r}",
                Stage.DOT,
            )
        reply = SmtpReply.parse(code, message, Stage.DOT)
        if code == 421 or (conn.ahead is not None and not 200 <= code < 300):
            # A refused message ends the caller's run: the next envelope is abandoned.
            self._drop(key)
        log.debug("smtp.sent", extra={"key": key, "smtp_code": code})
        return reply

    def _ahead(self, conn: _Connection, then: NextMessage | None) -> bytes | None:
        """The envelope of `then` to write after this data, when it can go on this
        connection: PIPELINING offered, and not the connection's last message."""
        if then is None or conn.messages >= self._max_messages:
            return None
        try:
            sender = wire_address(then.envelope_from)
            target = wire_address(then.recipient)
        except UnencodableAddress:
            return None  # its own send reports that, before any SMTP
        return ahead_commands(conn.smtp, sender, target, then.data)
