"""Any SMTP submission server, configured explicitly."""

from __future__ import annotations

from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import Rule

PRESET = ProviderPreset(
    name="smtp",
    host=None,
    port=587,
    security=Security.STARTTLS,
    daily_cap=1000,
    requires_password=False,
)

RULES: tuple[Rule, ...] = ()
