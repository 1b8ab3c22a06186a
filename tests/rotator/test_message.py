from __future__ import annotations

import re
from dataclasses import replace
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.message import HeaderInjection, MessageSpec, build_message, make_message_id

SPEC = MessageSpec(
    from_email="ann@send.example.com",
    from_name="Ann Smith",
    to_email="bob@example.org",
    subject="Quick question about your team",
    text="Hi Bob,\n\nShort note.\n",
    html="<html><head></head><body><p>Hi Bob,</p></body></html>",
    unsubscribe_url="https://app.example.com/u/tok123",
    unsubscribe_mailto="mailto:unsubscribe@send.example.com?subject=unsubscribe-tok123",
    company_address="ACME Ltd\n1 Main Street\nSpringfield 12345",
    message_id="<abc123@send.example.com>",
)


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=default).parsebytes(raw)


def parts(msg: EmailMessage) -> dict[str, str]:
    found = {}
    for part in msg.walk():
        if not part.is_multipart():
            found[part.get_content_type()] = part.get_content().replace("\r\n", "\n")
    return found


def test_every_header_is_present_and_parses_back() -> None:
    raw = build_message(SPEC)
    msg = parse(raw)
    assert msg["From"] == "Ann Smith <ann@send.example.com>"
    assert msg["From"].addresses[0].display_name == "Ann Smith"
    assert msg["To"] == "bob@example.org"
    assert msg["Subject"] == SPEC.subject
    assert msg["Message-ID"] == SPEC.message_id
    assert msg["MIME-Version"] == "1.0"
    date = parsedate_to_datetime(msg["Date"])
    assert date.tzinfo is not None
    assert msg.get_content_type() == "multipart/alternative"
    assert not msg.defects and all(not p.defects for p in msg.walk())
    assert "Reply-To" not in msg


def test_rfc_8058_one_click_headers_with_the_operators_mailbox() -> None:
    msg = parse(build_message(SPEC))
    assert msg["List-Unsubscribe"] == (
        "<https://app.example.com/u/tok123>, "
        "<mailto:unsubscribe@send.example.com?subject=unsubscribe-tok123>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_without_a_mailbox_list_unsubscribe_is_the_https_url_alone() -> None:
    raw = build_message(replace(SPEC, unsubscribe_mailto=None))
    msg = parse(raw)
    assert msg["List-Unsubscribe"] == "<https://app.example.com/u/tok123>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"mailto:" not in raw
    assert len(msg.get_all("List-Unsubscribe")) == 1


def test_footer_with_link_and_address_in_both_parts() -> None:
    found = parts(parse(build_message(SPEC)))
    text, html = found["text/plain"], found["text/html"]
    assert text.startswith("Hi Bob,\n\nShort note.\n")
    assert "https://app.example.com/u/tok123" in text
    assert "ACME Ltd\n1 Main Street\nSpringfield 12345" in text
    assert '<a href="https://app.example.com/u/tok123">' in html
    assert "ACME Ltd<br>1 Main Street<br>Springfield 12345" in html
    assert html.index("Springfield") < html.index("</body>")
    assert html.rstrip().endswith("</body></html>")


def test_footer_is_appended_to_html_without_a_body_tag_and_escaped() -> None:
    spec = replace(SPEC, html="<p>Hi</p>", company_address="Smith & Sons <Ltd>")
    html = parts(parse(build_message(spec)))["text/html"]
    assert html.startswith("<p>Hi</p>")
    assert "Smith &amp; Sons &lt;Ltd&gt;" in html


def test_text_only_message_is_a_single_text_part() -> None:
    msg = parse(build_message(replace(SPEC, html=None)))
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert "Springfield 12345" in msg.get_content()


def test_non_ascii_subject_name_and_bodies() -> None:
    spec = replace(
        SPEC,
        from_name="Zoë Müller-Łukasiewicz",
        subject="Grüße — 你好, a quick question 🙂 " * 3,
        text="Привет, Боб!\n" + "ä" * 300,
        html="<p>Привет</p>",
    )
    raw = build_message(spec)
    assert raw.isascii()
    msg = parse(raw)
    assert msg["Subject"] == spec.subject
    assert msg["From"].addresses[0].display_name == spec.from_name
    found = parts(msg)
    assert found["text/plain"].startswith("Привет, Боб!\n" + "ä" * 300)
    assert found["text/html"].startswith("<p>Привет</p>")


def test_lines_are_crlf_and_folded() -> None:
    subject = ("word " * 60).strip()
    spec = replace(SPEC, subject=subject, text="x" * 5000, html="<p>" + "y" * 5000 + "</p>")
    raw = build_message(spec)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    msg = parse(raw)
    assert b"Subject: word word" in raw  # folded at spaces, not encoded
    assert msg["Subject"] == subject
    assert parts(msg)["text/plain"].startswith("x" * 5000)


def test_reply_to_and_extra_headers() -> None:
    spec = replace(SPEC, reply_to="replies@example.com", extra_headers={"X-Campaign": "42 ü"})
    msg = parse(build_message(spec))
    assert msg["Reply-To"] == "replies@example.com"
    assert msg["X-Campaign"] == "42 ü"


@pytest.mark.parametrize(
    ("field", "value", "header"),
    [
        ("subject", "Hi\r\nBcc: victim@example.org", "Subject"),
        ("subject", "Hi\nthere", "Subject"),
        ("from_name", "Ann\rSmith", "From"),
        ("to_email", "bob@example.org\r\nBcc: x@example.org", "To"),
        ("reply_to", "a@example.org\n", "Reply-To"),
        ("unsubscribe_url", "https://x.example/u\r\nX: y", "List-Unsubscribe"),
        ("message_id", "<a@b>\r\nX: y", "Message-ID"),
    ],
)
def test_cr_or_lf_in_a_header_value_is_refused(field: str, value: str, header: str) -> None:
    with pytest.raises(HeaderInjection) as caught:
        build_message(replace(SPEC, **{field: value}))  # type: ignore[arg-type]
    assert caught.value.header == header


def test_cr_or_lf_in_an_extra_header_is_refused() -> None:
    with pytest.raises(HeaderInjection):
        build_message(replace(SPEC, extra_headers={"X-A": "1\r\nBcc: x@example.org"}))
    with pytest.raises(ValueError, match="not allowed"):
        build_message(replace(SPEC, extra_headers={"Bcc": "x@example.org"}))


def test_invalid_unsubscribe_urls_are_refused() -> None:
    for bad in ("ftp://app.example.com/u/x", "app.example.com/u/x", "https://a b.example/u/x"):
        with pytest.raises(ValueError, match="http"):
            build_message(replace(SPEC, unsubscribe_url=bad))
    with pytest.raises(ValueError, match="mailto"):
        build_message(replace(SPEC, unsubscribe_mailto="unsubscribe@example.com"))


def test_a_local_sandbox_may_use_an_http_unsubscribe_url() -> None:
    data = build_message(replace(SPEC, unsubscribe_url="http://localhost:5000/u/x"))
    assert b"<http://localhost:5000/u/x>" in data


def test_message_ids_are_unique_and_well_formed() -> None:
    ids = {make_message_id("send.example.com") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"<[0-9a-f]{32}@send\.example\.com>", i) for i in ids)
    assert make_message_id("bücher.example").endswith("@xn--bcher-kva.example>")
    with pytest.raises(HeaderInjection):
        make_message_id("example.com\r\nX: y")


