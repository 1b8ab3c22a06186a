"""Real replies, verbatim (IPs and ids anonymised), and what each must mean."""

from __future__ import annotations

import pytest

from rotator.classify import GENERIC_RULES, Outcome, SmtpReply, Verdict, classify_reply

SENT, DEFERRED, BOUNCED, FAILED = Outcome.SENT, Outcome.DEFERRED, Outcome.BOUNCED, Outcome.FAILED
PAUSED, DISABLED, UNKNOWN = Outcome.ACCOUNT_PAUSED, Outcome.ACCOUNT_DISABLED, Outcome.UNKNOWN

# (provider, code, reply text as the server sent it, outcome, reason)
REAL_REPLIES = [
    ("gmail", 250, "250 2.0.0 OK  1700000000 d2si1234567qkb.123 - gsmtp", SENT, "accepted"),
    (
        "gmail", 550,
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\n"
        "550-5.1.1 unnecessary spaces. Learn more at\n"
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser d2si1234567qkb.123 - gsmtp",
        BOUNCED, "mailbox_unknown",
    ),
    (
        "gmail", 421,
        "421-4.7.0 [203.0.113.7      15] Our system has detected an unusual rate of\n"
        "421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
        "421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
        "421-4.7.0 rate limited. Please visit\n"
        "421 4.7.0  https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
        DEFERRED, "rate_limited",
    ),
    (
        "gmail", 550,
        "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
        "550 5.4.5 sending limits go to\n"
        "550 5.4.5  https://support.google.com/a/answer/166852 - gsmtp",
        PAUSED, "daily_quota",
    ),
    (
        "gmail", 535,
        "535-5.7.8 Username and Password not accepted. Learn more at\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp",
        DISABLED, "auth_failed",
    ),
    (
        "gmail", 534,
        "534-5.7.9 Application-specific password required. Learn more at\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp",
        DISABLED, "auth_failed",
    ),
    (
        "gmail", 530,
        "530-5.7.0 Authentication Required. Learn more at\n"
        "530 5.7.0  https://support.google.com/mail/?p=WantAuthError - gsmtp",
        DISABLED, "auth_failed",
    ),
    (
        "gmail", 452,
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct\n"
        "452-4.2.2 the recipient to\n"
        "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        DEFERRED, "mailbox_full",
    ),
    (
        "gmail", 552,
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "552 5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        BOUNCED, "mailbox_full",
    ),
    (
        "gmail", 550,
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
        "550 5.2.1  https://support.google.com/mail/?p=DisabledUser - gsmtp",
        BOUNCED, "mailbox_disabled",
    ),
    (
        "gmail", 550,
        "550-5.7.1 [203.0.113.7] Our system has detected that this message is\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
        "550-5.7.1 this message has been blocked. Please visit\n"
        "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
        PAUSED, "policy",
    ),
    (
        "gmail", 550,
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
        "550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.\n"
        "550 5.7.26  https://support.google.com/mail/answer/81126 - gsmtp",
        PAUSED, "policy",
    ),
    (
        "gmail", 552,
        "552-5.7.0 This message was blocked because its content presents a potential\n"
        "552-5.7.0 security issue. Please visit\n"
        "552 5.7.0  https://support.google.com/mail/?p=BlockedMessage - gsmtp",
        FAILED, "content_rejected",
    ),
    (
        "gmail", 553,
        "553-5.1.3 The recipient address <bob@@example.org> is not a valid RFC-5321\n"
        "553 5.1.3 address. Learn more at https://support.google.com/mail/?p=BadRcptAddress",
        BOUNCED, "mailbox_unknown",
    ),
    ("gmail", 451, "451 4.3.0 Mail server temporarily rejected message.", DEFERRED, "temporary"),
    ("smtp", 554, "554 5.7.1 <bob@example.org>: Relay access denied", PAUSED, "policy"),
    (
        "smtp", 550, "550 5.5.0 Requested action not taken: mailbox unavailable.",
        BOUNCED, "mailbox_unknown",
    ),
    (
        "smtp", 550,
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[DM6NAM12FT045.eop-nam12.prod.protection.outlook.com]",
        BOUNCED, "mailbox_unknown",
    ),
    (
        "smtp", 550,
        "550 5.1.90 Your message can't be sent because you've reached your daily limit for "
        "message recipients",
        PAUSED, "daily_quota",
    ),
    (
        "smtp", 554,
        "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.com) "
        "[0] - mta1234.mail.bf1.yahoo.com",
        BOUNCED, "mailbox_unknown",
    ),
    (
        "smtp", 421,
        "421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected "
        "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        DEFERRED, "rate_limited",
    ),
    (
        "smtp", 553,
        "553 5.7.1 [BL21] Connections will not be accepted from 203.0.113.7, because the ip is "
        "in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        PAUSED, "policy",
    ),
    (
        "postfix", 450,
        "450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.org.html",
        DEFERRED, "greylisted",
    ),
    (
        "postfix", 550,
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local "
        "recipient table",
        BOUNCED, "mailbox_unknown",
    ),
    (
        "postfix", 553,
        "553 5.7.1 <ann@example.com>: Sender address rejected: not owned by user alice",
        PAUSED, "sender_rejected",
    ),
    ("postfix", 552, "552 5.3.4 Message size exceeds fixed limit", FAILED, "message_too_big"),
    ("postfix", 421, "421 4.4.2 mx.example.org Error: timeout exceeded", DEFERRED, "temporary"),
    ("smtp", 554, "554 5.6.0 Corrupt message content", FAILED, "content_rejected"),
    (
        "sendgrid", 451, "451 Authentication failed: Maximum credits exceeded",
        PAUSED, "daily_quota",
    ),
    (
        "sendgrid", 550,
        "550 The from address does not match a verified Sender Identity. Mail cannot be sent "
        "until this error is resolved. Visit https://sendgrid.com/docs/for-developers/"
        "sending-email/sender-identity/ to see the Sender Identity requirements",
        DISABLED, "sender_not_verified",
    ),
    ("sendgrid", 550, "550 Unauthenticated senders not allowed", DISABLED, "auth_failed"),
    (
        "sendgrid", 535, "535 Authentication failed: Bad username / password",
        DISABLED, "auth_failed",
    ),
    (
        "sendgrid", 421, "421 Message from (203.0.113.7) temporarily deferred",
        DEFERRED, "temporary",
    ),
    ("smtp2go", 535, "535 Incorrect authentication data", DISABLED, "auth_failed"),
    ("smtp2go", 550, "550 Relay access denied - please authenticate", DISABLED, "auth_failed"),
    (
        "smtp2go", 550, "550 From header sender domain not verified",
        DISABLED, "sender_not_verified",
    ),
]  # fmt: skip

