"""SmtpPool with the next message's envelope written ahead (`then`): after DATA's 354, this
message's data and the next MAIL FROM, RCPT TO and DATA go in one write (RFC 2920 3.1), so
a run of messages costs one round trip each. Against real aiosmtpd servers: each message
still arrives once, in order, each refusal at its own stage; and an envelope written ahead
that is not used never becomes a message (its connection is closed, which abandons it)."""

from __future__ import annotations

import smtplib
import time

import pytest

from rotator import transport
from rotator.classify import Outcome, classify_reply
from rotator.reply import SmtpReply, Stage
from rotator.session import Failed, send_payload
from rotator.transport import NextMessage, SmtpPool
from tests.rotator.test_transport import FROM, endpoint, message
from tests.rotator.test_transport_pipelining import body_was_sent, only_delivered, sent
from tests.smtp_server import ScriptedSMTPServer


def to(n: int) -> str:
    return f"r{n}@example.org"


def then(n: int) -> NextMessage:
    return NextMessage(FROM, to(n), message(n))


def send_run(pool: SmtpPool, server: ScriptedSMTPServer, numbers: list[int]) -> list[SmtpReply]:
    """Each message sent with the next one of the run as `then`, as the send path does."""
    ep = endpoint(server)
    replies = []
    for position, n in enumerate(numbers):
        following = then(numbers[position + 1]) if position + 1 < len(numbers) else None
        replies.append(pool.send("1", ep, FROM, to(n), message(n), then=following))
    return replies


def reads_with(server: ScriptedSMTPServer, needle: bytes) -> list[bytes]:
    return [read.lower() for read in server.reads if needle.lower() in read.lower()]


