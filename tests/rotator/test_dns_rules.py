"""The pure DNS rules: resolver names, what a DNSBL answer means, and the SPF / DKIM /
DMARC / MX / PTR verdicts with their fixes."""

from __future__ import annotations

import pytest

from rotator.dnsbl_answers import Verdict, combine, failed_lookup, read_answers, removal_advice
from rotator.nameservers import Nameserver, parse_nameserver
from rotator.sender_auth_rules import (
    judge_dkim,
    judge_dmarc,
    judge_mx,
    judge_ptr,
    judge_spf,
    missing_from_spf,
    required_spf,
    spf_record_with,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9.9.9.9", Nameserver("9.9.9.9", 53)),
        (" 127.0.0.1:5353 ", Nameserver("127.0.0.1", 5353)),
        ("::1", Nameserver("::1", 53)),
        ("[2001:db8::53]:5300", Nameserver("2001:db8::53", 5300)),
    ],
)
def test_resolvers_are_ip_or_ip_and_port(text, expected):
    assert parse_nameserver(text) == expected
    assert parse_nameserver(str(expected)) == expected


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:0", "1.2.3.4:99999", "[::1", "[::1]x"])
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        parse_nameserver(text)


def test_an_answer_in_127_8_is_a_listing_and_nxdomain_is_clean():
    assert read_answers("zen.spamhaus.org", ["127.0.0.4", "127.0.0.2"]).answers == (
        "127.0.0.2",
        "127.0.0.4",
    )
    assert read_answers("zen.spamhaus.org", ["127.0.0.2"]).verdict == Verdict.LISTED
    assert read_answers("zen.spamhaus.org", []).verdict == Verdict.CLEAN


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("127.255.255.254", "public or open resolver"),
        ("127.255.255.255", "too many queries"),
        ("127.255.255.252", "misspelt"),
        ("127.255.255.250", "refused the query"),
        ("127.0.0.1", "blocked the query"),
        ("203.0.113.7", "not a DNSBL answer"),
    ],
)
def test_error_answers_are_unknown_with_a_note(answer, words):
    result = read_answers("dbl.spamhaus.org", [answer])
    assert result.verdict == Verdict.UNKNOWN
    assert words in result.note and "resolver of your own" in result.note


def test_a_target_is_listed_if_any_list_lists_it_else_unknown_if_any_could_not_tell():
    listed = read_answers("a", ["127.0.0.2"])
    clean = read_answers("b", [])
    silent = failed_lookup("c", "Timeout while contacting DNS servers")
    assert combine({"a": listed, "b": clean, "c": silent}).verdict == Verdict.LISTED
    unknown = combine({"b": clean, "c": silent})
    assert unknown.verdict == Verdict.UNKNOWN and unknown.lists_hit == ()
    assert unknown.note == "c did not answer: Timeout while contacting DNS servers"
    assert combine({"b": clean}).verdict == Verdict.CLEAN


def test_removal_advice_names_the_lists_own_steps():
    assert "check.spamhaus.org" in removal_advice("zen.spamhaus.org")
    assert "24 h" in removal_advice("bl.spamcop.net")
    assert removal_advice("bl.example").startswith("look the listing up")


def test_spf_requirements_per_provider_and_own_ips():
    assert required_spf(["gmail", "sendgrid", "gmail", "smtp"], ["192.0.2.9", "192.0.2.10"]) == [
        "include:_spf.google.com",
        "include:sendgrid.net",
        "ip4:192.0.2.9",
        "ip4:192.0.2.10",
    ]
    assert required_spf(["smtp2go"], ["2001:db8::1"]) == [
        "include:spf.smtp2go.com",
        "ip6:2001:db8::1",
    ]


def _tree(*mechanisms, redirect=None):
    return {"mechanisms": list(mechanisms), "redirect": redirect}