NETWORK_ERRORS = [
    ("timeout", "TimeoutError: timed out", DEFERRED, "timeout", True),
    (
        "connection_lost",
        "ConnectionResetError: [Errno 104] Connection reset by peer",
        DEFERRED, "connection_lost", True,
    ),
    (
        "tls_failed",
        "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
        DEFERRED, "tls_failed", True,
    ),
    ("connect_failed", "ConnectionRefusedError: [Errno 111]", DEFERRED, "connect_failed", True),
    ("outcome_lost", "SMTPServerDisconnected: Connection unexpectedly closed", UNKNOWN,
     "outcome_lost", True),
]  # fmt: skip


def _reply(code: int, text: str) -> SmtpReply:
    # smtplib hands over the code once and the lines without their code prefix;
    # parse() accepts both that and the raw lines used in the table.
    return SmtpReply.parse(code, text.encode())


@pytest.mark.parametrize(("provider", "code", "text", "outcome", "reason"), REAL_REPLIES)
def test_real_reply_is_classified(
    provider: str, code: int, text: str, outcome: Outcome, reason: str
) -> None:
    verdict = classify_reply(_reply(code, text), provider)
    assert (verdict.outcome, verdict.reason) == (outcome, reason)


def test_the_table_covers_enough_real_replies() -> None:
    assert len(REAL_REPLIES) >= 25
    assert {p for p, *_ in REAL_REPLIES} >= {"gmail", "sendgrid", "smtp2go", "postfix", "smtp"}


@pytest.mark.parametrize(("kind", "detail", "outcome", "reason", "failure"), NETWORK_ERRORS)
def test_network_failures(
    kind: str, detail: str, outcome: Outcome, reason: str, failure: bool
) -> None:
    verdict = classify_reply(SmtpReply.from_error(kind, detail), "gmail")
    assert (verdict.outcome, verdict.reason, verdict.account_failure) == (outcome, reason, failure)


