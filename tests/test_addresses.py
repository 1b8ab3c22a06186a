"""Address validation: the fast path must give exactly email-validator's answer."""

from __future__ import annotations

import io
import socket
import string
from collections.abc import Iterator

import dns.resolver
import pytest
from dnslib import MX, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.db import unit_of_work
from app.services import addresses
from app.services.addresses import NO_MX, AddressValidator, ValidAddress
from app.services.imports import import_csv

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"


def expected(raw: str) -> ValidAddress | str:
    """email-validator's own answer, lower-cased: the specification of the fast path."""
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return ValidAddress(result.normalized.lower(), result.domain, result.ascii_domain)


atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
ascii_locals = st.one_of(
    st.lists(atoms, min_size=1, max_size=4).map(".".join),
    # dots where dot-atom forbids them
    st.tuples(atoms, st.sampled_from([".", "..", "@", " ", "\\", '"', ","])).map(
        lambda t: f".{t[0]}" if t[1] == "." else t[0] + t[1] + t[0]
    ),
    atoms.map(lambda a: a + "."),
    st.integers(60, 70).map(lambda n: "a" * n),  # around the 64-octet local-part limit
    st.integers(230, 260).map(lambda n: "b" * n),  # around the 254-octet address limit
)
unicode_locals = st.text(
    alphabet=st.characters(
        codec="utf-8", categories=("Ll", "Lu", "Lo", "Nd", "Mn", "Zs", "Cf", "Po", "So")
    ),
    min_size=1,
    max_size=10,
)
quoted_locals = st.text(
    alphabet=st.characters(codec="utf-8", min_codepoint=32, max_codepoint=0x3000),
    max_size=10,
).map(lambda t: '"' + t + '"')
locals_ = st.one_of(ascii_locals, ascii_locals, unicode_locals, quoted_locals, st.text(max_size=8))

ascii_labels = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=20)
idn_labels = st.one_of(
    st.sampled_from(["münchen", "bücher", "straße", "日本", "пример", "ΔΙΑΣ", "ﬁ", "ⓐ", "١٢٣"]),
    st.text(
        alphabet=st.characters(codec="utf-8", categories=("Ll", "Lo", "Mn")), min_size=1, max_size=8
    ),
)
long_labels = st.integers(60, 66).map(lambda n: "c" * n)
labels = st.one_of(
    ascii_labels,
    ascii_labels,
    idn_labels,
    long_labels,
    st.sampled_from(["xn--mnchen-3ya", "xn--zz", "ab--cd", "-x", "x-", ""]),
)
tlds = st.sampled_from(
    ["com", "de", "ORG", "xn--p1ai", "рф", "test", "local", "invalid", "onion", "123", "c0m", "io"]
)
domains = st.one_of(
    st.tuples(st.lists(labels, min_size=1, max_size=3), tlds).map(
        lambda t: ".".join([*t[0], t[1]])
    ),
    st.sampled_from(
        [
            "example.com.",
            "EXAMPLE.COM",
            "a..b.com",
            "[192.0.2.1]",
            "[IPv6:::1]",
            "example。com",
            "ex ample.com",
            "ex_ample.com",
            "",
            "localhost",
            "b@c.com",
            "xn--ls8h.la",
        ]
    ),
    st.integers(240, 256).map(lambda n: "d" * (n - 4) + ".com"),  # around the 253 limit
    st.integers(40, 70).map(lambda n: ".".join(["ü" * 20] * (n // 20)) + ".de"),
)
# Mostly valid: the common case the fast path exists for, with IDN and upper case.
plausible_labels = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=15),
    st.sampled_from(["münchen", "bücher", "пример", "日本", "MAIL", "xn--mnchen-3ya"]),
)
plausible = st.tuples(
    st.lists(atoms, min_size=1, max_size=3).map(".".join),
    st.lists(plausible_labels, min_size=1, max_size=3),
    st.sampled_from(["com", "de", "IO", "рф", "xn--p1ai"]),
).map(lambda t: f"{t[0]}@{'.'.join(t[1])}.{t[2]}")
addresses_ = st.one_of(
    plausible,
    plausible,
    st.tuples(locals_, domains).map(lambda t: f"{t[0]}@{t[1]}"),
    st.tuples(st.text(max_size=5), locals_, domains).map(lambda t: f"{t[0]} <{t[1]}@{t[2]}>"),
    st.text(max_size=30),
)

# One validator across all examples, so cached domains are reused as in a real import.
shared = AddressValidator()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses_)
@example("John.Doe@Example.COM")
@example("a" * 64 + "@" + "b" * 63 + ".com")
@example("x@" + ".".join(["ü" * 20] * 4) + ".de")
@example('"quoted"@example.com')
@example("info@xn--mnchen-3ya.de")
@example("user@bücher.de")
@example("Ünïcödé@example.com")
@example("a@b@c.com")
def test_fast_and_full_validation_agree(raw: str) -> None:
    assert shared.check(raw) == expected(raw)