def test_each_message_goes_with_the_next_envelope_in_one_write(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    replies = send_run(pool, pipelining, list(range(1, 21)))
    assert all(sent(r) for r in replies)
    assert only_delivered(pipelining, *range(1, 21))
    assert [r.recipients for r in pipelining.received] == [[to(n)] for n in range(1, 21)]
    assert pipelining.connections == 1
    for n in range(1, 20):
        (read,) = reads_with(pipelining, f"Message-ID: <m{n}@".encode())
        assert read.endswith(
            f"\r\n.\r\nmail from:<{FROM}>\r\nrcpt to:<{to(n + 1)}>\r\ndata\r\n".encode()
        ), read
    # The last one has nothing after it, and no envelope was ever written twice.
    (last,) = reads_with(pipelining, b"Message-ID: <m20@")
    assert last.endswith(b"\r\n.\r\n")
    assert len(reads_with(pipelining, b"mail from:")) == 20


def test_without_pipelining_then_changes_nothing(pool: SmtpPool) -> None:
    with ScriptedSMTPServer(pipelining=False) as server:
        replies = send_run(pool, server, [1, 2, 3])
        assert all(sent(r) for r in replies)
        assert only_delivered(server, 1, 2, 3)
        assert all(read.startswith(b"mail from:") for read in reads_with(server, b"mail from:"))
        assert server.connections == 1


def test_a_refusal_of_the_envelope_written_ahead_is_the_next_messages_own(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    pipelining.fail_rcpt(to(2), 550, "5.1.1 No such user", times=1)
    one, two, three = send_run(pool, pipelining, [1, 2, 3])
    assert sent(one)
    assert (two.code, two.enhanced, two.stage) == (550, "5.1.1", Stage.RCPT)
    assert sent(three)
    assert only_delivered(pipelining, 1, 3)
    assert not body_was_sent(pipelining, 2)
    assert pipelining.connections == 1  # a refusal resets the transaction, as ever


def test_an_envelope_written_ahead_for_another_message_is_abandoned(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(pipelining)
    assert sent(pool.send("1", ep, FROM, to(1), message(1), then=then(2)))
    # Not message 2 after all (the caller stopped, the row went back): message 3 goes on a
    # new connection, and message 2's envelope, in DATA on the old one, never got data.
    assert sent(pool.send("1", ep, FROM, to(3), message(3)))
    assert pipelining.connections == 2
    assert only_delivered(pipelining, 1, 3)
    assert not body_was_sent(pipelining, 2)


def test_a_message_refused_at_the_dot_abandons_the_envelope_written_after_it(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    pipelining.fail_all(554, "5.7.1 Message rejected: content", times=1)
    ep = endpoint(pipelining)
    refused = pool.send("1", ep, FROM, to(1), message(1), then=then(2))
    assert (refused.code, refused.stage) == (554, Stage.DOT)
    assert pool.open_connections() == {}  # the run ends here; so does the connection
    # Sent again as the caller would, later: from a fresh connection, once.
    assert sent(pool.send("1", ep, FROM, to(2), message(2)))
    assert only_delivered(pipelining, 2)
    assert pipelining.connections == 2


@pytest.mark.parametrize("how", ["close", "close_all"])
def test_closing_with_an_envelope_written_ahead_sends_no_quit_into_the_data(
    pipelining: ScriptedSMTPServer, pool: SmtpPool, how: str
) -> None:
    ep = endpoint(pipelining)
    assert sent(pool.send("1", ep, FROM, to(1), message(1), then=then(2)))
    pool.close("1") if how == "close" else pool.close_all()
    deadline = time.monotonic() + 5
    while pipelining.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pipelining.open_connections == 0
    assert only_delivered(pipelining, 1)
    assert not reads_with(pipelining, b"quit")


def test_an_idle_connection_with_an_envelope_written_ahead_is_replaced_not_probed(
    pipelining: ScriptedSMTPServer, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = endpoint(pipelining)
    assert sent(pool.send("1", ep, FROM, to(1), message(1), then=then(2)))
    monkeypatch.setattr(transport, "PROBE_AFTER_SECONDS", 0.0)
    time.sleep(0.01)
    # A NOOP now would be read as the pending MAIL FROM's reply: no probe, a new connection.
    assert sent(pool.send("1", ep, FROM, to(2), message(2)))
    assert not reads_with(pipelining, b"noop")
    assert pipelining.connections == 2
    assert only_delivered(pipelining, 1, 2)


def test_no_envelope_is_written_ahead_on_a_connections_last_message(
    pipelining: ScriptedSMTPServer,
) -> None:
    pool = SmtpPool(max_messages_per_connection=2)
    try:
        assert all(sent(r) for r in send_run(pool, pipelining, [1, 2, 3, 4]))
    finally:
        pool.close_all()
    assert only_delivered(pipelining, 1, 2, 3, 4)
    assert pipelining.connections == 2
    (second,) = reads_with(pipelining, b"Message-ID: <m2@")
    assert second.endswith(b"\r\n.\r\n")  # the connection's last: nothing after it
    (first,) = reads_with(pipelining, b"Message-ID: <m1@")
    assert first.endswith(f"rcpt to:<{to(2)}>\r\ndata\r\n".encode())


def test_a_server_that_closes_in_data_gets_no_data_and_the_message_is_deferred(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(pipelining)
    assert sent(pool.send("1", ep, FROM, to(1), message(1), then=then(2)))
    # The server answered the envelope written ahead (354 included), then went away.
    pipelining.disconnect_all()
    deadline = time.monotonic() + 5
    while pipelining.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    lost = pool.send("1", ep, FROM, to(2), message(2))
    assert (lost.error_kind, lost.stage) == ("connection_lost", Stage.DATA)
    assert classify_reply(lost).outcome is Outcome.DEFERRED  # before the data: tried again
    assert not body_was_sent(pipelining, 2)
    assert sent(pool.send("1", ep, FROM, to(2), message(2)))
    assert only_delivered(pipelining, 1, 2)
    assert pipelining.connections == 2


# --- the write itself: where the final dot was taken ----------------------------------


class _Socket:
    """Takes `chunk` bytes a call, then fails once `fail_after` bytes were taken."""

    def __init__(self, chunk: int, fail_after: int) -> None:
        self.chunk, self.fail_after, self.taken = chunk, fail_after, b""

    def send(self, data: memoryview) -> int:
        if len(self.taken) >= self.fail_after:
            raise ConnectionResetError("reset by peer")
        part = bytes(data[: self.chunk])
        self.taken += part
        return len(part)


def _smtp_with(sock: _Socket) -> smtplib.SMTP:
    smtp = smtplib.SMTP()
    smtp.sock = sock  # type: ignore[assignment]
    return smtp


def test_a_write_failing_before_the_dot_was_taken_is_connection_lost() -> None:
    data = message(1)
    sock = _Socket(chunk=1, fail_after=len(data) + 2)  # ".\r" taken, not the "\n"
    with pytest.raises(Failed) as failed:
        send_payload(_smtp_with(sock), data, b"MAIL FROM:<a@b.example>\r\n")
    assert failed.value.reply.error_kind == "connection_lost"
    assert not sock.taken.endswith(b"\r\n.\r\n")


def test_a_write_failing_after_the_dot_was_taken_is_outcome_lost() -> None:
    data = message(1)
    payload_length = len(data) + len(b".\r\n")
    sock = _Socket(chunk=1, fail_after=payload_length)  # dot taken, the envelope not
    with pytest.raises(Failed) as failed:
        send_payload(_smtp_with(sock), data, b"MAIL FROM:<a@b.example>\r\n")
    assert failed.value.reply.error_kind == "outcome_lost"
    assert failed.value.reply.stage is Stage.DOT
    assert sock.taken.endswith(b"\r\n.\r\n")


def test_a_whole_write_takes_data_dot_and_envelope_in_order() -> None:
    data = message(1)
    sock = _Socket(chunk=3, fail_after=10**6)
    send_payload(_smtp_with(sock), data, b"MAIL FROM:<a@b.example>\r\n")
    assert sock.taken == data + b".\r\nMAIL FROM:<a@b.example>\r\n"