def test_an_unknown_error_kind_is_deferred_under_its_own_name() -> None:
    verdict = classify_reply(SmtpReply.from_error("proxy_refused", "socks5 said no"))
    assert (verdict.outcome, verdict.reason) == (DEFERRED, "proxy_refused")


def test_quota_pauses_until_the_window_frees_and_policy_does_not() -> None:
    quota = classify_reply(_reply(550, "550 5.4.5 Daily user sending limit exceeded."), "gmail")
    credits_text = "Authentication failed: Maximum credits exceeded"
    credits = classify_reply(_reply(451, credits_text), "sendgrid")
    policy = classify_reply(_reply(550, "5.7.1 blocked"), "gmail")
    assert quota.pause_until_window_frees and credits.pause_until_window_frees
    assert not policy.pause_until_window_frees
    assert quota.account_failure is False  # a full quota is not an unhealthy account


def test_deferrals_count_as_account_failures_and_bounces_do_not() -> None:
    assert classify_reply(_reply(451, "4.3.0 try later")).account_failure is True
    assert classify_reply(_reply(550, "5.1.1 no such user")).account_failure is False


def test_provider_table_is_checked_before_the_generic_one() -> None:
    reply = _reply(550, "550 Relay access denied - please authenticate")
    assert classify_reply(reply, "smtp2go").outcome is DISABLED
    assert classify_reply(reply, "smtp").outcome is FAILED
    quota = _reply(550, "550 5.4.5 Mail system congestion")
    assert classify_reply(quota, "gmail").outcome is PAUSED
    assert classify_reply(quota, "postfix").outcome is FAILED


def test_unknown_provider_uses_the_generic_table() -> None:
    assert classify_reply(_reply(250, "OK"), "no-such-provider") == Verdict(SENT, "accepted", False)


def test_unexpected_codes_are_deferred_not_sent() -> None:
    assert classify_reply(SmtpReply.parse(354, "go ahead")).outcome is DEFERRED
    assert classify_reply(SmtpReply.parse(999, "??")).outcome is DEFERRED


def test_generic_table_ends_with_catch_alls() -> None:
    assert GENERIC_RULES[-1].verdict.outcome is FAILED
    assert classify_reply(_reply(500, "5.5.2 Syntax error")).reason == "rejected"


# --- parsing -----------------------------------------------------------------------------


def test_parse_smtplib_form_gmail() -> None:
    message = (
        b"5.1.1 The email account that you tried to reach does not exist. Please try\n"
        b"5.1.1 double-checking the recipient's email address for typos"
    )
    reply = SmtpReply.parse(550, message)
    assert reply == SmtpReply(
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos",
    )


def test_parse_raw_multiline_form() -> None:
    reply = SmtpReply.parse(421, "421-4.7.0 Try again later,\n421 4.7.0 closing connection.")
    assert (reply.code, reply.enhanced, reply.text) == (
        421,
        "4.7.0",
        "Try again later, closing connection.",
    )


def test_parse_without_enhanced_code() -> None:
    reply = SmtpReply.parse(550, b"Unauthenticated senders not allowed")
    assert reply.enhanced is None
    assert reply.text == "Unauthenticated senders not allowed"


def test_parse_does_not_mistake_numbers_in_text_for_codes() -> None:
    assert SmtpReply.parse(550, "5501 is not a code").text == "5501 is not a code"
    assert SmtpReply.parse(550, "5.1.10x is not an enhanced code").enhanced is None


def test_parse_text_is_one_line_of_at_most_500_chars() -> None:
    reply = SmtpReply.parse(554, ("x" * 300 + "\r\n") * 3)
    assert len(reply.text) == 500
    assert "\n" not in reply.text and "\r" not in reply.text


def test_parse_tolerates_invalid_utf8() -> None:
    assert SmtpReply.parse(550, b"5.1.1 caf\xe9 unknown").text == "caf\ufffd unknown"


def test_from_error_has_no_code_and_names_its_kind() -> None:
    reply = SmtpReply.from_error("timeout", "TimeoutError: timed out\nafter 30 s")
    assert (reply.code, reply.enhanced, reply.text) == (
        None,
        None,
        "timeout: TimeoutError: timed out after 30 s",
    )
    assert reply.error_kind == "timeout"
    assert SmtpReply.parse(250, "ok").error_kind is None
