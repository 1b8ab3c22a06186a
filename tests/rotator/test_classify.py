"""Real replies, verbatim (IPs and ids anonymised), each at the stage it arrives at, and what
each must mean: the outcome, the reason, and what the refusal is about.

Where the wording is documented:
- Gmail: https://support.google.com/a/answer/3726730 (SMTP error reference)
- Outlook / Office 365: https://learn.microsoft.com/exchange/mail-flow-best-practices/
  non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
- Yahoo: https://senders.yahooinc.com/smtp-error-codes/
- SendGrid: https://www.twilio.com/docs/sendgrid/for-developers/sending-email/smtp-errors-and-troubleshooting
- SMTP2GO: https://support.smtp2go.com/hc/en-gb/articles/13990494697369-Common-Sending-Errors
- Postfix: http://www.postfix.org/SMTPD_ACCESS_README.html, postgrey, postfix-policyd-spf
- Exim: https://www.exim.org/exim-html-current/doc/html/spec_html/ch-access_control_lists.html
"""

from __future__ import annotations

import pytest

from rotator.classify import (
    GENERIC_RULES,
    About,
    Outcome,
    SmtpReply,
    Stage,
    Verdict,
    classify_reply,
    failed_checks,
)

SENT, DEFERRED, BOUNCED, FAILED = Outcome.SENT, Outcome.DEFERRED, Outcome.BOUNCED, Outcome.FAILED
PAUSED, DISABLED, UNKNOWN = Outcome.ACCOUNT_PAUSED, Outcome.ACCOUNT_DISABLED, Outcome.UNKNOWN
CONNECT, AUTH, MAIL, RCPT = Stage.CONNECT, Stage.AUTH, Stage.MAIL, Stage.RCPT
DATA, DOT = Stage.DATA, Stage.DOT
RECIPIENT, DOMAIN, CONTENT = About.RECIPIENT, About.RECIPIENT_DOMAIN, About.CONTENT
SENDING_DOMAIN, ACCOUNT, MESSAGE = About.SENDING_DOMAIN, About.ACCOUNT, About.MESSAGE

