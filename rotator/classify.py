"""SMTP reply -> Verdict, table-driven: a provider's quirks first, then the generic table.

What a refusal is ABOUT decides who bears it (DESIGN "Outcome classification"): the
recipient (bounce or fail it alone), its domain (defer it, slow the domain), the content
(fail it, the campaign guard counts), the sending domain's authentication (pause every
account on that domain), or the account itself (pause or disable, hand the recipient
back). The stage the reply arrived at is part of the evidence: the same 5.7.1 is about
the account at MAIL FROM, about the address at RCPT and about the content after the dot.

The first rule that matches wins, so order matters: quota and credential rules come
before recipient rules (a 5.1.90 daily-limit reply from Microsoft is not a bad address),
authentication before "Recipient address rejected" (policyd-spf rejects at RCPT with that
prefix), and catch-alls come last. An unexplained 5xx fails the recipient and counts
toward the account's failure streak, so a misconfigured account cannot burn a list.
"""

from __future__ import annotations

import re

from rotator.providers import RULES as PROVIDER_RULES
from rotator.reply import SESSION_STAGES, SmtpReply, Stage
from rotator.verdict import (
    ACCOUNT_DISABLED_AUTH,
    ACCOUNT_DISABLED_SUSPENDED,
    DAILY_QUOTA,
    DOMAIN_THROTTLED,
    FAILED_CONTENT,
    SENDER_AUTH_FAILED,
    About,
    Outcome,
    Rule,
    Verdict,
)

__all__ = [
    "GENERIC_RULES",
    "About",
    "Outcome",
    "SmtpReply",
    "Stage",
    "Verdict",
    "classify_reply",
    "failed_checks",
]

_5XX = r"5\d\d"
_4XX = r"4\d\d"
_ANY = r"[45]\d\d"

SESSION = SESSION_STAGES
BEFORE_MAIL = frozenset({Stage.CONNECT, Stage.EHLO, Stage.TLS, Stage.AUTH, Stage.NOOP})
RCPT = frozenset({Stage.RCPT})
MESSAGE = frozenset({Stage.DATA, Stage.DOT})
# Where a reply can be about the recipient or the message: after MAIL FROM was taken.
IN_TRANSACTION = frozenset({Stage.RCPT, Stage.DATA, Stage.DOT})
# Where the sending domain can be judged: from MAIL FROM on.
FROM_MAIL = frozenset({Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.DOT})

# Recipient-does-not-exist wording of servers that send no (or a vague) enhanced code,
# e.g. Outlook "550 5.5.0 Requested action not taken: mailbox unavailable", Yahoo
# "554 delivery error: dd This user doesn't have a yahoo.com account" and Exim
# "550 Unrouteable address" is NOT here: that is a DNS problem of the domain.
_NO_SUCH_USER = (
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox unavailable"
    r"|mailbox (?:not found|does not exist)|(?:account|address|user) does not exist"
    r"|doesn't have an? \S+ account|invalid recipient|recipient not found"
    r"|RecipientNotFound"
)
_MAILBOX_FULL = r"over quota|out of storage|mailbox (?:is )?full|quota exceeded|storage space"
_DAILY_QUOTA_TEXT = (
    r"daily (?:user )?(?:sending |smtp relay )?(?:limit|quota)"
    r"|sending (?:limit|quota) exceeded|SubmissionQuotaExceeded"
)
# SPF / DKIM / DMARC wording (Gmail, Yahoo, Outlook, policyd-spf, Exim's dmarc ACLs);
# "Unauthenticated senders not allowed" (a relay wanting AUTH) is deliberately not here.
_SENDER_AUTH_TEXT = (
    r"\bSPF\b|\bDKIM\b|\bDMARC\b|sender policy framework|domainkeys"
    r"|sender is unauthenticated|unauthenticated e?-?mail|required authentication level"
)
# RFC 7372 / 7505 authentication codes; X.7.25 (reverse DNS) is about the IP, not here.
_SENDER_AUTH_CODES = r"5\.7\.2[0-46-7]|5\.7\.509|5\.7\.515"
# The sending IP is listed or refused: every message of this account would be refused.
_BLOCKLISTED_TEXT = (
    r"blocked using|client host \S* ?blocked|spamhaus|\bRBL\b|\bDNSBL\b|block ?list"
    r"|black ?list|banned sending IP|traffic not accepted from this IP"
    r"|not authorized to send email directly|poor reputation|\bS3140\b"
    r"|originating from your IP|from your IP address has been blocked"
)
_CONTENT_TEXT = (
    r"unsolicited|\bspam\b|content (?:rejected|filter)|message content|content presents"
    r"|not accepted for policy reasons|virus|malware|phish|suspicious (?:content|link|url)"
    r"|message (?:was )?blocked|rejected as spam|looks like spam"
)
# Greylisting and per-domain throttles (Gmail 4.2.1 / 4.7.0 / 4.7.28, Yahoo TSS04).
_THROTTLE_TEXT = (
    r"grey ?list|gray ?list|\brate\b|too many|too frequent|\bvolume\b|unsolicited"
    r"|deferred due to|try again in \d"
)
_RELAY_DENIED = (
    r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|not permitted to relay"
    r"|unable to relay|we do not relay|relay not allowed"
)


