"""SmtpPool with PIPELINING (RFC 2920): MAIL FROM, RCPT TO and DATA in one write where the
server offers it, against real aiosmtpd servers with and without it. Every refusal must
come back exactly as from the one-command-at-a-time dialogue: same code, text and stage,
the connection reset for the next message, and never a body sent for a refused envelope."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import pytest

from rotator.classify import Outcome, classify_reply
from rotator.reply import SmtpReply, Stage
from rotator.transport import SmtpPool
from tests.rotator.test_transport import FROM, endpoint, message
from tests.smtp_server import ScriptedSMTPServer


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[ScriptedSMTPServer]:
    """Both dialogues: what holds for one must hold for the other."""
    with ScriptedSMTPServer(pipelining=request.param) as server:
        yield server


def offers_pipelining(server: ScriptedSMTPServer) -> bool:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="probe.test") as smtp:
        smtp.ehlo()
        return smtp.has_extn("pipelining")


def the_read_with(server: ScriptedSMTPServer, command: bytes) -> bytes:
    """The one read of the server's in which `command` arrived, lower-cased (smtplib
    writes "mail FROM:", the pipelined envelope "MAIL FROM:")."""
    found = [read.lower() for read in server.reads if command.lower() in read.lower()]
    assert len(found) == 1, server.reads
    return found[0]


def body_was_sent(server: ScriptedSMTPServer, n: int) -> bool:
    return any(f"Message-ID: <m{n}@".encode() in read for read in server.reads)


def only_delivered(server: ScriptedSMTPServer, *numbers: int) -> bool:
    return [r.message_id for r in server.received] == [f"<m{n}@send.example.com>" for n in numbers]


def sent(reply: SmtpReply) -> bool:
    return (reply.code, reply.stage) == (250, Stage.DOT)


# --- the dialogue on the wire -----------------------------------------------------------


def test_the_test_servers_offer_pipelining_only_when_asked(
    server: ScriptedSMTPServer,
) -> None:
    assert offers_pipelining(server) is server.pipelining


def test_mail_rcpt_and_data_arrive_in_one_read_where_pipelining_is_offered(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    assert sent(pool.send("1", endpoint(pipelining), FROM, "bob@example.org", message(1)))
    envelope = the_read_with(pipelining, b"MAIL FROM:")
    assert envelope == f"mail from:<{FROM}>\r\nrcpt to:<bob@example.org>\r\ndata\r\n".encode()
    # The payload waited for DATA's 354: it came in a read of its own.
    assert b"mail from" not in the_read_with(pipelining, b"Message-ID: <m1@")


def test_one_command_at_a_time_where_pipelining_is_not_offered(pool: SmtpPool) -> None:
    with ScriptedSMTPServer(pipelining=False) as server:
        assert sent(pool.send("1", endpoint(server), FROM, "bob@example.org", message(1)))
        assert the_read_with(server, b"mail from:") == f"mail from:<{FROM}>\r\n".encode()
        assert the_read_with(server, b"rcpt to:") == b"rcpt to:<bob@example.org>\r\n"
        assert the_read_with(server, b"data\r\n") == b"data\r\n"


def test_many_messages_over_one_pipelined_connection(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(pipelining)
    replies = [pool.send("1", ep, FROM, f"r{n}@example.org", message(n)) for n in range(30)]
    assert all(sent(r) for r in replies)
    assert pipelining.connections == 1
    assert only_delivered(pipelining, *range(30))
    assert [r.recipients for r in pipelining.received] == [[f"r{n}@example.org"] for n in range(30)]


def test_mail_options_go_on_the_pipelined_mail_from(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(pipelining)
    data = "To: jörg@münchen.de\r\nSubject: hi\r\n\r\nGrüße.\r\n".encode()
    assert sent(pool.send("1", ep, FROM, "jörg@münchen.de", data))
    assert pipelining.mail_options[-1] == ["SMTPUTF8", "BODY=8BITMIME"]
    assert pipelining.received[-1].recipients == ["jörg@xn--mnchen-3ya.de"]
    envelope = the_read_with(pipelining, "rcpt to:<jörg@".encode())
    assert envelope.startswith(f"mail from:<{FROM}> smtputf8 body=8bitmime\r\n".encode())
    # The next, plain message on the same connection goes in ASCII, without options.
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert pipelining.mail_options[-1] == []
    assert pipelining.connections == 1


# --- refusals: the stage that refused, then a clean next message ------------------------


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (550, "5.7.1 Sender address rejected", Outcome.ACCOUNT_PAUSED),
        (452, "4.3.1 Insufficient system storage", Outcome.DEFERRED),
        (421, "4.7.0 Too many errors, closing connection", Outcome.DEFERRED),
    ],
)
def test_a_mail_from_refusal_is_reported_at_mail(
    server: ScriptedSMTPServer, pool: SmtpPool, code: int, text: str, outcome: Outcome
) -> None:
    server.fail_mail(code, text, times=1)
    ep = endpoint(server)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (code, text[:5], Stage.MAIL)
    assert refused.text == text[6:]
    assert classify_reply(refused).outcome is outcome
    # The 503s that answered the pipelined RCPT and DATA were read, not taken for the
    # next message's replies.
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(3)))
    assert only_delivered(server, 2, 3)
    assert not body_was_sent(server, 1)
    assert server.connections == (2 if code == 421 else 1)


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (550, "5.1.1 <gone@example.org>: User unknown", Outcome.BOUNCED),
        (450, "4.2.0 <gone@example.org>: Greylisted, try again later", Outcome.DEFERRED),
        (452, "4.5.3 Too many recipients from this sender", Outcome.DEFERRED),
    ],
)
def test_a_recipient_refusal_is_reported_at_rcpt(
    server: ScriptedSMTPServer, pool: SmtpPool, code: int, text: str, outcome: Outcome
) -> None:
    server.fail_rcpt("gone@example.org", code, text)
    ep = endpoint(server)
    refused = pool.send("1", ep, FROM, "gone@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (code, text[:5], Stage.RCPT)
    verdict = classify_reply(refused)
    assert verdict.outcome is outcome
    assert not verdict.account_failure
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(server, 2)
    assert not body_was_sent(server, 1)
    assert server.connections == 1


@pytest.mark.parametrize(
    ("code", "text"),
    [(554, "5.7.1 Relay access denied"), (451, "4.3.0 Try again later")],
)
def test_a_data_command_refusal_is_reported_at_data(
    server: ScriptedSMTPServer, pool: SmtpPool, code: int, text: str
) -> None:
    server.fail_data_command(code, text, times=1)
    ep = endpoint(server)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (code, text[:5], Stage.DATA)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(server, 2)
    assert not body_was_sent(server, 1)
    assert server.connections == 1


def test_a_refusal_after_the_final_dot_is_reported_at_dot(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    server.fail_all(554, "5.7.1 Message rejected: content", times=1)
    ep = endpoint(server)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (554, "5.7.1", Stage.DOT)
    assert classify_reply(refused).outcome is Outcome.FAILED
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(server, 2)
    assert server.connections == 1


def test_a_server_that_accepts_data_after_refusing_the_recipient_gets_a_lone_dot(
    pipelining: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    pipelining.accept_data_without_recipients()
    pipelining.fail_rcpt("gone@example.org", 550, "5.1.1 User unknown")
    ep = endpoint(pipelining)
    refused = pool.send("1", ep, FROM, "gone@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (550, "5.1.1", Stage.RCPT)
    assert classify_reply(refused).outcome is Outcome.BOUNCED
    assert pipelining.data_without_recipients == [b""]  # the dot, and nothing before it
    assert not body_was_sent(pipelining, 1)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(pipelining, 2)
    assert pipelining.connections == 1


def test_a_server_that_accepts_data_after_refusing_mail_from_gets_a_lone_dot(
    pipelining: ScriptedSMTPServer, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelining.accept_data_without_recipients()
    pipelining.fail_mail(550, "5.7.1 Sender rejected", times=1)
    real_getreply = smtplib.SMTP.getreply
    codes: list[int] = []

    def recording_getreply(self: smtplib.SMTP) -> tuple[int, bytes]:
        code, text = real_getreply(self)
        codes.append(code)
        return code, text

    monkeypatch.setattr(smtplib.SMTP, "getreply", recording_getreply)
    ep = endpoint(pipelining)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (refused.code, refused.enhanced, refused.stage) == (550, "5.7.1", Stage.MAIL)
    # The greeting and EHLO, then MAIL, RCPT ("need MAIL"), DATA, the lone dot, RSET.
    assert codes == [220, 250, 550, 503, 354, 554, 250]
    assert pipelining.data_without_recipients == [b""]
    assert not body_was_sent(pipelining, 1)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(pipelining, 2)
    assert pipelining.connections == 1


# --- failures on the wire ---------------------------------------------------------------


def test_a_reused_connection_closed_by_the_server_reconnects_once(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(server)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(1)))
    server.disconnect_all()
    time.sleep(0.05)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert server.connections == 2
    assert only_delivered(server, 1, 2)


def test_a_reused_connection_answered_with_421_reconnects_once(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(server)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(1)))
    server.fail_mail(421, "4.4.2 Idle timeout, closing connection", times=1)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert server.connections == 2
    assert only_delivered(server, 1, 2)


def test_a_reused_connection_that_keeps_failing_is_not_retried_twice(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(server)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(1)))
    server.fail_mail(421, "4.7.0 Try again later, closing connection", times=2)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(2))
    assert (refused.code, refused.stage) == (421, Stage.MAIL)
    assert server.connections == 2
    assert only_delivered(server, 1)


def test_a_refusal_on_a_reused_connection_is_the_outcome_not_a_reason_to_reconnect(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(server)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(1)))
    server.fail_mail(550, "5.7.1 Sender rejected", times=1)
    refused = pool.send("1", ep, FROM, "bob@example.org", message(2))
    assert (refused.code, refused.stage) == (550, Stage.MAIL)
    assert server.connections == 1
    assert only_delivered(server, 1)
    assert not body_was_sent(server, 2)


def test_a_connection_lost_at_data_is_deferred_and_not_retried(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    """A reply (MAIL's) came on the reused connection: no reconnect, the message defers."""
    ep = endpoint(server)
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(1)))
    server.drop_data_when(lambda n: n == 2)
    lost = pool.send("1", ep, FROM, "bob@example.org", message(2))
    assert (lost.error_kind, lost.stage) == ("connection_lost", Stage.DATA)
    assert classify_reply(lost).outcome is Outcome.DEFERRED
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(3)))
    assert only_delivered(server, 1, 3)
    assert server.connections == 2


