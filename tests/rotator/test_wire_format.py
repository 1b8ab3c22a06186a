"""What goes on the wire is byte for byte what smtplib and the plain regular expressions would
write: the envelope's paths (quote_address's shortcut past email.utils.parseaddr) and the
message data (wire_data's shortcut for data already in CRLF with no line starting with a
dot), over generated input."""

from __future__ import annotations

import re
import smtplib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rotator.session import wire_data
from rotator.wire import _PLAIN_ADDRESS, quote_address

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
local_parts = st.lists(st.text(ATEXT, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)
labels = st.text("abcz09-", min_size=1, max_size=8)
domains = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.from_regex(r"\[[0-9.:a-fIPv]{1,20}\]", fullmatch=True),
)
# Anything at all made of the characters that matter to either path.
tricky_text = st.text(ATEXT + '.@[]:()<>",; \\', min_size=1, max_size=16)


@settings(max_examples=1000)
@given(local_parts, domains)
@example("first.last+tag", "mail.example.co.uk")
@example("o'brien", "xn--mnchen-3ya.de")
@example("a..b", "x.com")
@example(".a", "x.com")
def test_a_plain_address_is_written_as_smtplib_writes_it(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert _PLAIN_ADDRESS.fullmatch(address)  # each generated one takes the shortcut
    assert quote_address(address) == smtplib.quoteaddr(address)


@settings(max_examples=1500)
@given(tricky_text)
@example("a(b)@x.com")
@example("a,b@x.com")
@example('"john doe"@x.com')
@example("a@[1.2.3.4")
def test_any_address_is_written_as_smtplib_writes_it(address: str) -> None:
    assert quote_address(address) == smtplib.quoteaddr(address)


def test_the_usual_addresses_take_the_shortcut() -> None:
    for address in ("p123@gmail.com", "first.last+tag@mail.example.co.uk", "a@[10.0.0.1]"):
        assert _PLAIN_ADDRESS.fullmatch(address), address
    for address in ("a(comment)@x.com", '"quoted"@x.com', "a@b@c.com", "a@x.com."):
        assert not _PLAIN_ADDRESS.fullmatch(address), address


_DOT_STUFF = re.compile(rb"(?m)^\.")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def reference_wire_data(data: bytes) -> bytes:
    """The substitutions applied unconditionally, as wire_data did before its shortcut."""
    data = _BARE_CR.sub(b"\r\n", _BARE_LF.sub(b"\r\n", data))
    data = _DOT_STUFF.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


lines = st.lists(st.binary(max_size=8), max_size=6)
separators = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n."])


@settings(max_examples=1500)
@given(st.lists(st.tuples(st.binary(max_size=6), separators), max_size=8))
@example([(b"Subject: x", b"\r\n"), (b"", b"\r\n"), (b".hidden", b"\r\n")])
@example([(b".", b"\r\n")])
@example([(b"no newline at the end", b"")])
def test_wire_data_is_what_the_substitutions_give(parts: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(text + separator for text, separator in parts)
    assert wire_data(data) == reference_wire_data(data)


@settings(max_examples=1000)
@given(st.binary(max_size=64))
def test_wire_data_of_any_bytes_is_what_the_substitutions_give(data: bytes) -> None:
    assert wire_data(data) == reference_wire_data(data)