def test_each_build_has_a_fresh_boundary_absent_from_the_parts() -> None:
    raw = build_message(SPEC)
    boundary = parse(raw).get_boundary()
    # the Content-Type parameter, two part delimiters and the closing delimiter
    assert boundary is not None and raw.count(boundary.encode()) == 4
    assert parse(build_message(SPEC)).get_boundary() != boundary


text_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")
subjects = st.text(text_chars, min_size=1)
# Python's address parser puts a space between adjacent encoded-words in a display
# name (RFC 2047 6.2 says to drop it), so the exact round trip through BytesParser
# holds for names that fit one encoded-word; longer names are checked below with
# email.header.decode_header, which follows the RFC.
short_names = st.text(text_chars, min_size=1).filter(lambda s: len(s.encode()) <= 42)


@settings(max_examples=300, deadline=None)
@given(name=short_names, subject=subjects)
def test_names_and_subjects_survive_a_round_trip(name: str, subject: str) -> None:
    msg = parse(build_message(replace(SPEC, from_name=name, subject=subject)))
    # Display names are whitespace-normalised on purpose; subjects are kept exactly.
    assert msg["From"].addresses[0].display_name == " ".join(name.split())
    assert msg["From"].addresses[0].addr_spec == SPEC.from_email
    assert str(msg["Subject"]) == subject


@settings(max_examples=100, deadline=None)
@given(name=st.text(text_chars, min_size=15, max_size=200))
def test_long_names_are_split_into_rfc_2047_words(name: str) -> None:
    raw = build_message(replace(SPEC, from_name=name))
    header = raw.split(b"\r\nTo: ", 1)[0].decode("ascii")
    assert header.startswith("From: ")
    phrase = re.split(r"\s+<", header[len("From: ") :])[0]
    expected = " ".join(name.split())
    if "=?" not in phrase:  # short plain ASCII: an atom phrase or a quoted string
        assert parse(raw)["From"].addresses[0].display_name == expected
        assert len(expected) <= 76
        return
    assert all(len(line) <= 78 for line in header.split("\r\n"))
    words = phrase.split()
    assert all(len(w) <= 75 and w.startswith("=?utf-8?b?") for w in words)
    assert str(make_header(decode_header(phrase))) == expected
