"""Gmail and Google Workspace (smtp.gmail.com submission)."""

from __future__ import annotations

from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import DAILY_QUOTA, FAILED_CONTENT, About, Outcome, Rule, Verdict

# 500/day is the consumer Gmail cap; Workspace allows 2000/day on the same host, but
# DESIGN starts every Gmail-like account at 500: raise it per account (daily_limit).
# https://support.google.com/a/answer/166852
PRESET = ProviderPreset(
    name="gmail",
    host="smtp.gmail.com",
    port=587,
    security=Security.STARTTLS,
    daily_cap=500,
    mx_suffixes=("google.com", "googlemail.com"),
)

# Quirks, checked before the generic table.
# https://support.google.com/a/answer/3726730 (Gmail SMTP error reference)
RULES: tuple[Rule, ...] = (
    # "550 5.4.5 Daily user sending limit exceeded" / "Daily SMTP relay limit exceeded":
    # X.4.5 is "mail system congestion" in RFC 3463, but Gmail uses it for the
    # account's daily quota. Not a bounce: pause the account until its window frees.
    Rule(DAILY_QUOTA, code=r"5\d\d", enhanced=r"5\.4\.5"),
    # "552-5.7.0 This message was blocked because its content presents a potential
    # security issue": about this message (attachment, link), not the account.
    Rule(FAILED_CONTENT, code=r"5\d\d", enhanced=r"5\.7\.0", text=r"content presents"),
    # "450 4.2.1 Peak SMTP relay limit exceeded for customer" (Workspace SMTP relay): the
    # account sent too fast, unlike the 4.2.1 about a recipient receiving too fast.
    Rule(
        Verdict(Outcome.DEFERRED, "rate_limited", account_failure=True, about=About.ACCOUNT),
        code=r"4\d\d",
        text=r"relay limit",
    ),
)