def test_the_fast_path_decides_common_addresses_without_validate_email() -> None:
    validator = AddressValidator()
    raws = [f"User.{i}+tag@Example{i % 3}.COM" for i in range(30)] + ["bad@@example.com"]
    results = [validator.check(raw) for raw in raws]
    assert validator.fast == len(raws) and validator.slow == 0
    assert results[0] == ValidAddress("user.0+tag@example0.com", "example0.com", "example0.com")
    assert results == [expected(raw) for raw in raws]


def test_nfc_unicode_local_parts_are_fast_others_go_to_validate_email() -> None:
    validator = AddressValidator()
    composed = validator.check("Zoë@example.com")
    assert (validator.fast, validator.slow) == (1, 0)
    decomposed = validator.check("Zoe\u0308@example.com")  # NFC turns it into "Zoë"
    quoted = validator.check('"zoë"@example.com')
    assert (validator.fast, validator.slow) == (1, 2)
    assert composed == decomposed == ValidAddress("zoë@example.com", "example.com", "example.com")
    assert quoted == expected('"zoë"@example.com')


def test_idna_domains_are_stored_in_unicode_form_with_their_ascii_form() -> None:
    result = AddressValidator().check("Anna@XN--MNCHEN-3YA.de")
    assert result == ValidAddress("anna@münchen.de", "münchen.de", "xn--mnchen-3ya.de")


def test_a_domain_error_is_cached_but_reported_for_each_address() -> None:
    validator = AddressValidator()
    first = validator.check("a@exa mple.com")
    second = validator.check("b@exa mple.com")
    assert isinstance(first, str) and first == second == expected("b@exa mple.com")
    assert len(validator._domains) == 1


# --- MX deliverability, against a real DNS server on localhost -------------------------


class Zone(BaseResolver):
    """mail.example has an MX; nullmx.example a null MX; web.example only an A record
    (a private one, so no usable fallback); everything else does not exist."""

    queries: list[str]

    def __init__(self) -> None:
        self.queries = []

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append(f"{name}/{qtype}")
        if name == "mail.example":
            if qtype == "MX":
                reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX("mx.mail.example"), ttl=60))
        elif name == "nullmx.example":
            if qtype == "MX":
                reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(".", 0), ttl=60))
        elif name == "web.example":
            if qtype == "A":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("10.0.0.1"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Zone]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    zone = Zone()
    server = DNSServer(zone, address="127.0.0.1", port=port, logger=_QuietLogger())
    server.start_thread()

    def local_resolver(timeout: float) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = port
        resolver.lifetime = timeout
        resolver.cache = dns.resolver.LRUCache()
        return resolver

    monkeypatch.setattr(addresses, "make_resolver", local_resolver)
    yield zone
    server.stop()


class _QuietLogger:
    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args, **kwargs: None


def test_mx_check_rejects_domains_that_take_no_mail_and_asks_once_per_domain(zone: Zone) -> None:
    validator = AddressValidator(check_mx=True, mx_timeout=2)
    assert validator.check("a@mail.example") == ValidAddress(
        "a@mail.example", "mail.example", "mail.example"
    )
    assert validator.check("b@MAIL.example") == ValidAddress(
        "b@mail.example", "mail.example", "mail.example"
    )
    assert validator.check("a@nullmx.example") == NO_MX
    assert validator.check("a@web.example") == NO_MX
    assert validator.check("a@gone.example") == NO_MX
    assert validator.check("b@gone.example") == NO_MX
    assert zone.queries.count("mail.example/MX") == 1
    assert zone.queries.count("gone.example/MX") == 1


def test_mx_check_off_asks_no_dns(zone: Zone) -> None:
    assert isinstance(AddressValidator().check("a@gone.example"), ValidAddress)
    assert zone.queries == []


def test_an_unreachable_resolver_rejects_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def dead_resolver(timeout: float) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = 9  # discard: nothing answers
        resolver.lifetime = 0.3
        return resolver

    monkeypatch.setattr(addresses, "make_resolver", dead_resolver)
    assert isinstance(AddressValidator(check_mx=True).check("a@gone.example"), ValidAddress)


def test_import_with_mx_check_rejects_rows_whose_domain_has_no_mx(
    zone: Zone, factory, settings
) -> None:
    campaign = factory.create_campaign()
    data = b"email\na@mail.example\nb@gone.example\nc@mail.example\n"
    with unit_of_work() as session:
        with_mx = settings.model_copy(update={"import_check_mx": True})
        report = import_csv(session, campaign.id, io.BytesIO(data), with_mx)
    assert report.imported == 2
    assert report.rejected == {"invalid": 1, "duplicate": 0, "suppressed": 0}
    assert [(e.row, e.email, e.reason) for e in report.errors] == [(3, "b@gone.example", NO_MX)]
