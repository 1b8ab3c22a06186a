"""SMTP servers for the health-check tests (aiosmtpd in a thread): AUTH required, offered
only over STARTTLS with a self-signed certificate made here (cryptography), or implicit
TLS from the first byte, or plain; and a port where nothing listens."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(folder: Path, host: str = "127.0.0.1") -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sendfleet-test-smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(folder / "smtp-cert.pem", folder / "smtp-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class _Handler:
    def __init__(self, server: AuthSMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.server.lock:
            self.server.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK queued"


class _Controller(Controller):
    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def bind() -> asyncio.AbstractServer:  # port 0: learn the real one
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


@dataclass
class AuthSMTPServer:
    """security: "starttls" (AUTH only after STARTTLS), "tls" (implicit) or "none"."""

    security: str
    tls: TlsFiles | None
    username: str = "health-user"
    password: str = "s3cret-Pa55!"
    host: str = "127.0.0.1"
    port: int = 0
    received: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:  # fmt: skip
        if isinstance(data, LoginPassword):
            login = data.login.decode("utf-8", "replace")
            ok = (login, data.password.decode("utf-8", "replace")) == (
                self.username,
                self.password,
            )
            with self.lock:
                self.logins.append((login, ok))
            if ok:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    def start(self) -> AuthSMTPServer:
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": True,
            "auth_require_tls": self.security == "starttls",
        }
        if self.security == "starttls":
            assert self.tls is not None
            kwargs.update(tls_context=self.tls.server_context(), require_starttls=True)
        elif self.security == "tls":
            assert self.tls is not None
            kwargs.update(ssl_context=self.tls.server_context())
        controller = _Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": implicit TLS is TLS from the start.
            warnings.simplefilter("ignore", UserWarning)
            controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> AuthSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