def _v(outcome: Outcome, reason: str, about: About, *, account_failure: bool = False) -> Verdict:
    return Verdict(outcome, reason, account_failure, about=about)


_SENDER_REJECTED = _v(Outcome.ACCOUNT_PAUSED, "sender_rejected", About.ACCOUNT)
_BLOCKLISTED = _v(Outcome.ACCOUNT_PAUSED, "blocklisted", About.ACCOUNT)
_MAILBOX_FULL_SOFT = _v(Outcome.DEFERRED, "mailbox_full", About.RECIPIENT)
_SESSION_TEMPORARY = _v(Outcome.DEFERRED, "temporary", About.ACCOUNT, account_failure=True)

GENERIC_RULES: tuple[Rule, ...] = (
    # A 2xx is a success whatever its text says.
    Rule(_v(Outcome.SENT, "accepted", About.MESSAGE), code=r"2\d\d"),
    # --- the account: credentials, quota, suspension. At any stage.
    Rule(ACCOUNT_DISABLED_AUTH, code=r"53[045]"),  # auth required / too weak / rejected
    # X.7.8 credentials invalid. X.7.9 "mechanism too weak" only at AUTH (534, caught
    # above): Yahoo answers "554 5.7.9 Message not accepted for policy reasons" to content.
    Rule(ACCOUNT_DISABLED_AUTH, code=_5XX, enhanced=r"5\.7\.8"),
    Rule(ACCOUNT_DISABLED_AUTH, code=_5XX, enhanced=r"5\.7\.9", stages=frozenset({Stage.AUTH})),
    Rule(ACCOUNT_DISABLED_AUTH, code=_5XX, enhanced=r"5\.7\.0", text=r"\bauth"),
    Rule(DAILY_QUOTA, code=_ANY, text=_DAILY_QUOTA_TEXT),
    Rule(
        ACCOUNT_DISABLED_SUSPENDED,
        code=_5XX,
        text=r"account (?:has been |is )?(?:suspended|deactivated|banned)",
        stages=SESSION,
    ),
    # --- the sending domain's authentication (SPF / DKIM / DMARC): every account on it.
    Rule(SENDER_AUTH_FAILED, code=_5XX, enhanced=_SENDER_AUTH_CODES, stages=FROM_MAIL),
    Rule(SENDER_AUTH_FAILED, code=_5XX, text=_SENDER_AUTH_TEXT, stages=FROM_MAIL),
    # A temporary authentication refusal (Gmail 421 4.7.26 "rate limited because it is
    # unauthenticated"): slow that domain; the permanent form will pause the accounts.
    Rule(
        _v(Outcome.DEFERRED, "unauthenticated_rate_limited", About.RECIPIENT_DOMAIN),
        code=_4XX,
        text=_SENDER_AUTH_TEXT,
        stages=IN_TRANSACTION,
    ),
    # --- the sending IP is listed: any stage, every message would meet it.
    Rule(_BLOCKLISTED, code=_5XX, text=_BLOCKLISTED_TEXT),
    Rule(_BLOCKLISTED, code=_5XX, enhanced=r"5\.7\.(?:6[0-4]\d|70[58]|750)"),
    Rule(_v(Outcome.ACCOUNT_PAUSED, "reverse_dns", About.ACCOUNT), code=_5XX, enhanced=r"5\.7\.25"),
    # X.1.7 / X.1.8: the *sender's* address is bad (RFC 3463), not the recipient's.
    Rule(_SENDER_REJECTED, code=_5XX, enhanced=r"5\.1\.[78]"),
    Rule(_SENDER_REJECTED, code=_5XX, text=r"sender address rejected|sender verify failed"),
    # --- the message itself, wherever it is refused (SIZE at MAIL, 552 after the dot).
    Rule(
        _v(Outcome.FAILED, "message_too_big", About.MESSAGE),
        code=_5XX,
        enhanced=r"5\.3\.4|5\.2\.3",
    ),
    # --- the session: a failure before the transaction is about the account.
    Rule(_SESSION_TEMPORARY, code=_4XX, stages=SESSION),
    Rule(_v(Outcome.ACCOUNT_PAUSED, "policy", About.ACCOUNT), code=_5XX, stages=SESSION),
    # --- the recipient: at RCPT (and after the dot, where some servers judge it).
    Rule(_MAILBOX_FULL_SOFT, code=_ANY, enhanced=r"[45]\.2\.2"),
    Rule(_MAILBOX_FULL_SOFT, code=r"45\d|552", text=_MAILBOX_FULL, stages=IN_TRANSACTION),
    Rule(_v(Outcome.BOUNCED, "mailbox_unknown", About.RECIPIENT), code=_5XX, enhanced=r"5\.1\.\d+"),
    Rule(_v(Outcome.BOUNCED, "mailbox_disabled", About.RECIPIENT), code=_5XX, enhanced=r"5\.2\.1"),
    # Yahoo: "554 delivery error: dd This account has been disabled or discontinued".
    Rule(
        _v(Outcome.BOUNCED, "mailbox_disabled", About.RECIPIENT),
        code=_5XX,
        text=r"account has been disabled or discontinued",
    ),
    # Exchange Online directory-based edge blocking: the recipient does not exist.
    Rule(
        _v(Outcome.BOUNCED, "mailbox_unknown", About.RECIPIENT),
        code=_5XX,
        enhanced=r"5\.4\.1",
        text=r"recipient address rejected",
    ),
    Rule(
        _v(Outcome.BOUNCED, "mailbox_unknown", About.RECIPIENT),
        code=r"55\d",
        enhanced=r"|5\.0\.0|5\.5\.0",
        text=_NO_SUCH_USER,
    ),
    # An access map or a relay rule for this one address (Postfix "554 5.7.1 <addr>:
    # Recipient address rejected: Access denied", "Relay access denied"): that recipient
    # fails, unsuppressed (the mailbox may exist); the account is untouched. A relay that
    # refuses everyone shows as a pattern across domains (worker.jobs.patterns).
    Rule(
        _v(Outcome.FAILED, "recipient_rejected", About.RECIPIENT),
        code=_5XX,
        text=r"recipient address rejected|RESOLVER\.RST|administrative prohibition",
    ),
    Rule(_v(Outcome.FAILED, "relay_denied", About.RECIPIENT), code=_5XX, text=_RELAY_DENIED),
    # Exim "550 Unrouteable address": the recipient's domain has no usable MX.
    Rule(
        _v(Outcome.FAILED, "unroutable", About.RECIPIENT),
        code=_5XX,
        text=r"unrouteable address|unroutable address",
    ),
    # That server's access map refuses our IP (Postfix "Client host rejected: Access
    # denied"): every recipient there fails, other domains are not concerned.
    Rule(
        _v(Outcome.FAILED, "client_rejected", About.RECIPIENT_DOMAIN),
        code=_5XX,
        text=r"client host rejected",
        stages=IN_TRANSACTION,
    ),
    # Temporary refusals at RCPT (greylisting 450 4.2.0 / 451 4.7.1, 451 4.3.0, Gmail's
    # 450 4.2.1 and 421 4.7.0 throttles): about that recipient's domain, never the account.
    Rule(
        _v(Outcome.DEFERRED, "greylisted", About.RECIPIENT_DOMAIN),
        code=_4XX,
        text=r"grey ?list|gray ?list",
    ),
    Rule(
        _v(Outcome.DEFERRED, "greylisted", About.RECIPIENT_DOMAIN),
        code=_4XX,
        enhanced=r"4\.2\.0|4\.7\.1",
        stages=RCPT,
    ),
    Rule(DOMAIN_THROTTLED, code=_4XX, text=_THROTTLE_TEXT, stages=IN_TRANSACTION),
    Rule(DOMAIN_THROTTLED, code=_4XX, enhanced=r"4\.2\.1", stages=IN_TRANSACTION),
    Rule(_v(Outcome.DEFERRED, "temporary", About.RECIPIENT_DOMAIN), code=_4XX, stages=RCPT),
    # --- the content, after DATA: that message fails, the campaign guard counts.
    Rule(FAILED_CONTENT, code=_5XX, text=_CONTENT_TEXT, stages=MESSAGE),
    Rule(FAILED_CONTENT, code=_5XX, enhanced=r"5\.6\.\d+"),
    Rule(FAILED_CONTENT, code=_5XX, enhanced=r"5\.7\.1", text=r"content", stages=MESSAGE),
    # A 4xx after DATA: that message is retried; the session worked.
    Rule(_v(Outcome.DEFERRED, "temporary", About.MESSAGE), code=_4XX, stages=MESSAGE),
    # --- catch-alls. An unexplained permanent refusal fails this recipient (never
    # suppressed) and counts toward the account's streak.
    Rule(
        _v(Outcome.FAILED, "policy", About.MESSAGE, account_failure=True),
        code=_5XX,
        enhanced=r"5\.7\.\d+",
    ),
    Rule(_v(Outcome.FAILED, "rejected", About.MESSAGE, account_failure=True), code=_5XX),
    # A 4xx whose stage is not known (callers that do not say): treated as the session's.
    Rule(
        _v(Outcome.DEFERRED, "rate_limited", About.ACCOUNT, account_failure=True),
        code=_4XX,
        text=r"\brate\b|too many|\bvolume\b|unsolicited",
    ),
    Rule(_SESSION_TEMPORARY, code=_4XX),
)

