"""SMTP2GO relay."""

from __future__ import annotations

from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import (
    ACCOUNT_DISABLED_AUTH,
    ACCOUNT_DISABLED_SENDER,
    ACCOUNT_SUSPENDED_RULE,
    DAILY_QUOTA,
    Rule,
)

# Port 2525 also works where 587 is filtered; 587 is equally valid.
# https://support.smtp2go.com/hc/en-gb/articles/223087967-SMTP-Server-Settings
PRESET = ProviderPreset(
    name="smtp2go",
    host="mail.smtp2go.com",
    port=2525,
    security=Security.STARTTLS,
    daily_cap=1000,
)

# https://support.smtp2go.com/hc/en-gb/articles/13990494697369-Common-Sending-Errors
RULES: tuple[Rule, ...] = (
    # "550 Relay access denied - please authenticate": SMTP2GO answers this to a
    # client that did not (or could not) authenticate, so it is a credentials
    # problem, not the 24 h relay/policy pause the generic table would give.
    Rule(ACCOUNT_DISABLED_AUTH, code=r"5\d\d", text=r"relay access denied"),
    # "550 From header sender domain not verified": verify the domain or the sender.
    Rule(ACCOUNT_DISABLED_SENDER, code=r"5\d\d", text=r"not verified"),
    # Plan allowance reached (free plan: 200/day, then the monthly quota):
    # https://support.smtp2go.com/hc/en-gb/articles/20651852434073-Quota-Usage-Notifications
    Rule(DAILY_QUOTA, text=r"(?:quota|allowance|limit) (?:has been )?(?:reached|exceeded)"),
    ACCOUNT_SUSPENDED_RULE,
)
