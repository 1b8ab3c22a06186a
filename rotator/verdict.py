"""What a reply means for the recipient and the account, and the rule type the tables use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from rotator.reply import SmtpReply


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    ACCOUNT_PAUSED = "account_paused"
    ACCOUNT_DISABLED = "account_disabled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    account_failure: bool
    pause_until_window_frees: bool = False


@dataclass(frozen=True)
class Rule:
    """Matches a reply when every given pattern matches; None means "any".

    code and enhanced are full-match regexes on the reply code (as text) and the
    enhanced status code ("" when the reply has none); text is searched, case-blind.
    """

    verdict: Verdict
    code: str | None = None
    enhanced: str | None = None
    text: str | None = None
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
        if self._code is not None and not self._code.fullmatch(str(reply.code)):
            return False
        if self._enhanced is not None and not self._enhanced.fullmatch(reply.enhanced or ""):
            return False
        return self._text is None or self._text.search(reply.text) is not None


def _compile(pattern: str | None, flags: int) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern, flags)


# Verdicts shared by the generic table and the provider quirks.
ACCOUNT_DISABLED_AUTH = Verdict(Outcome.ACCOUNT_DISABLED, "auth_failed", account_failure=True)
ACCOUNT_DISABLED_SENDER = Verdict(
    Outcome.ACCOUNT_DISABLED, "sender_not_verified", account_failure=True
)
ACCOUNT_DISABLED_SUSPENDED = Verdict(
    Outcome.ACCOUNT_DISABLED, "account_suspended", account_failure=True
)
DAILY_QUOTA = Verdict(
    Outcome.ACCOUNT_PAUSED, "daily_quota", account_failure=False, pause_until_window_frees=True
)
FAILED_CONTENT = Verdict(Outcome.FAILED, "content_rejected", account_failure=False)

# Relay providers word a suspended, deactivated or banned account the same way; a rule
# shared by their tables rather than copied into each.
ACCOUNT_SUSPENDED_RULE = Rule(
    ACCOUNT_DISABLED_SUSPENDED,
    text=r"account (?:has been |is )?(?:suspended|deactivated|disabled|banned)",
)