_LOST = Verdict(Outcome.UNKNOWN, "outcome_lost", account_failure=False)
_UNREADABLE = Verdict(Outcome.UNKNOWN, "unreadable_reply", account_failure=False)
_UNEXPECTED = Verdict(
    Outcome.DEFERRED, "unexpected_reply", account_failure=True, about=About.ACCOUNT
)
_VALID_CODE = re.compile(r"[245]\d\d")


def classify_reply(reply: SmtpReply, provider: str = "smtp") -> Verdict:
    kind = reply.error_kind
    if kind is not None:
        return _classify_error(kind, reply.stage)
    if reply.stage is Stage.DOT and not _VALID_CODE.fullmatch(str(reply.code)):
        # The message is out and what came back is not an SMTP reply: the server may
        # have taken it. Never retried automatically (no duplicates).
        return _UNREADABLE
    for rule in PROVIDER_RULES.get(provider, ()):
        if rule.matches(reply):
            return rule.verdict
    for rule in GENERIC_RULES:
        if rule.matches(reply):
            return rule.verdict
    return _UNEXPECTED


def _classify_error(kind: str, stage: Stage | None) -> Verdict:
    if kind == "outcome_lost" or (kind == "client_error" and stage is Stage.DOT):
        # The end-of-data dot went out and no reply came back: the server may have
        # accepted the message. Never retried automatically (no duplicates).
        return _LOST
    if kind == "auth_unavailable":
        return ACCOUNT_DISABLED_AUTH
    if kind == "address_unencodable":
        # The address cannot go on the wire (bad IDNA, UTF-8 local part without
        # SMTPUTF8): that recipient alone fails. At MAIL it may be our own address.
        return Verdict(
            Outcome.FAILED,
            kind,
            account_failure=stage is Stage.MAIL,
            about=About.RECIPIENT,
        )
    if stage is Stage.CONNECT and kind in ("timeout", "connect_failed", "connection_lost"):
        # The server did not take the connection or greet in time: a saturated or
        # unreachable host, shared by every account on it (a relay serves a limited number
        # of clients at once), not this account's failure. Deferred; whether the account's
        # server is really down is the health check's judgement (worker.jobs.health).
        return Verdict(Outcome.DEFERRED, kind, account_failure=False, about=About.MESSAGE)
    # timeout, connection_lost, tls_failed, connect_failed, client_error, and an unknown
    # kind the same way under its own name: deferred, nothing was delivered. Only a
    # failure of the session itself counts against the account; a connection lost
    # inside a message (RCPT, DATA) is the server's, and the next session may work.
    in_message = stage in IN_TRANSACTION
    return Verdict(
        Outcome.DEFERRED,
        kind,
        account_failure=not in_message,
        about=About.MESSAGE if in_message else About.ACCOUNT,
    )


