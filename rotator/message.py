"""MIME building for one outgoing message, with the compliance headers and footer.

Built by hand from stdlib codecs (base64 encoded-words, binascii QP) because
email.message.EmailMessage's policy machinery costs ~1 ms a message on the hot path.
The output is checked against email.parser.BytesParser(policy=default) in the tests.
"""

from __future__ import annotations

import binascii
import html as html_lib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from rotator.envelope import wire_domain


class HeaderInjection(ValueError):
    def __init__(self, header: str) -> None:
        super().__init__(f"{header}: header value contains CR or LF")
        self.header = header


@dataclass(frozen=True)
class MessageSpec:
    from_email: str
    from_name: str | None
    to_email: str
    subject: str
    text: str
    html: str | None
    unsubscribe_url: str
    company_address: str
    message_id: str
    # Only a mailbox the operator owns and reads (UNSUBSCRIBE_MAILBOX): the token in it
    # unsubscribes whoever reads the mail. None: the https one-click URL alone.
    unsubscribe_mailto: str | None = None
    reply_to: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


_RESERVED = frozenset(
    h.lower()
    for h in (
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Reply-To",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Type",
        "Content-Transfer-Encoding", "Cc", "Bcc",
    )
)  # fmt: skip
# Printable ASCII words separated by single spaces: safe to write as-is (no encoded-word
# lookalike "=?", which a parser would decode).
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+")
_SPACE_OR_ANGLE = re.compile(r"[\s<>]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_MESSAGE_ID = re.compile(r"<[^\s<>@]+@[^\s<>@]+>")
_LINE = 76
_WORD_BYTES = 42  # 42 bytes -> 56 base64 chars -> a 68-char encoded-word (RFC 2047: <= 75)


def make_message_id(sending_domain: str) -> str:
    """ "<random@domain>": 128 random bits, unique across processes and hosts."""
    domain = _domain(sending_domain, "Message-ID")
    return f"<{uuid.uuid4().hex}@{domain}>"


def build_message(spec: MessageSpec) -> bytes:
    _refuse_breaks(spec)
    if not _MESSAGE_ID.fullmatch(spec.message_id):
        raise ValueError(f"Message-ID: not of the form <id@domain>: {spec.message_id!r}")
    # RFC 8058 wants https; production settings insist on an https PUBLIC_BASE_URL, while a
    # local sandbox (make run) legitimately serves http://localhost.
    if not spec.unsubscribe_url.startswith(("https://", "http://")) or _has_space(
        spec.unsubscribe_url
    ):
        raise ValueError("List-Unsubscribe: the one-click URL must be an http(s) URL")
    mailto = spec.unsubscribe_mailto
    if mailto is not None and (not mailto.startswith("mailto:") or _has_space(mailto)):
        raise ValueError("List-Unsubscribe: the mailto URL must start with mailto:")
    unsubscribe = f"<{spec.unsubscribe_url}>"
    if mailto is not None:
        unsubscribe += f",\r\n <{mailto}>"

    head = [
        "From: " + _mailbox(spec.from_name, spec.from_email, "From"),
        "To: " + _address(spec.to_email, "To"),
        "Subject: " + _unstructured(spec.subject, len("Subject: ")),
        "Date: " + format_datetime(datetime.now(UTC)),
        "Message-ID: " + spec.message_id,
        "MIME-Version: 1.0",
        "List-Unsubscribe: " + unsubscribe,
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]
    if spec.reply_to:
        head.append("Reply-To: " + _address(spec.reply_to, "Reply-To"))
    for name, value in spec.extra_headers.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"{name}: not allowed as an extra header")
        head.append(f"{name}: " + _unstructured(value, len(name) + 2))

    text_part = _part("text/plain", _text_with_footer(spec))
    if spec.html is None:
        return _join(head, text_part)
    html_part = _part("text/html", _html_with_footer(spec))
    boundary = _boundary(text_part[1], html_part[1])
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    b = boundary.encode("ascii")
    body = b"".join(
        (
            b"--" + b + b"\r\n", text_part[0], b"\r\n\r\n", text_part[1], b"\r\n",
            b"--" + b + b"\r\n", html_part[0], b"\r\n\r\n", html_part[1], b"\r\n",
            b"--" + b + b"--\r\n",
        )
    )  # fmt: skip
    return "\r\n".join(head).encode("utf-8") + b"\r\n\r\n" + body


# --- headers -------------------------------------------------------------------------


def _refuse_breaks(spec: MessageSpec) -> None:
    values = (
        ("From", spec.from_email),
        ("From", spec.from_name or ""),
        ("To", spec.to_email),
        ("Subject", spec.subject),
        ("Message-ID", spec.message_id),
        ("List-Unsubscribe", spec.unsubscribe_url),
        ("List-Unsubscribe", spec.unsubscribe_mailto or ""),
        ("Reply-To", spec.reply_to or ""),
        *spec.extra_headers.items(),
    )
    for header, value in values:
        if "\r" in value or "\n" in value:
            raise HeaderInjection(header)
    for name in spec.extra_headers:
        if "\r" in name or "\n" in name:
            raise HeaderInjection(name)