def test_coverage_follows_nested_includes_redirects_ranges_and_resolved_a_records():
    parsed = _tree(
        {"mechanism": "include", "value": "spf.corp.example",
         "parsed": _tree({"mechanism": "include", "value": "_spf.google.com", "parsed": None})},
        {"mechanism": "ip4", "value": "192.0.2.0/28"},
        {"mechanism": "a", "value": "mail.corp.example", "addresses": ["198.51.100.7"]},
        redirect={"domain": "SendGrid.net", "parsed": None},
    )  # fmt: skip
    required = ["include:_spf.google.com", "include:sendgrid.net", "ip4:192.0.2.9",
                "ip4:198.51.100.7", "ip4:192.0.2.99", "ip6:2001:db8::1"]  # fmt: skip
    assert missing_from_spf(parsed, required) == ["ip4:192.0.2.99", "ip6:2001:db8::1"]
    assert missing_from_spf(None, ["include:sendgrid.net"]) == ["include:sendgrid.net"]


def test_the_record_to_publish_keeps_the_existing_terms_and_all_last():
    assert spf_record_with("v=spf1 mx -all", ["include:sendgrid.net"]) == (
        "v=spf1 mx include:sendgrid.net -all"
    )
    assert spf_record_with("v=spf1 mx", ["ip4:192.0.2.1"]) == "v=spf1 mx ip4:192.0.2.1"
    assert spf_record_with(None, ["include:_spf.google.com"]) == (
        "v=spf1 include:_spf.google.com ~all"
    )


def test_spf_verdicts():
    required = ["include:_spf.google.com"]
    missing = judge_spf("x.example", {"record": None, "error": "none"}, required)
    assert missing.status == "fail"
    assert missing.fix == 'publish the TXT record x.example "v=spf1 include:_spf.google.com ~all"'
    unknown = judge_spf("x.example", {"dns_error": "timed out"}, required)
    assert unknown.status == "unknown" and unknown.fix is None
    ok_tree = _tree({"mechanism": "include", "value": "_spf.google.com", "parsed": None})
    passing = {"record": "v=spf1 include:_spf.google.com ~all", "dns_lookups": 3,
               "parsed": ok_tree}  # fmt: skip
    assert judge_spf("x.example", passing, required).status == "pass"
    over = {**passing, "dns_lookups": 11}
    assert "11 DNS lookups" in judge_spf("x.example", over, required).problem


def test_dmarc_verdicts_report_policy_and_rua():
    found = {"record": "v=DMARC1; p=none", "tags": {"p": {"value": "none"}, "rua": {"value": []}}}
    verdict = judge_dmarc("x.example", found)
    assert verdict.status == "pass" and verdict.details == {"policy": "none", "rua": []}
    assert "rua=mailto:dmarc@x.example" in verdict.fix and "p=quarantine" in verdict.fix
    assert judge_dmarc("x.example", {"record": None}).status == "fail"


def test_dkim_needs_a_public_key_at_some_selector():
    key = "v=DKIM1; k=rsa; p=MIIBIjANBg"
    assert judge_dkim("x.example", {"s1": None, "google": key}, {}, ["gmail"]).status == "pass"
    revoked = judge_dkim("x.example", {"s1": "v=DKIM1; p="}, {}, ["sendgrid"])
    assert revoked.status == "fail" and "revoked" in revoked.problem
    assert "s1._domainkey.x.example and s2._domainkey.x.example" in revoked.fix
    own = judge_dkim("x.example", {"mail": None}, {}, ["postfix"])
    assert "OpenDKIM" in own.fix
    assert judge_dkim("x.example", {"s1": None}, {"s1": "timed out"}, []).status == "unknown"


def test_mx_and_ptr_verdicts():
    assert judge_mx("x.example", ["mx1.x.example"], None).status == "pass"
    assert judge_mx("x.example", [], None).status == "fail"
    assert "null MX" in judge_mx("x.example", ["."], None).problem
    assert judge_mx("x.example", [], "timed out").status == "unknown"
    assert judge_ptr({}) is None
    good = {"192.0.2.1": (["mail.x.example"], ["mail.x.example"], None)}
    assert judge_ptr(good).status == "pass"
    bad = judge_ptr({**good, "192.0.2.2": (["other.example"], [], None)})
    assert bad.status == "fail" and bad.problem == "no forward-confirmed PTR for 192.0.2.2"
    unknown = judge_ptr({"192.0.2.3": ([], [], "timed out")})
    assert unknown.status == "unknown"
