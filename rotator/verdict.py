"""What a reply means for the recipient and the account, and the rule type the tables use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from rotator.reply import SmtpReply, Stage


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    ACCOUNT_PAUSED = "account_paused"
    ACCOUNT_DISABLED = "account_disabled"
    UNKNOWN = "unknown"


class About(StrEnum):
    """What a refusal is about, which decides who bears its consequences."""

    MESSAGE = "message"  # this one send (accepted, too big, an unexplained refusal)
    RECIPIENT = "recipient"  # this address: the account is untouched
    RECIPIENT_DOMAIN = "recipient_domain"  # the receiving domain asked us to slow down
    CONTENT = "content"  # what the campaign says: the campaign guard counts these
    SENDING_DOMAIN = "sending_domain"  # SPF / DKIM / DMARC of the From domain
    ACCOUNT = "account"  # the session, the credentials, the quota, the sending IP


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    # Counts toward the account's streak of consecutive failures (3 pause it).
    account_failure: bool
    pause_until_window_frees: bool = False
    about: About = About.MESSAGE

    @property
    def stops_account(self) -> bool:
        """The account leaves rotation and this recipient goes back for another account."""
        return self.outcome in (Outcome.ACCOUNT_PAUSED, Outcome.ACCOUNT_DISABLED)


@dataclass(frozen=True)
class Rule:
    """Matches a reply when every given pattern matches; None means "any".

    code and enhanced are full-match regexes on the reply code (as text) and the
    enhanced status code ("" when the reply has none); text is searched, case-blind;
    stages, when given, must contain the stage the reply arrived at (a reply with no
    stage never matches a rule that names stages).
    """

    verdict: Verdict
    code: str | None = None
    enhanced: str | None = None
    text: str | None = None
    stages: frozenset[Stage] | None = None
    _code: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _enhanced: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _text: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_code", _compile(self.code, 0))
        object.__setattr__(self, "_enhanced", _compile(self.enhanced, 0))
        object.__setattr__(self, "_text", _compile(self.text, re.IGNORECASE))

    def matches(self, reply: SmtpReply) -> bool:
        if reply.code is None:
            return False
        if self.stages is not None and reply.stage not in self.stages:
            return False
        if self._code is not None and not self._code.fullmatch(str(reply.code)):
            return False
        if self._enhanced is not None and not self._enhanced.fullmatch(reply.enhanced or ""):
            return False
        return self._text is None or self._text.search(reply.text) is not None


def _compile(pattern: str | None, flags: int) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern, flags)


# Verdicts shared by the generic table and the provider quirks.
ACCOUNT_DISABLED_AUTH = Verdict(
    Outcome.ACCOUNT_DISABLED, "auth_failed", account_failure=True, about=About.ACCOUNT
)
ACCOUNT_DISABLED_SENDER = Verdict(
    Outcome.ACCOUNT_DISABLED, "sender_not_verified", account_failure=True, about=About.ACCOUNT
)
ACCOUNT_DISABLED_SUSPENDED = Verdict(
    Outcome.ACCOUNT_DISABLED, "account_suspended", account_failure=True, about=About.ACCOUNT
)
DAILY_QUOTA = Verdict(
    Outcome.ACCOUNT_PAUSED,
    "daily_quota",
    account_failure=False,
    pause_until_window_frees=True,
    about=About.ACCOUNT,
)
FAILED_CONTENT = Verdict(
    Outcome.FAILED, "content_rejected", account_failure=False, about=About.CONTENT
)
# Temporary refusal of one recipient's domain (greylisting, per-domain throttling): the
# session worked, so the account is untouched; the domain is slowed down.
DOMAIN_THROTTLED = Verdict(
    Outcome.DEFERRED, "rate_limited", account_failure=False, about=About.RECIPIENT_DOMAIN
)
SENDER_AUTH_FAILED = Verdict(
    Outcome.ACCOUNT_PAUSED, "sender_auth", account_failure=False, about=About.SENDING_DOMAIN
)

# Relay providers word a suspended, deactivated or banned account the same way; a rule
# shared by their tables rather than copied into each.
ACCOUNT_SUSPENDED_RULE = Rule(
    ACCOUNT_DISABLED_SUSPENDED,
    text=r"account (?:has been |is )?(?:suspended|deactivated|disabled|banned)",
)
