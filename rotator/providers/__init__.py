"""Provider presets and per-provider classification quirks, by name."""

from __future__ import annotations

from rotator.providers import gmail, postfix, sendgrid, smtp, smtp2go
from rotator.providers.base import ProviderPreset, Security
from rotator.verdict import Rule

__all__ = ["REGISTRY", "RULES", "ProviderPreset", "Security", "UnknownProvider", "get_preset"]

_MODULES = (gmail, sendgrid, smtp2go, postfix, smtp)

REGISTRY: dict[str, ProviderPreset] = {m.PRESET.name: m.PRESET for m in _MODULES}
RULES: dict[str, tuple[Rule, ...]] = {m.PRESET.name: m.RULES for m in _MODULES}


class UnknownProvider(KeyError):
    pass


def get_preset(name: str) -> ProviderPreset:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownProvider(f"unknown provider {name!r}; known: {known}") from None