def _has_space(value: str) -> bool:
    return _SPACE_OR_ANGLE.search(value) is not None


def _domain(domain: str, header: str) -> str:
    if "\r" in domain or "\n" in domain:
        raise HeaderInjection(header)
    if not domain or _has_space(domain) or "@" in domain:
        raise ValueError(f"{header}: invalid domain {domain!r}")
    return wire_domain(domain)  # the same IDNA 2008 form as the envelope


def _address(address: str, header: str) -> str:
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"{header}: invalid address {address!r}")
    local, _, domain = address.rpartition("@")
    # A non-ASCII local part goes into the header as UTF-8 (RFC 6532); such a message only
    # travels with SMTPUTF8, which the transport checks before MAIL FROM.
    return f"{local}@{_domain(domain, header)}"


def _mailbox(name: str | None, address: str, header: str) -> str:
    addr = _address(address, header)
    # Whitespace in a display name carries no meaning, and parsers collapse it anyway.
    name = " ".join(name.split()) if name else ""
    if not name:
        return addr
    plain = len(name) <= _LINE and "=?" not in name
    if plain and _ATOMS.fullmatch(name):
        phrase = name
    elif plain and _PLAIN.fullmatch(name):
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = _encoded_words(name)
    last = phrase.rsplit("\n", 1)[-1]
    width = len(last) + (0 if "\n" in phrase else len(header) + 2)
    gap = "\r\n " if width + len(addr) + 3 > _LINE + 2 else " "
    return f"{phrase}{gap}<{addr}>"


def _unstructured(value: str, used: int) -> str:
    """A free-text header value: as-is (folded at spaces) when plain ASCII, else
    RFC 2047 encoded-words, which also keep leading, trailing and repeated spaces."""
    if "=?" not in value and _PLAIN.fullmatch(value):
        if used + len(value) <= _LINE + 2:
            return value
        folded = _fold(value.split(" "), used)
        if folded is not None:
            return folded
    if not value:
        return ""
    return _encoded_words(value)


def _fold(words: list[str], used: int) -> str | None:
    lines: list[str] = []
    line = ""
    width = _LINE - used
    for word in words:
        if len(word) > 900:
            return None
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line, width = word, _LINE - 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= _WORD_BYTES:
        return _b_word(data)
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        # A word must hold whole characters: never split a multi-byte sequence.
        if size + n > _WORD_BYTES:
            words.append(_b_word("".join(chunk).encode("utf-8")))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append(_b_word("".join(chunk).encode("utf-8")))
    return "\r\n ".join(words)


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


# --- bodies ----------------------------------------------------------------------------


def _crlf(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "\r\n")


def _text_with_footer(spec: MessageSpec) -> str:
    body = spec.text if spec.text.endswith("\n") else spec.text + "\n"
    return f"{body}\n-- \nUnsubscribe: {spec.unsubscribe_url}\n{spec.company_address.strip()}\n"


def _html_with_footer(spec: MessageSpec) -> str:
    assert spec.html is not None
    address = "<br>".join(
        html_lib.escape(line.strip()) for line in spec.company_address.strip().splitlines()
    )
    footer = (
        '\n<div style="margin-top:24px;font-size:12px;color:#666666">'
        f'<a href="{html_lib.escape(spec.unsubscribe_url)}">Unsubscribe</a><br>{address}</div>\n'
    )
    at = spec.html.lower().rfind("</body>")
    if at < 0:
        return spec.html + footer
    return spec.html[:at] + footer + spec.html[at:]


def _part(content_type: str, text: str) -> tuple[bytes, bytes]:
    data = _crlf(text).encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.isascii() and max(map(len, data.split(b"\r\n"))) <= 998:
        cte = "7bit"
    else:
        # istext: line breaks stay hard breaks; with CRLF input the soft breaks are
        # "=\r\n" too (b2a_qp copies the first line ending it sees).
        data = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
        cte = "quoted-printable"
    head = f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}'
    return head.encode("ascii"), data


def _boundary(*bodies: bytes) -> str:
    while True:
        # "=_" never occurs in quoted-printable output; the check covers 7bit parts.
        boundary = "=_sf_" + secrets.token_hex(12)
        b = boundary.encode("ascii")
        if not any(b in body for body in bodies):
            return boundary


def _join(head: list[str], part: tuple[bytes, bytes]) -> bytes:
    return "\r\n".join(head).encode("utf-8") + b"\r\n" + part[0] + b"\r\n\r\n" + part[1]
