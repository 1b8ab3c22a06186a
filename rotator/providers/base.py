"""Provider presets: where an account connects and how much it may send a day."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Security(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


@dataclass(frozen=True)
class ProviderPreset:
    name: str
    host: str | None
    port: int
    security: Security
    daily_cap: int
    username: str | None = None
    requires_password: bool = True
    # MX hosts that mean "this recipient domain is hosted by this provider"
    mx_suffixes: tuple[str, ...] = ()