# (provider, stage, code, reply text as the server sent it, outcome, reason, about)
REAL_REPLIES = [
    # --- Gmail -----------------------------------------------------------------------------
    ("gmail", DOT, 250, "250 2.0.0 OK  1700000000 d2si1234567qkb.123 - gsmtp",
     SENT, "accepted", MESSAGE),
    ("gmail", RCPT, 550,
     "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
     "550-5.1.1 double-checking the recipient's email address for typos or\n"
     "550-5.1.1 unnecessary spaces. Learn more at\n"
     "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser d2si1234567qkb.123 - gsmtp",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("gmail", DOT, 421,
     "421-4.7.0 [203.0.113.7      15] Our system has detected an unusual rate of\n"
     "421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
     "421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
     "421-4.7.0 rate limited. Please visit\n"
     "421 4.7.0  https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
     DEFERRED, "rate_limited", DOMAIN),
    ("gmail", RCPT, 450,
     "450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n"
     "450-4.2.1 prevents additional messages from being delivered. Please resend your\n"
     "450-4.2.1 message at a later time. If the user is able to receive mail at that\n"
     "450 4.2.1 time, your message will be delivered. https://support.google.com/mail/?p=ReceivingRate",
     DEFERRED, "rate_limited", DOMAIN),
    ("gmail", MAIL, 550,
     "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
     "550 5.4.5 sending limits go to\n"
     "550 5.4.5  https://support.google.com/a/answer/166852 - gsmtp",
     PAUSED, "daily_quota", ACCOUNT),
    ("gmail", MAIL, 450, "450 4.2.1 Peak SMTP relay limit exceeded for customer. - gsmtp",
     DEFERRED, "rate_limited", ACCOUNT),
    ("gmail", AUTH, 535,
     "535-5.7.8 Username and Password not accepted. Learn more at\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp",
     DISABLED, "auth_failed", ACCOUNT),
    ("gmail", AUTH, 534,
     "534-5.7.9 Application-specific password required. Learn more at\n"
     "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp",
     DISABLED, "auth_failed", ACCOUNT),
    ("gmail", MAIL, 530,
     "530-5.7.0 Authentication Required. Learn more at\n"
     "530 5.7.0  https://support.google.com/mail/?p=WantAuthError - gsmtp",
     DISABLED, "auth_failed", ACCOUNT),
    ("gmail", AUTH, 454, "454 4.7.0 Too many login attempts, please try again later. - gsmtp",
     DEFERRED, "temporary", ACCOUNT),
    ("gmail", CONNECT, 421, "421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp",
     DEFERRED, "temporary", ACCOUNT),
    ("gmail", RCPT, 452,
     "452-4.2.2 The recipient's inbox is out of storage space. Please direct\n"
     "452-4.2.2 the recipient to\n"
     "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
     DEFERRED, "mailbox_full", RECIPIENT),
    ("gmail", RCPT, 552,
     "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
     "552 5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
     DEFERRED, "mailbox_full", RECIPIENT),
    ("gmail", RCPT, 550,
     "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
     "550 5.2.1  https://support.google.com/mail/?p=DisabledUser - gsmtp",
     BOUNCED, "mailbox_disabled", RECIPIENT),
    ("gmail", DOT, 550,
     "550-5.7.1 [203.0.113.7] Our system has detected that this message is\n"
     "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
     "550-5.7.1 this message has been blocked. Please visit\n"
     "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
     FAILED, "content_rejected", CONTENT),
    ("gmail", DOT, 550,
     "550-5.7.1 [203.0.113.7] Our system has detected an unusual rate of\n"
     "550-5.7.1 unsolicited mail originating from your IP address. To protect our\n"
     "550-5.7.1 users from spam, mail sent from your IP address has been blocked.\n"
     "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedIPError - gsmtp",
     PAUSED, "blocklisted", ACCOUNT),
    ("gmail", RCPT, 550,
     "550-5.7.1 [203.0.113.7] The IP you're using to send mail is not authorized to\n"
     "550-5.7.1 send email directly to our servers. Please use the SMTP relay at your\n"
     "550 5.7.1 service provider instead. https://support.google.com/mail/?p=NotAuthorizedError",
     PAUSED, "blocklisted", ACCOUNT),
    ("gmail", DOT, 550,
     "550-5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
     "550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.\n"
     "550-5.7.26  Authentication results: DKIM = did not pass SPF [example.com] with ip:\n"
     "550 5.7.26 [203.0.113.7] = did not pass https://support.google.com/mail/answer/81126",
     PAUSED, "sender_auth", SENDING_DOMAIN),
    ("gmail", DOT, 550,
     "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n"
     "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain if\n"
     "550 5.7.26 this was a legitimate mail. https://support.google.com/mail/answer/2451690",
     PAUSED, "sender_auth", SENDING_DOMAIN),
    ("gmail", DOT, 421,
     "421-4.7.26 This mail has been rate limited because it is unauthenticated. Gmail\n"
     "421 4.7.26 requires all senders to authenticate with either SPF or DKIM. - gsmtp",
     DEFERRED, "unauthenticated_rate_limited", DOMAIN),
    ("gmail", DOT, 550,
     "550-5.7.25 [203.0.113.7] The IP address sending this message does not have a PTR\n"
     "550 5.7.25 record setup, or the corresponding forward DNS entry does not point to the "
     "sending IP.", PAUSED, "reverse_dns", ACCOUNT),
    ("gmail", DOT, 552,
     "552-5.7.0 This message was blocked because its content presents a potential\n"
     "552-5.7.0 security issue. Please visit\n"
     "552 5.7.0  https://support.google.com/mail/?p=BlockedMessage - gsmtp",
     FAILED, "content_rejected", CONTENT),
    ("gmail", DOT, 552,
     "552-5.3.4 Your message exceeded Google's message size limits. Please visit\n"
     "552 5.3.4  https://support.google.com/mail/?p=MaxSizeError - gsmtp",
     FAILED, "message_too_big", MESSAGE),
    ("gmail", RCPT, 553,
     "553-5.1.3 The recipient address <bob@@example.org> is not a valid RFC-5321\n"
     "553 5.1.3 address. Learn more at https://support.google.com/mail/?p=BadRcptAddress",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("gmail", DOT, 451, "451 4.3.0 Mail server temporarily rejected message.",
     DEFERRED, "temporary", MESSAGE),
    # --- Outlook / Office 365 ----------------------------------------------------------------
    ("smtp", RCPT, 550, "550 5.5.0 Requested action not taken: mailbox unavailable.",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("smtp", RCPT, 550,
     "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
     "[DM6NAM12FT045.eop-nam12.prod.protection.outlook.com]",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("smtp", RCPT, 550,
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("smtp", RCPT, 550,
     "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required [Stage: CreateMessage]",
     FAILED, "recipient_rejected", RECIPIENT),
    ("smtp", DOT, 550,
     "550 5.1.90 Your message can't be sent because you've reached your daily limit for "
     "message recipients", PAUSED, "daily_quota", ACCOUNT),
    ("smtp", DOT, 554,
     "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
     "process message due to a permanent exception", PAUSED, "daily_quota", ACCOUNT),
    ("smtp", AUTH, 535,
     "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
     "authenticated successfully.", DISABLED, "auth_failed", ACCOUNT),
    ("smtp", DOT, 550,
     "550 5.7.515 Access denied, sending domain example.com doesn't meet the required "
     "authentication level.", PAUSED, "sender_auth", SENDING_DOMAIN),
    ("smtp", DOT, 550,
     "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification "
     "and has a DMARC policy of reject.", PAUSED, "sender_auth", SENDING_DOMAIN),
    ("smtp", DOT, 550, "550 5.7.23 The message was rejected because of Sender Policy "
     "Framework violation", PAUSED, "sender_auth", SENDING_DOMAIN),
    # 5.7.708 is about the sending IP's reputation, not this message: the account pauses.
    ("smtp", RCPT, 550,
     "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
     PAUSED, "blocklisted", ACCOUNT),
    ("smtp", DOT, 550,
     "550 5.7.1 Unfortunately, messages from [203.0.113.7] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3140).",
     PAUSED, "blocklisted", ACCOUNT),
    ("smtp", DOT, 550, "550 5.7.1 Message rejected as spam by Content Filtering.",
     FAILED, "content_rejected", CONTENT),
    ("smtp", RCPT, 451,
     "451 4.7.500 Server busy. Please try again later from [203.0.113.7]. (S77714) "
     "[DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
     DEFERRED, "temporary", DOMAIN),
    ("smtp", RCPT, 421,
     "421 RP-001 (BAY004-MC1F2) Unfortunately, some messages from 203.0.113.7 weren't sent. "
     "Please try again. We have limits for how many messages can be sent per hour and per "
     "day.", DEFERRED, "temporary", DOMAIN),
    # --- Yahoo / AOL -------------------------------------------------------------------------
    ("smtp", RCPT, 554,
     "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.com) "
     "[0] - mta1234.mail.bf1.yahoo.com",
     BOUNCED, "mailbox_unknown", RECIPIENT),
    ("smtp", RCPT, 554,
     "554 delivery error: dd This account has been disabled or discontinued [#102]. "
     "- mta1234.mail.bf1.yahoo.com", BOUNCED, "mailbox_disabled", RECIPIENT),
    ("smtp", RCPT, 421,
     "421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
     DEFERRED, "rate_limited", DOMAIN),
    ("smtp", CONNECT, 553,
     "553 5.7.1 [BL21] Connections will not be accepted from 203.0.113.7, because the ip is "
     "in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
     PAUSED, "blocklisted", ACCOUNT),
    ("smtp", DOT, 554,
     "554 5.7.9 Message not accepted for policy reasons.  See "
     "https://help.yahoo.com/kb/postmaster/SLN7624.html", FAILED, "content_rejected", CONTENT),
    ("smtp", DOT, 550,
     "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
     "requires all senders to authenticate with either SPF or DKIM.",
     PAUSED, "sender_auth", SENDING_DOMAIN),
    # --- Postfix (and its policy servers) ----------------------------------------------------
    ("postfix", RCPT, 450,
     "450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.org.html",
     DEFERRED, "greylisted", DOMAIN),
    ("postfix", RCPT, 451, "451 4.7.1 Please try again later", DEFERRED, "greylisted", DOMAIN),
    ("postfix", RCPT, 451, "451 4.3.0 <bob@example.org>: Temporary lookup failure",
     DEFERRED, "temporary", DOMAIN),
    ("postfix", RCPT, 550,
     "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local "
     "recipient table", BOUNCED, "mailbox_unknown", RECIPIENT),
    ("postfix", RCPT, 554, "554 5.7.1 <bob@example.org>: Recipient address rejected: "
     "Access denied", FAILED, "recipient_rejected", RECIPIENT),
    ("postfix", RCPT, 554, "554 5.7.1 <bob@example.org>: Relay access denied",
     FAILED, "relay_denied", RECIPIENT),
    ("postfix", RCPT, 554,
     "554 5.7.1 <mail.example.com[203.0.113.7]>: Client host rejected: Access denied",
     FAILED, "client_rejected", DOMAIN),
    ("postfix", RCPT, 554,
     "554 5.7.1 Service unavailable; Client host [203.0.113.7] blocked using zen.spamhaus.org;"
     " https://www.spamhaus.org/query/ip/203.0.113.7", PAUSED, "blocklisted", ACCOUNT),
    # postfix-policyd-spf-python rejects at RCPT, hence the "Recipient address rejected".
    ("postfix", RCPT, 550,
     "550 5.7.23 <bob@example.org>: Recipient address rejected: Message rejected due to: SPF "
     "fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=ann@example.com"
     ";ip=203.0.113.7;r=<UNKNOWN>", PAUSED, "sender_auth", SENDING_DOMAIN),
    ("postfix", MAIL, 553,
     "553 5.7.1 <ann@example.com>: Sender address rejected: not owned by user alice",
     PAUSED, "sender_rejected", ACCOUNT),
    ("postfix", DOT, 552, "552 5.3.4 Message size exceeds fixed limit",
     FAILED, "message_too_big", MESSAGE),
    ("postfix", DOT, 550, "550 5.7.1 Message content rejected", FAILED, "content_rejected",
     CONTENT),
    ("postfix", DOT, 552, "552 5.2.2 <bob@example.org> Quota exceeded (mailbox for user is "
     "full)", DEFERRED, "mailbox_full", RECIPIENT),
    ("postfix", DATA, 421, "421 4.4.2 mx.example.org Error: timeout exceeded",
     DEFERRED, "temporary", MESSAGE),
    ("smtp", DOT, 554, "554 5.6.0 Corrupt message content", FAILED, "content_rejected",
     CONTENT),
    # --- Exim ---------------------------------------------------------------------------------
    ("smtp", RCPT, 550, "550 Unrouteable address", FAILED, "unroutable", RECIPIENT),
    ("smtp", RCPT, 550, "550-Verification failed for <ann@example.com>\n550-Unrouteable "
     "address\n550 Sender verify failed", PAUSED, "sender_rejected", ACCOUNT),
    ("smtp", RCPT, 550, "550 relay not permitted", FAILED, "relay_denied", RECIPIENT),
    ("smtp", RCPT, 550, "550 Administrative prohibition", FAILED, "recipient_rejected",
     RECIPIENT),
    ("smtp", RCPT, 451, "451 Temporary local problem - please try later",
     DEFERRED, "temporary", DOMAIN),
    ("smtp", RCPT, 451, "451 Greylisted, please try again in 5 minutes",
     DEFERRED, "greylisted", DOMAIN),
    ("smtp", DOT, 550, "550 This message scored 15.2 spam points.", FAILED,
     "content_rejected", CONTENT),
    ("smtp", DOT, 550, "550 This message contains a virus or other harmful content "
     "(Eicar-Test-Signature)", FAILED, "content_rejected", CONTENT),
    ("smtp", RCPT, 550, "550 Rejected because 203.0.113.7 is in a black list at "
     "zen.spamhaus.org", PAUSED, "blocklisted", ACCOUNT),
    # --- SendGrid -----------------------------------------------------------------------------
    ("sendgrid", MAIL, 451, "451 Authentication failed: Maximum credits exceeded",
     PAUSED, "daily_quota", ACCOUNT),
    ("sendgrid", DOT, 550,
     "550 The from address does not match a verified Sender Identity. Mail cannot be sent "
     "until this error is resolved. Visit https://sendgrid.com/docs/for-developers/"
     "sending-email/sender-identity/ to see the Sender Identity requirements",
     DISABLED, "sender_not_verified", ACCOUNT),
    ("sendgrid", MAIL, 550, "550 Unauthenticated senders not allowed", DISABLED,
     "auth_failed", ACCOUNT),
    ("sendgrid", AUTH, 535, "535 Authentication failed: Bad username / password",
     DISABLED, "auth_failed", ACCOUNT),
    ("sendgrid", MAIL, 421, "421 Message from (203.0.113.7) temporarily deferred",
     DEFERRED, "temporary", ACCOUNT),
    # --- SMTP2GO -----------------------------------------------------------------------------
    ("smtp2go", AUTH, 535, "535 Incorrect authentication data", DISABLED, "auth_failed",
     ACCOUNT),
    ("smtp2go", RCPT, 550, "550 Relay access denied - please authenticate", DISABLED,
     "auth_failed", ACCOUNT),
    ("smtp2go", DOT, 550, "550 From header sender domain not verified",
     DISABLED, "sender_not_verified", ACCOUNT),
]  # fmt: skip

NETWORK_ERRORS = [
    # (kind, detail, stage, outcome, reason, counts against the account)
    # No connection or no greeting: a saturated or unreachable host, shared by every
    # account on it; the health check judges whether the account's server is down.
    ("timeout", "TimeoutError: timed out", CONNECT, DEFERRED, "timeout", False),
    ("timeout", "TimeoutError: timed out", RCPT, DEFERRED, "timeout", False),
    ("connection_lost", "ConnectionResetError: [Errno 104] Connection reset by peer", MAIL,
     DEFERRED, "connection_lost", True),
    ("connection_lost", "SMTPServerDisconnected: Connection unexpectedly closed", DATA,
     DEFERRED, "connection_lost", False),
    ("tls_failed",
     "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
     Stage.TLS, DEFERRED, "tls_failed", True),
    ("connect_failed", "ConnectionRefusedError: [Errno 111]", CONNECT, DEFERRED,
     "connect_failed", False),
    ("connection_lost", "SMTPServerDisconnected: Connection unexpectedly closed", CONNECT,
     DEFERRED, "connection_lost", False),
    ("outcome_lost", "SMTPServerDisconnected: Connection unexpectedly closed", DOT, UNKNOWN,
     "outcome_lost", False),
    ("client_error", "KeyError: 'x'", RCPT, DEFERRED, "client_error", False),
    ("client_error", "KeyError: 'x'", MAIL, DEFERRED, "client_error", True),
    ("client_error", "KeyError: 'x'", DOT, UNKNOWN, "outcome_lost", False),
    ("address_unencodable", "bob@m\u00fcnchen..de: label empty", RCPT, FAILED,
     "address_unencodable", False),
    ("auth_unavailable", "server does not offer AUTH", AUTH, DISABLED, "auth_failed", True),
]  # fmt: skip


def _reply(code: int, text: str, stage: Stage | None = None) -> SmtpReply:
    # smtplib hands over the code once and the lines without their code prefix;
    # parse() accepts both that and the raw lines used in the table.
    return SmtpReply.parse(code, text.encode(), stage)


@pytest.mark.parametrize(
    ("provider", "stage", "code", "text", "outcome", "reason", "about"), REAL_REPLIES
)
def test_real_reply_is_classified(
    provider: str,
    stage: Stage,
    code: int,
    text: str,
    outcome: Outcome,
    reason: str,
    about: About,
) -> None:
    verdict = classify_reply(_reply(code, text, stage), provider)
    assert (verdict.outcome, verdict.reason, verdict.about) == (outcome, reason, about)


def test_the_table_covers_enough_real_replies() -> None:
    assert len(REAL_REPLIES) >= 40
    assert {p for p, *_ in REAL_REPLIES} >= {"gmail", "sendgrid", "smtp2go", "postfix", "smtp"}
    assert {s for _, s, *_ in REAL_REPLIES} >= {CONNECT, AUTH, MAIL, RCPT, DATA, DOT}


@pytest.mark.parametrize(("kind", "detail", "stage", "outcome", "reason", "failure"),
                         NETWORK_ERRORS)  # fmt: skip
def test_network_failures(
    kind: str, detail: str, stage: Stage, outcome: Outcome, reason: str, failure: bool
) -> None:
    verdict = classify_reply(SmtpReply.from_error(kind, detail, stage), "gmail")
    assert (verdict.outcome, verdict.reason, verdict.account_failure) == (outcome, reason, failure)


def test_an_unknown_error_kind_is_deferred_under_its_own_name() -> None:
    verdict = classify_reply(SmtpReply.from_error("proxy_refused", "socks5 said no"))
    assert (verdict.outcome, verdict.reason) == (DEFERRED, "proxy_refused")


# --- what each refusal is about, and so who bears it ----------------------------------------


def test_the_same_5_7_1_is_about_the_address_at_rcpt_and_the_content_after_the_dot() -> None:
    rcpt = classify_reply(_reply(554, "5.7.1 <bob@example.org>: Recipient address rejected: "
                                      "Access denied", RCPT))  # fmt: skip
    content = classify_reply(_reply(550, "5.7.1 Message content rejected", DOT))
    at_mail = classify_reply(_reply(550, "5.7.1 Access denied", MAIL))
    assert (rcpt.outcome, rcpt.about, rcpt.account_failure) == (FAILED, RECIPIENT, False)
    assert (content.outcome, content.about, content.account_failure) == (FAILED, CONTENT, False)
    assert (at_mail.outcome, at_mail.about) == (PAUSED, ACCOUNT)


def test_refusals_about_the_recipient_or_its_domain_never_touch_the_account() -> None:
    for _, stage, code, text, _, _, about in REAL_REPLIES:
        verdict = classify_reply(_reply(code, text, stage))
        if about in (RECIPIENT, DOMAIN, CONTENT):
            assert not verdict.account_failure and not verdict.stops_account, text


def test_mailbox_full_is_soft_and_never_bounces() -> None:
    for code, text in ((552, "5.2.2 Mailbox full"), (452, "4.2.2 Over quota")):
        verdict = classify_reply(_reply(code, text, RCPT))
        assert (verdict.outcome, verdict.reason, verdict.about) == (
            DEFERRED, "mailbox_full", RECIPIENT,
        )  # fmt: skip


def test_temporary_rcpt_refusals_are_about_the_domain() -> None:
    replies = [(450, "4.2.0 Greylisted"), (451, "4.7.1 Try later"),
               (451, "4.3.0 Temporary failure"), (421, "4.7.0 Try again later")]  # fmt: skip
    for code, text in replies:
        verdict = classify_reply(_reply(code, text, RCPT))
        assert (verdict.outcome, verdict.about, verdict.account_failure) == (
            DEFERRED, DOMAIN, False,
        ), text  # fmt: skip


def test_the_same_4xx_at_mail_from_is_a_session_failure() -> None:
    verdict = classify_reply(_reply(451, "4.3.0 Temporary failure", MAIL))
    assert (verdict.outcome, verdict.about, verdict.account_failure) == (DEFERRED, ACCOUNT, True)


def test_an_unexplained_5xx_fails_the_recipient_and_counts_against_the_account() -> None:
    for stage in (RCPT, DOT, None):
        verdict = classify_reply(_reply(554, "5.7.1 Rejected", stage))
        assert (verdict.outcome, verdict.account_failure) == (FAILED, True)
        assert not verdict.stops_account
    plain = classify_reply(_reply(500, "5.5.2 Syntax error", RCPT))
    assert (plain.outcome, plain.reason, plain.account_failure) == (FAILED, "rejected", True)


def test_a_2xx_is_sent_whatever_its_text_says() -> None:
    for text in ("2.0.0 OK", "2.7.1 spam detected, delivered to junk", "550 5.1.1 no such user"):
        assert classify_reply(_reply(250, text, DOT)).outcome is SENT


def test_a_reply_after_the_dot_that_is_not_smtp_is_unknown_never_retried() -> None:
    # smtplib turns a reply line it cannot read into code -1.
    for code in (-1, 354, 999, 100, 0):
        verdict = classify_reply(SmtpReply.parse(code, "garbage", DOT))
        assert (verdict.outcome, verdict.reason) == (UNKNOWN, "unreadable_reply")


def test_unexpected_codes_before_the_dot_are_deferred_not_sent() -> None:
    assert classify_reply(SmtpReply.parse(354, "go ahead", RCPT)).outcome is DEFERRED
    assert classify_reply(SmtpReply.parse(999, "??")).outcome is DEFERRED


def test_failed_checks_names_what_the_sending_domain_failed() -> None:
    spf = _reply(550, "5.7.23 <bob@example.org>: Message rejected due to: SPF fail", RCPT)
    dmarc = _reply(550, "5.7.509 Access denied, sending domain example.com does not pass "
                        "DMARC verification", DOT)  # fmt: skip
    both = _reply(550, "5.7.26 Gmail requires all senders to authenticate with either SPF or "
                       "DKIM.", DOT)  # fmt: skip
    vague = _reply(550, "5.7.515 Access denied, sending domain example.com doesn't meet the "
                        "required authentication level.", DOT)  # fmt: skip
    by_code = _reply(550, "5.7.20 No passing signature found", DOT)
    assert failed_checks(spf) == ("SPF",)
    assert failed_checks(dmarc) == ("DMARC",)
    assert failed_checks(both) == ("SPF", "DKIM")
    assert failed_checks(vague) == ("SPF", "DKIM", "DMARC")
    assert failed_checks(by_code) == ("DKIM",)


def test_quota_pauses_until_the_window_frees_and_policy_does_not() -> None:
    quota = classify_reply(_reply(550, "550 5.4.5 Daily user sending limit exceeded."), "gmail")
    credits_text = "Authentication failed: Maximum credits exceeded"
    credits = classify_reply(_reply(451, credits_text), "sendgrid")
    policy = classify_reply(_reply(550, "5.7.1 Access denied", MAIL), "gmail")
    assert quota.pause_until_window_frees and credits.pause_until_window_frees
    assert policy.stops_account and not policy.pause_until_window_frees
    assert quota.account_failure is False  # a full quota is not an unhealthy account


def test_session_deferrals_count_as_account_failures_and_bounces_do_not() -> None:
    assert classify_reply(_reply(451, "4.3.0 try later", MAIL)).account_failure is True
    assert classify_reply(_reply(451, "4.3.0 try later")).account_failure is True  # no stage
    assert classify_reply(_reply(550, "5.1.1 no such user", RCPT)).account_failure is False


def test_provider_table_is_checked_before_the_generic_one() -> None:
    reply = _reply(550, "550 Relay access denied - please authenticate", RCPT)
    assert classify_reply(reply, "smtp2go").outcome is DISABLED
    assert classify_reply(reply, "smtp").outcome is FAILED
    quota = _reply(550, "550 5.4.5 Mail system congestion", DOT)
    assert classify_reply(quota, "gmail").outcome is PAUSED
    assert classify_reply(quota, "postfix").outcome is FAILED


def test_unknown_provider_uses_the_generic_table() -> None:
    assert classify_reply(_reply(250, "OK"), "no-such-provider") == Verdict(SENT, "accepted", False)


def test_generic_table_ends_with_catch_alls() -> None:
    assert GENERIC_RULES[-1].verdict.outcome is DEFERRED
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