_CHECKS = (
    ("SPF", re.compile(r"\bSPF\b|sender policy framework", re.IGNORECASE)),
    ("DKIM", re.compile(r"\bDKIM\b|domainkeys", re.IGNORECASE)),
    ("DMARC", re.compile(r"\bDMARC\b", re.IGNORECASE)),
)
_CHECK_CODES = {
    "5.7.20": ("DKIM",),
    "5.7.21": ("DKIM",),
    "5.7.22": ("DKIM",),
    "5.7.23": ("SPF",),
    "5.7.24": ("SPF",),
    "5.7.509": ("DMARC",),
}


def failed_checks(reply: SmtpReply) -> tuple[str, ...]:
    """Which of SPF, DKIM, DMARC a sending-domain refusal names (by text, then by its
    RFC 7372 code); a refusal that names none ("unauthenticated", 5.7.26, Outlook's
    5.7.515 "required authentication level") failed them all as far as we can tell."""
    named = tuple(name for name, pattern in _CHECKS if pattern.search(reply.text))
    if named:
        return named
    if reply.enhanced in _CHECK_CODES:
        return _CHECK_CODES[reply.enhanced]
    if reply.enhanced == "5.7.27" and "mx" in reply.text.lower():
        return ("null MX",)
    return ("SPF", "DKIM", "DMARC")
