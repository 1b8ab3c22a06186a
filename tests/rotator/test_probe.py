"""The SMTP health probe against real servers (aiosmtpd): AUTH only over STARTTLS with a
self-signed certificate trusted through a CA file, implicit TLS, bad credentials, a server
that is down, an untrusted certificate; the transcript never shows a secret."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.endpoint import SmtpEndpoint
from rotator.probe import DONE, probe
from rotator.providers.base import Security
from tests.health_smtp import AuthSMTPServer, TlsFiles, closed_port, self_signed


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("probe-tls"))


@pytest.fixture
def starttls_server(tls: TlsFiles) -> Iterator[AuthSMTPServer]:
    with AuthSMTPServer("starttls", tls) as server:
        yield server


def _endpoint(server: AuthSMTPServer, tls: TlsFiles, **overrides: object) -> SmtpEndpoint:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": Security(server.security),
        "username": server.username,
        "password": server.password,
        "timeout": 5.0,
        "ca_file": str(tls.cert),
    }
    values.update(overrides)
    return SmtpEndpoint(**values)  # type: ignore[arg-type]


def _secrets(server: AuthSMTPServer, password: str) -> list[str]:
    user = server.username
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
    ]


def _assert_masked(transcript: list[str], secrets: list[str]) -> None:
    text = "\n".join(transcript)
    for secret in secrets:
        assert secret not in text


def test_starttls_and_auth_with_the_trusted_self_signed_certificate_passes(
    starttls_server: AuthSMTPServer, tls: TlsFiles
) -> None:
    result = probe(_endpoint(starttls_server, tls))
    assert result.ok, result.transcript
    assert result.stage == DONE and result.error is None
    commands = [line for line in result.transcript if line.startswith("C: ")]
    assert [c.split()[1].upper() for c in commands] == ["EHLO", "STARTTLS", "EHLO", "AUTH", "NOOP",
                                                "QUIT"]  # fmt: skip
    assert "C: AUTH PLAIN ****" in result.transcript
    assert any(line.startswith("S: 235") for line in result.transcript)
    assert starttls_server.logins == [(starttls_server.username, True)]
    _assert_masked(result.transcript, _secrets(starttls_server, starttls_server.password))


def test_wrong_password_fails_at_auth_and_masks_every_attempt(
    starttls_server: AuthSMTPServer, tls: TlsFiles
) -> None:
    wrong = "not-the-Pa55word"
    result = probe(_endpoint(starttls_server, tls, password=wrong))
    assert not result.ok
    assert result.stage == "auth"
    assert result.error is not None and result.error.startswith("535")
    # smtplib tries PLAIN, then LOGIN (whose password goes after a 334 challenge).
    assert "C: AUTH PLAIN ****" in result.transcript
    assert "C: ****" in result.transcript
    assert [ok for _, ok in starttls_server.logins] == [False, False]
    _assert_masked(result.transcript, _secrets(starttls_server, wrong))


def test_auth_is_refused_before_starttls(starttls_server: AuthSMTPServer, tls: TlsFiles) -> None:
    # The same server asked without STARTTLS: it offers no AUTH in the clear.
    result = probe(_endpoint(starttls_server, tls, security=Security.NONE))
    assert not result.ok
    assert result.stage == "auth"
    assert starttls_server.logins == []


def test_untrusted_certificate_fails_at_tls(starttls_server: AuthSMTPServer, tls: TlsFiles) -> None:
    result = probe(_endpoint(starttls_server, tls, ca_file=None))
    assert not result.ok
    assert result.stage == "tls"
    assert result.error is not None and "tls_failed" in result.error
    assert starttls_server.logins == []


def test_implicit_tls_passes(tls: TlsFiles) -> None:
    with AuthSMTPServer("tls", tls) as server:
        result = probe(_endpoint(server, tls))
    assert result.ok, result.transcript
    assert not any("STARTTLS" in line for line in result.transcript)
    assert server.logins == [(server.username, True)]


def test_implicit_tls_against_a_plain_server_fails_at_tls(tls: TlsFiles) -> None:
    with AuthSMTPServer("none", None) as server:
        result = probe(_endpoint(server, tls, security=Security.TLS))
    assert not result.ok
    assert result.stage == "tls"


def test_server_that_is_down_fails_at_connect(tls: TlsFiles) -> None:
    endpoint = SmtpEndpoint(host="127.0.0.1", port=closed_port(), security=Security.STARTTLS,
                            username="u", password="p", timeout=3.0)  # fmt: skip
    result = probe(endpoint)
    assert not result.ok
    assert result.stage == "connect"
    assert result.error is not None and "connect_failed" in result.error


def test_test_send_reaches_the_account_itself(
    starttls_server: AuthSMTPServer, tls: TlsFiles
) -> None:
    result = probe(_endpoint(starttls_server, tls), test_send_from="me@health.example")
    assert result.ok, result.transcript
    assert starttls_server.received == [("me@health.example", ["me@health.example"])]
    assert any("bytes of message data" in line for line in result.transcript)


def test_cert_files_are_real_files(tls: TlsFiles) -> None:
    assert Path(tls.cert).read_text().startswith("-----BEGIN CERTIFICATE-----")
