"""The team's own Postfix relay."""

from __future__ import annotations

from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import Rule

# The host is the team's relay and must be given per account; relays on a private
# network usually accept mail from known IPs without AUTH.
# http://www.postfix.org/SMTPD_ACCESS_README.html
PRESET = ProviderPreset(
    name="postfix",
    host=None,
    port=25,
    security=Security.STARTTLS,
    daily_cap=10000,
    requires_password=False,
)

# Postfix speaks RFC 3463 codes faithfully; the generic table covers it.
RULES: tuple[Rule, ...] = ()
