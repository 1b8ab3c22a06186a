"""SMTP reply -> Verdict, table-driven: a provider's quirks first, then the generic table.

The first rule that matches wins, so order within a table matters: account-level
rules come before recipient-level ones (a 5.1.90 daily-limit reply from Microsoft
is not a bad address), and catch-alls come last.
"""

from __future__ import annotations

from rotator.providers import RULES as PROVIDER_RULES
from rotator.reply import SmtpReply
from rotator.verdict import (
    ACCOUNT_DISABLED_AUTH,
    DAILY_QUOTA,
    FAILED_CONTENT,
    Outcome,
    Rule,
    Verdict,
)

__all__ = ["GENERIC_RULES", "Outcome", "SmtpReply", "Verdict", "classify_reply"]

_5XX = r"5\d\d"
_4XX = r"4\d\d"

# Recipient-does-not-exist wording of servers that send no (or a vague) enhanced code,
# e.g. Outlook "550 5.5.0 Requested action not taken: mailbox unavailable" and Yahoo
# "554 delivery error: dd This user doesn't have a yahoo.com account".
_NO_SUCH_USER = (
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox unavailable"
    r"|mailbox (?:not found|does not exist)|(?:account|address|user) does not exist"
    r"|doesn't have an? \S+ account|invalid recipient|recipient not found"
)

_DAILY_QUOTA_TEXT = (
    r"daily (?:user )?(?:sending |smtp relay )?(?:limit|quota)"
    r"|sending (?:limit|quota) exceeded|SubmissionQuotaExceeded"
)


def _v(outcome: Outcome, reason: str, account_failure: bool) -> Verdict:
    return Verdict(outcome, reason, account_failure)


GENERIC_RULES: tuple[Rule, ...] = (
    Rule(_v(Outcome.SENT, "accepted", False), code=r"2\d\d"),
    # --- 4xx: temporary. DESIGN counts every one of them as an account failure.
    Rule(_v(Outcome.DEFERRED, "mailbox_full", True), code=_4XX, enhanced=r"4\.2\.2"),
    Rule(_v(Outcome.DEFERRED, "greylisted", True), code=_4XX, text=r"grey ?list|gray ?list"),
    Rule(_v(Outcome.DEFERRED, "greylisted", True), code=_4XX, enhanced=r"4\.2\.0"),
    Rule(
        _v(Outcome.DEFERRED, "rate_limited", True),
        code=_4XX,
        text=r"\brate\b|too many|too frequent|\bvolume\b|unsolicited",
    ),
    Rule(_v(Outcome.DEFERRED, "policy", True), code=_4XX, enhanced=r"4\.7\.\d+"),
    Rule(_v(Outcome.DEFERRED, "temporary", True), code=_4XX),
    # --- 5xx about the account: the recipient goes back to pending for another account.
    Rule(ACCOUNT_DISABLED_AUTH, code=r"53[045]"),  # auth required / too weak / rejected
    Rule(ACCOUNT_DISABLED_AUTH, code=_5XX, enhanced=r"5\.7\.8"),
    Rule(ACCOUNT_DISABLED_AUTH, code=_5XX, enhanced=r"5\.7\.0", text=r"auth"),
    Rule(DAILY_QUOTA, code=_5XX, text=_DAILY_QUOTA_TEXT),
    # X.1.7 / X.1.8: the *sender's* address is bad (RFC 3463), not the recipient's.
    Rule(_v(Outcome.ACCOUNT_PAUSED, "sender_rejected", True), code=_5XX, enhanced=r"5\.1\.[78]"),
    Rule(
        _v(Outcome.ACCOUNT_PAUSED, "sender_rejected", True),
        code=_5XX,
        text=r"sender address rejected",
    ),
    # --- 5xx about the recipient: hard bounce, the caller suppresses the address.
    Rule(_v(Outcome.BOUNCED, "mailbox_unknown", False), code=_5XX, enhanced=r"5\.1\.\d+"),
    Rule(_v(Outcome.BOUNCED, "mailbox_disabled", False), code=_5XX, enhanced=r"5\.2\.1"),
    Rule(_v(Outcome.BOUNCED, "mailbox_full", False), code=_5XX, enhanced=r"5\.2\.2"),
    # Exchange Online directory-based edge blocking: the recipient does not exist.
    Rule(
        _v(Outcome.BOUNCED, "mailbox_unknown", False),
        code=_5XX,
        enhanced=r"5\.4\.1",
        text=r"recipient address rejected",
    ),
    Rule(
        _v(Outcome.BOUNCED, "mailbox_unknown", False),
        code=r"55\d",
        enhanced=r"|5\.0\.0|5\.5\.0",
        text=_NO_SUCH_USER,
    ),
    # --- 5.7.x: policy, spam, relay, DMARC: pause the account for 24 h.
    Rule(_v(Outcome.ACCOUNT_PAUSED, "policy", True), code=_5XX, enhanced=r"5\.7\.\d+"),
    # --- anything else permanent is about this message; not suppressed.
    Rule(_v(Outcome.FAILED, "message_too_big", False), code=_5XX, enhanced=r"5\.3\.4"),
    Rule(FAILED_CONTENT, code=_5XX, enhanced=r"5\.6\.\d+"),
    Rule(_v(Outcome.FAILED, "rejected", False), code=_5XX),
)

_LOST = Verdict(Outcome.UNKNOWN, "outcome_lost", account_failure=True)
_UNEXPECTED = Verdict(Outcome.DEFERRED, "unexpected_reply", account_failure=True)


def classify_reply(reply: SmtpReply, provider: str = "smtp") -> Verdict:
    kind = reply.error_kind
    if kind is not None:
        if kind == "outcome_lost":
            # The end-of-data dot went out and no reply came back: the server may
            # have accepted the message. Never retried automatically (no duplicates).
            return _LOST
        if kind == "auth_unavailable":
            return ACCOUNT_DISABLED_AUTH
        # timeout, connection_lost, tls_failed, connect_failed; an unknown kind is
        # treated the same way (deferred, nothing was delivered) under its own name.
        return Verdict(Outcome.DEFERRED, kind, account_failure=True)
    for rule in PROVIDER_RULES.get(provider, ()):
        if rule.matches(reply):
            return rule.verdict
    for rule in GENERIC_RULES:
        if rule.matches(reply):
            return rule.verdict
    return _UNEXPECTED
