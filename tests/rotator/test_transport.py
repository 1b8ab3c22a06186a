"""SmtpPool against a real SMTP server (aiosmtpd), over loopback."""

from __future__ import annotations

import datetime
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rotator.classify import Outcome, classify_reply
from rotator.providers.base import Security
from rotator.reply import Stage
from rotator.transport import SmtpEndpoint, SmtpPool, endpoint_from_url
from tests.smtp_server import ScriptedSMTPServer

FROM = "ann@send.example.com"


def message(n: int = 1, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        f"From: {FROM}\r\nTo: bob@example.org\r\nSubject: test {n}\r\n"
        f"Message-ID: <m{n}@send.example.com>\r\n\r\n"
    ).encode() + body


def endpoint(server: ScriptedSMTPServer, **overrides: object) -> SmtpEndpoint:
    fields: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": Security.NONE,
        "timeout": 5.0,
        "local_hostname": "client.test",
    }
    fields.update(overrides)
    return SmtpEndpoint(**fields)  # type: ignore[arg-type]


def test_one_connection_is_reused_across_50_messages(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(smtp_server)
    replies = [pool.send("1", ep, FROM, f"r{n}@example.org", message(n)) for n in range(50)]
    assert {r.code for r in replies} == {250}
    assert smtp_server.connections == 1
    assert len(smtp_server.received) == 50
    assert [len(smtp_server.messages_with_id(f"<m{n}@send.example.com>")) for n in range(50)] == [
        1
    ] * 50


def test_each_key_has_its_own_connection(smtp_server: ScriptedSMTPServer, pool: SmtpPool) -> None:
    ep = endpoint(smtp_server)
    for n in range(3):
        pool.send("1", ep, FROM, "a@example.org", message(n))
        pool.send("2", ep, FROM, "b@example.org", message(n))
    assert smtp_server.connections == 2


def test_reopens_after_the_server_dropped_an_idle_connection(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(smtp_server)
    assert pool.send("1", ep, FROM, "a@example.org", message(1)).code == 250
    smtp_server.disconnect_all()
    time.sleep(0.05)
    # Nothing of this message had been sent when the stale connection failed at MAIL,
    # so the pool reconnects once and delivers it.
    assert pool.send("1", ep, FROM, "a@example.org", message(2)).code == 250
    assert smtp_server.connections == 2
    assert len(smtp_server.messages_for("a@example.org")) == 2


def test_recipient_refusal_is_returned_and_rset_keeps_the_connection(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    smtp_server.fail_rcpt("gone@example.org", 550, "5.1.1 The email account does not exist")
    ep = endpoint(smtp_server)
    refused = pool.send("1", ep, FROM, "gone@example.org", message(1))
    assert (refused.code, refused.enhanced) == (550, "5.1.1")
    assert classify_reply(refused).outcome is Outcome.BOUNCED
    ok = pool.send("1", ep, FROM, "bob@example.org", message(2))
    assert ok.code == 250
    assert smtp_server.connections == 1
    assert [r.recipients for r in smtp_server.received] == [["bob@example.org"]]


def test_421_is_returned_and_the_connection_replaced(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    smtp_server.fail_all(421, "4.7.0 Try again later, closing connection.", times=1)
    ep = endpoint(smtp_server)
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (reply.code, reply.enhanced) == (421, "4.7.0")
    assert classify_reply(reply).outcome is Outcome.DEFERRED
    assert pool.send("1", ep, FROM, "bob@example.org", message(2)).code == 250
    assert smtp_server.connections == 2
    assert len(smtp_server.received) == 1


def test_scripted_rule_sees_attempt_numbers(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    smtp_server.script(lambda rcpt, attempt: (451, "4.3.0 busy") if attempt < 3 else None)
    ep = endpoint(smtp_server)
    codes = [pool.send("1", ep, FROM, "bob@example.org", message(n)).code for n in range(4)]
    assert codes == [451, 451, 250, 250]
    assert smtp_server.attempts("bob@example.org") == 4
    assert smtp_server.connections == 1


def test_auth_failure_is_a_535_reply(pool: SmtpPool) -> None:
    with ScriptedSMTPServer(auth=("apikey", "right")) as server:
        bad = pool.send("1", endpoint(server, username="apikey", password="wrong"), FROM,
                        "bob@example.org", message(1))  # fmt: skip
        assert (bad.code, bad.enhanced) == (535, "5.7.8")
        assert classify_reply(bad, "sendgrid").outcome is Outcome.ACCOUNT_DISABLED
        good = endpoint(server, username="apikey", password="right")
        assert pool.send("1", good, FROM, "bob@example.org", message(2)).code == 250
        assert len(server.received) == 1


def test_missing_auth_is_refused_by_the_server(pool: SmtpPool) -> None:
    with ScriptedSMTPServer(auth=("u", "p")) as server:
        reply = pool.send("1", endpoint(server), FROM, "bob@example.org", message(1))
        assert reply.code == 530
        assert classify_reply(reply).outcome is Outcome.ACCOUNT_DISABLED


def test_drop_mid_data_is_connection_lost_and_nothing_is_received(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    smtp_server.drop_connection_mid_data()
    ep = endpoint(smtp_server)
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert reply.code is None and reply.error_kind == "connection_lost"
    assert classify_reply(reply).outcome is Outcome.DEFERRED
    assert smtp_server.received == []
    assert pool.send("1", ep, FROM, "bob@example.org", message(2)).code == 250
    assert smtp_server.connections == 2


def test_drop_after_data_is_outcome_lost(smtp_server: ScriptedSMTPServer, pool: SmtpPool) -> None:
    smtp_server.drop_after_data()
    ep = endpoint(smtp_server)
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert reply.error_kind == "outcome_lost"
    assert classify_reply(reply).outcome is Outcome.UNKNOWN
    assert len(smtp_server.received) == 1  # the server did get it: never resend
    assert pool.send("1", ep, FROM, "bob@example.org", message(2)).code == 250


def test_timeout_after_the_dot_is_outcome_lost(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    smtp_server.delay_data_reply(3.0)
    ep = endpoint(smtp_server, timeout=0.5)
    started = time.monotonic()
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert time.monotonic() - started < 2.0
    assert reply.error_kind == "outcome_lost"
    assert "timed out" in reply.text
    assert len(smtp_server.received) == 1


def test_timeout_against_a_server_that_never_answers(pool: SmtpPool) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; no greeting ever comes
        ep = SmtpEndpoint("127.0.0.1", silent.getsockname()[1], Security.NONE, timeout=0.5)
        started = time.monotonic()
        reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
        elapsed = time.monotonic() - started
    assert reply.error_kind == "timeout"
    assert 0.4 < elapsed < 2.0
    assert classify_reply(reply).outcome is Outcome.DEFERRED


def test_connection_refused_is_connect_failed(pool: SmtpPool) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    reply = pool.send("1", SmtpEndpoint("127.0.0.1", port, Security.NONE, timeout=2), FROM,
                      "bob@example.org", message(1))  # fmt: skip
    assert reply.error_kind == "connect_failed"


def test_max_messages_per_connection(smtp_server: ScriptedSMTPServer) -> None:
    pool = SmtpPool(max_messages_per_connection=3)
    ep = endpoint(smtp_server)
    for n in range(7):
        assert pool.send("1", ep, FROM, "bob@example.org", message(n)).code == 250
    pool.close_all()
    assert smtp_server.connections == 3


def test_idle_connections_are_replaced(smtp_server: ScriptedSMTPServer) -> None:
    pool = SmtpPool(idle_seconds=0.05)
    ep = endpoint(smtp_server)
    pool.send("1", ep, FROM, "bob@example.org", message(1))
    time.sleep(0.1)
    pool.send("1", ep, FROM, "bob@example.org", message(2))
    pool.close_all()
    assert smtp_server.connections == 2


def test_a_changed_endpoint_opens_a_new_connection(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    pool.send("1", endpoint(smtp_server), FROM, "bob@example.org", message(1))
    pool.send("1", endpoint(smtp_server, timeout=7.0), FROM, "bob@example.org", message(2))
    assert smtp_server.connections == 2


def test_close_ends_the_connection(smtp_server: ScriptedSMTPServer, pool: SmtpPool) -> None:
    ep = endpoint(smtp_server)
    pool.send("1", ep, FROM, "bob@example.org", message(1))
    pool.close("1")
    pool.close("never-opened")
    pool.send("1", ep, FROM, "bob@example.org", message(2))
    assert smtp_server.connections == 2


def test_data_is_dot_stuffed_and_line_endings_normalised(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    body = b".starts with a dot\n..two dots\r\n.\r\nlast line without newline"
    assert (
        pool.send("1", endpoint(smtp_server), FROM, "bob@example.org", message(1, body)).code == 250
    )
    got = smtp_server.received[0].data
    assert got.endswith(b".starts with a dot\r\n..two dots\r\n.\r\nlast line without newline\r\n")


def test_check_reports_health(smtp_server: ScriptedSMTPServer, pool: SmtpPool) -> None:
    assert pool.check(endpoint(smtp_server)).code == 250
    with ScriptedSMTPServer(auth=("u", "p")) as server:
        assert pool.check(endpoint(server, username="u", password="p")).code == 250
        assert pool.check(endpoint(server, username="u", password="x")).code == 535
    assert smtp_server.received == []


def test_passwords_are_not_in_the_endpoint_repr() -> None:
    ep = SmtpEndpoint("h", 587, Security.STARTTLS, username="u", password="s3cret")
    assert "s3cret" not in repr(ep) and "s3cret" not in str(ep)


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[ScriptedSMTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    with ScriptedSMTPServer(tls_context=context) as server:
        yield server


def test_starttls_to_a_sandbox_sink_without_verification(
    tls_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(tls_server, security=Security.STARTTLS, verify_tls=False)
    for n in range(3):
        assert pool.send("1", ep, FROM, "bob@example.org", message(n)).code == 250
    assert tls_server.connections == 1


def test_untrusted_certificate_is_tls_failed(
    tls_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(tls_server, host="localhost", security=Security.STARTTLS)
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert reply.error_kind == "tls_failed"
    assert classify_reply(reply).outcome is Outcome.DEFERRED
    assert tls_server.received == []


def test_starttls_required_but_not_offered_is_tls_failed(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    reply = pool.send("1", endpoint(smtp_server, security=Security.STARTTLS), FROM,
                      "bob@example.org", message(1))  # fmt: skip
    assert reply.error_kind == "tls_failed"
    assert smtp_server.received == []


# --- endpoint_from_url --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mailpit:1025", SmtpEndpoint("mailpit", 1025, Security.NONE)),
        ("smtp://127.0.0.1", SmtpEndpoint("127.0.0.1", 25, Security.NONE)),
        (
            "smtp+starttls://user:p%40ss@relay.example.com:587",
            SmtpEndpoint("relay.example.com", 587, Security.STARTTLS, "user", "p@ss"),
        ),
        (
            "smtp+starttls://relay.example.com",
            SmtpEndpoint("relay.example.com", 587, Security.STARTTLS),
        ),
        ("smtps://relay.example.com:465", SmtpEndpoint("relay.example.com", 465, Security.TLS)),
        (
            "smtps://sink:465?verify=false",
            SmtpEndpoint("sink", 465, Security.TLS, verify_tls=False),
        ),
    ],
)
def test_endpoint_from_url(url: str, expected: SmtpEndpoint) -> None:
    assert endpoint_from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mailpit:1025", "scheme"),
        ("mailpit:1025", "scheme"),
        ("smtp://:1025", "no host"),
        ("smtp://mailpit:notaport", "port"),
        ("smtp://mailpit:1025/inbox", "path"),
        ("smtp://mailpit:1025?tls=yes", "query"),
    ],
)
def test_endpoint_from_url_rejects_what_it_does_not_understand(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        endpoint_from_url(url)


# --- stages, international addresses, a transaction never leaks --------------------------


def test_every_reply_carries_the_stage_it_arrived_at(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(smtp_server)
    smtp_server.fail_rcpt("gone@example.org", 550, "5.1.1 <gone@example.org>: User unknown")
    assert pool.send("1", ep, FROM, "gone@example.org", message(1)).stage is Stage.RCPT
    assert pool.send("1", ep, FROM, "ok@example.org", message(2)).stage is Stage.DOT
    smtp_server.fail_all(554, "5.7.1 Message rejected: content", times=1)
    refused = pool.send("1", ep, FROM, "ok@example.org", message(3))
    assert (refused.code, refused.stage) == (554, Stage.DOT)
    closed = SmtpEndpoint("127.0.0.1", _closed_port(), Security.NONE, timeout=2.0)
    assert pool.send("2", closed, FROM, "ok@example.org", message(4)).stage is Stage.CONNECT


def test_auth_refusal_is_placed_at_the_auth_stage(pool: SmtpPool) -> None:
    with ScriptedSMTPServer(auth=("ann", "right")) as server:
        reply = pool.send("1", endpoint(server, username="ann", password="wrong"), FROM,
                          "bob@example.org", message(1))  # fmt: skip
    assert (reply.code, reply.stage) == (535, Stage.AUTH)


def test_an_idn_domain_goes_on_the_wire_idna_encoded(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    reply = pool.send("1", endpoint(smtp_server), FROM, "bob@münchen.de", message(1))
    assert reply.code == 250
    assert smtp_server.received[-1].recipients == ["bob@xn--mnchen-3ya.de"]


def test_a_non_ascii_local_part_goes_with_smtputf8_where_offered(pool: SmtpPool) -> None:
    data = "To: jörg@münchen.de\r\nSubject: hi\r\n\r\nHallo.\r\n".encode()
    with ScriptedSMTPServer(smtputf8=True) as server:
        reply = pool.send("1", endpoint(server), FROM, "jörg@münchen.de", data)
        assert reply.code == 250
        assert server.received[-1].recipients == ["jörg@xn--mnchen-3ya.de"]
        assert "SMTPUTF8" in server.mail_options[-1]
        # The next, plain message on the same connection is sent in ASCII as usual.
        assert pool.send("1", endpoint(server), FROM, "bob@example.org", message(2)).code == 250
        assert server.mail_options[-1] == []
        assert server.connections == 1


def test_a_non_ascii_local_part_fails_alone_where_smtputf8_is_not_offered(
    pool: SmtpPool,
) -> None:
    with ScriptedSMTPServer(smtputf8=False) as server:
        ep = endpoint(server)
        reply = pool.send("1", ep, FROM, "jörg@example.org", message(1))
        assert (reply.code, reply.error_kind, reply.stage) == (
            None,
            "address_unencodable",
            Stage.RCPT,
        )
        assert "SMTPUTF8" in reply.text
        # The recipient after it goes over the same connection, its transaction untouched.
        assert pool.send("1", ep, FROM, "bob@example.org", message(2)).code == 250
        assert server.connections == 1
        assert server.attempts("jörg@example.org") == 0


def test_a_domain_without_an_idna_form_fails_before_any_smtp(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    reply = pool.send("1", endpoint(smtp_server), FROM, "bob@exa\u200dmple.org", message(1))
    assert (reply.error_kind, reply.stage) == ("address_unencodable", Stage.RCPT)
    assert smtp_server.connections == 0


def test_an_exception_inside_a_transaction_drops_the_connection_for_the_next_message(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = endpoint(smtp_server)
    assert pool.send("1", ep, FROM, "first@example.org", message(1)).code == 250
    real_rcpt = smtplib.SMTP.rcpt
    calls = {"n": 0}

    def rcpt_that_breaks_once(self: smtplib.SMTP, recip: str, options: object = ()) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise UnicodeEncodeError("ascii", recip, 0, 1, "simulated")
        return real_rcpt(self, recip, options)  # type: ignore[arg-type]

    monkeypatch.setattr(smtplib.SMTP, "rcpt", rcpt_that_breaks_once)
    broken = pool.send("1", ep, FROM, "second@example.org", message(2))
    assert (broken.error_kind, broken.stage) == ("client_error", Stage.RCPT)
    # Without the reset the server would still be inside MAIL FROM and answer 503.
    after = pool.send("1", ep, FROM, "third@example.org", message(3))
    assert after.code == 250
    assert smtp_server.connections == 2
    assert [r.recipients for r in smtp_server.received] == [
        ["first@example.org"],
        ["third@example.org"],
    ]


def test_an_unreadable_reply_after_the_final_dot_is_an_outcome_lost(
    smtp_server: ScriptedSMTPServer, pool: SmtpPool
) -> None:
    ep = endpoint(smtp_server)
    smtp_server.garble_data_reply()
    reply = pool.send("1", ep, FROM, "bob@example.org", message(1))
    assert (reply.error_kind, reply.stage) == ("outcome_lost", Stage.DOT)
    assert classify_reply(reply).outcome is Outcome.UNKNOWN
    assert len(smtp_server.received) == 1  # the server did take it: never resend
    assert pool.send("1", ep, FROM, "next@example.org", message(2)).code == 250
    assert smtp_server.connections == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_connections_to_one_server_are_bounded_least_recently_used_first(
    smtp_server: ScriptedSMTPServer,
) -> None:
    """Six accounts on one relay with a bound of two: never more than two open; the one used
    longest ago is closed (politely) for the next, and the kept ones are reused."""
    pool = SmtpPool(max_per_host=2)
    ep = endpoint(smtp_server)
    try:
        for n in range(6):
            assert pool.send(str(n), ep, FROM, "bob@example.org", message(n)).code == 250
            assert pool.open_connections() == {("127.0.0.1", smtp_server.port): min(n + 1, 2)}
            _wait_for(lambda: smtp_server.open_connections <= 2)
        assert smtp_server.connections == 6
        # Account 5 and 4 are the open ones: using them again opens nothing.
        pool.send("5", ep, FROM, "bob@example.org", message(7))
        pool.send("4", ep, FROM, "bob@example.org", message(8))
        assert smtp_server.connections == 6
    finally:
        pool.close_all()


def test_the_total_bound_spans_servers_and_idle_connections_close_first() -> None:
    with ScriptedSMTPServer() as one, ScriptedSMTPServer() as two:
        pool = SmtpPool(max_per_host=10, max_open=3, idle_seconds=0.2)
        try:
            for n in range(3):
                pool.send(f"a{n}", endpoint(one), FROM, "bob@example.org", message(n))
            pool.send("b0", endpoint(two), FROM, "bob@example.org", message(9))
            assert sum(pool.open_connections().values()) == 3
            time.sleep(0.3)  # everything open is idle now
            pool.send("b1", endpoint(two), FROM, "bob@example.org", message(10))
            assert pool.open_connections() == {("127.0.0.1", two.port): 1}
            _wait_for(lambda: one.open_connections == 0)
        finally:
            pool.close_all()
