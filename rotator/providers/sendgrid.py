"""Twilio SendGrid SMTP relay."""

from __future__ import annotations

from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import (
    ACCOUNT_DISABLED_AUTH,
    ACCOUNT_DISABLED_SENDER,
    ACCOUNT_SUSPENDED_RULE,
    DAILY_QUOTA,
    Rule,
)

# The username is the literal "apikey"; the password is the API key.
# The cap is the plan's: 100/day on the free plan, set the account's daily_limit otherwise.
# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-the-smtp-api
PRESET = ProviderPreset(
    name="sendgrid",
    host="smtp.sendgrid.net",
    port=587,
    security=Security.STARTTLS,
    daily_cap=100,
    username="apikey",
)

# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/smtp-errors-and-troubleshooting
RULES: tuple[Rule, ...] = (
    # "451 Authentication failed: Maximum credits exceeded": a 4xx, yet the account
    # is out of credits until the plan's counter resets (daily on the free plan).
    # Retrying on this account only burns attempts: pause it until its window frees.
    Rule(DAILY_QUOTA, code=r"4\d\d", text=r"credits exceeded"),
    Rule(DAILY_QUOTA, code=r"5\d\d", text=r"credits exceeded"),
    # "550 The from address does not match a verified Sender Identity": an operator
    # must verify the sender; no retry on this account can succeed before that.
    Rule(ACCOUNT_DISABLED_SENDER, text=r"verified sender identity|not authorized to send from"),
    # "550 Unauthenticated senders not allowed": the API key was not accepted.
    Rule(ACCOUNT_DISABLED_AUTH, code=r"5\d\d", text=r"unauthenticated senders"),
    # Suspended / deactivated / banned accounts (account review):
    # https://support.sendgrid.com/hc/en-us/articles/360041790293-Account-Under-Review
    ACCOUNT_SUSPENDED_RULE,
)