def test_no_reply_after_the_dot_is_an_outcome_lost(
    server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    server.drop_after_data()
    ep = endpoint(server)
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (reply.error_kind, reply.stage) == ("outcome_lost", Stage.DOT)
    assert classify_reply(reply).outcome is Outcome.UNKNOWN
    assert sent(pool.send("1", ep, FROM, "bob@example.org", message(2)))
    assert only_delivered(server, 1, 2)  # the first did arrive: never resent


def test_an_exception_reading_the_pipelined_replies_drops_the_connection(
    pipelining: ScriptedSMTPServer, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = endpoint(pipelining)
    assert sent(pool.send("1", ep, FROM, "first@example.org", message(1)))
    real_getreply = smtplib.SMTP.getreply
    calls = {"n": 0}

    def getreply_that_breaks_at_rcpt(self: smtplib.SMTP) -> tuple[int, bytes]:
        calls["n"] += 1
        if calls["n"] == 2:  # MAIL's reply read, RCPT's next
            raise UnicodeDecodeError("ascii", b"\xff", 0, 1, "simulated")
        return real_getreply(self)

    monkeypatch.setattr(smtplib.SMTP, "getreply", getreply_that_breaks_at_rcpt)
    broken = pool.send("1", ep, FROM, "second@example.org", message(2))
    assert (broken.error_kind, broken.stage) == ("client_error", Stage.RCPT)
    # Its DATA's 354 was never read: on that connection the next message would be out
    # of step; it goes on a fresh one.
    assert sent(pool.send("1", ep, FROM, "third@example.org", message(3)))
    assert pipelining.connections == 2
    assert only_delivered(pipelining, 1, 3)
    assert not body_was_sent(pipelining, 2)
