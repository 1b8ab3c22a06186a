"""Recipient address normalisation: email-validator's answer, at a fraction of its cost.

`AddressValidator.check(raw)` returns a `ValidAddress` or the reason the address is
rejected. The answer is, by construction and by the property test in
tests/test_addresses.py, the one email-validator's full `validate_email` gives
(syntax only, the library's defaults), lower-cased:

* fast path: a dot-atom local part (the library's own `DOT_ATOM_TEXT` or, for
  Unicode, `DOT_ATOM_TEXT_INTL`) that is already NFC and passes the library's
  `check_unsafe_chars` needs no unquoting, no display-name parsing and no
  normalisation: validate_email would return it unchanged. So only the domain needs
  work, and that is done once per distinct domain (`validate_email_domain_name`, the
  function `validate_email` itself calls) and cached; what is left is the library's
  three 254-octet length checks, repeated here.
* slow path: everything else (Unicode or quoted local parts, display names,
  domain literals, anything too long, no @-sign) goes to `validate_email` itself, so
  the reason text is the library's.

Stored form (DESIGN: "lower-cased email"): the whole normalised address lower-cased,
and the domain as email-validator normalises it (IDNA domains in their Unicode form,
`münchen.de`, not `xn--mnchen-3ya.de`); `ascii_domain` is the IDNA form, kept so
suppressions written either way are honoured.

Deliverability (optional) is one DNS look-up per distinct domain through
email-validator's `check_deliverability`: no MX and no usable A/AAAA fallback, a null
MX or a domain that does not exist rejects every address there with "domain has no
MX". A timeout or failing name servers never reject: an import must not lose
addresses because the resolver had a bad minute.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from email_validator import EmailNotValidError, EmailUndeliverableError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, DOT_ATOM_TEXT_INTL, EMAIL_MAX_LENGTH
from email_validator.syntax import check_unsafe_chars, validate_email_domain_name

if TYPE_CHECKING:
    import dns.resolver

_new_tuple = tuple.__new__

NO_MX: Final = "domain has no MX"
MX_TIMEOUT_SECONDS: Final = 5.0
# Bounds the per-domain caches: a hostile file with a million distinct domains costs
# a full re-validation now and then, never unbounded memory.
DOMAIN_CACHE_SIZE: Final = 100_000


class ValidAddress(NamedTuple):
    # A NamedTuple rather than a dataclass: a million of them are made per import.
    email: str  # normalised and lower-cased
    domain: str  # as email-validator normalises it (Unicode form for IDNA domains)
    ascii_domain: str  # the IDNA (ASCII) form; equal to `domain` for ASCII domains


@dataclass(frozen=True, slots=True)
class _Domain:
    domain: str
    ascii_domain: str
    # The longest, in UTF-8 octets, of the three forms validate_email measures: as
    # given, normalised, IDNA-ASCII. An address is too long if "local@" plus this is.
    octets: int


def make_resolver(timeout: float) -> dns.resolver.Resolver:
    """The resolver for MX checks; tests point it at a local DNS server."""
    from email_validator import caching_resolver

    return caching_resolver(timeout=timeout)  # type: ignore[arg-type]


def reference_check(raw: str) -> ValidAddress | str:
    """email-validator's full answer (syntax only), in this module's terms."""
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return ValidAddress(result.normalized.lower(), result.domain, result.ascii_domain)


class AddressValidator:
    """Validates many addresses, caching per-domain work. One per import; not thread-safe."""

    def __init__(self, *, check_mx: bool = False, mx_timeout: float = MX_TIMEOUT_SECONDS):
        self.check_mx = check_mx
        self.mx_timeout = mx_timeout
        self._domains: dict[str, _Domain | str] = {}
        self._mx: dict[str, str | None] = {}
        self._resolver: dns.resolver.Resolver | None = None
        self.fast = 0  # decided by the fast path
        self.slow = 0  # handed to validate_email

    def check(self, raw: str) -> ValidAddress | str:
        """The normalised address, or why it is rejected (email-validator's wording)."""
        result = self._fast(raw)
        if result is None:
            self.slow += 1
            result = reference_check(raw)
        else:
            self.fast += 1
        if self.check_mx and isinstance(result, ValidAddress):
            reason = self._deliverability(result)
            if reason is not None:
                return reason
        return result

    def _fast(self, raw: str) -> ValidAddress | str | None:
        """None when this path cannot decide exactly; the caller asks validate_email."""
        local, at, domain_part = raw.partition("@")
        if not at:
            return None
        if local.isascii():
            # isalnum() is the cheap common case of the dot-atom regex.
            if not (local.isalnum() or DOT_ATOM_TEXT.match(local)):
                return None
            local_octets = len(local) + 1
        elif _plain_unicode_local(local):
            local_octets = len(local.encode()) + 1
        else:
            return None
        domain = self._domains.get(domain_part)
        if domain is None:
            # validate_email treats these before any domain-name check; never cached.
            if not domain_part or (domain_part[0] == "[" and domain_part[-1] == "]"):
                return None
            domain = self._domain(domain_part)
        if isinstance(domain, str):
            return domain
        if local_octets + domain.octets > EMAIL_MAX_LENGTH:
            return None
        email = (local + "@" + domain.domain).lower()
        # tuple.__new__ skips NamedTuple's Python-level __new__: half the cost of a row.
        return _new_tuple(ValidAddress, (email, domain.domain, domain.ascii_domain))

    def _domain(self, domain_part: str) -> _Domain | str:
        """The domain's normalised forms, or the library's reason; cached by raw text."""
        if len(self._domains) >= DOMAIN_CACHE_SIZE:
            self._domains.clear()
        entry: _Domain | str
        try:
            info = validate_email_domain_name(domain_part)
        except EmailNotValidError as exc:
            entry = str(exc)
        else:
            octets = max(
                len(domain_part.encode()), len(info["domain"].encode()), len(info["ascii_domain"])
            )
            entry = _Domain(info["domain"], info["ascii_domain"], octets)
        self._domains[domain_part] = entry
        return entry

    def _deliverability(self, address: ValidAddress) -> str | None:
        key = address.ascii_domain
        if key in self._mx:
            return self._mx[key]
        if len(self._mx) >= DOMAIN_CACHE_SIZE:
            self._mx.clear()
        if self._resolver is None:
            self._resolver = make_resolver(self.mx_timeout)
        reason: str | None = None
        try:
            # Domain literals never reach here: validate_email refuses them by default.
            validate_email(
                f"postmaster@{key}", check_deliverability=True, dns_resolver=self._resolver
            )
        except EmailUndeliverableError:
            reason = NO_MX
        except EmailNotValidError as exc:
            reason = str(exc)
        self._mx[key] = reason
        return reason


def _plain_unicode_local(local: str) -> bool:
    """A Unicode dot-atom that validate_email would accept and return unchanged.

    DOT_ATOM_TEXT_INTL excludes the characters that change how the address is split
    (quotes, @, <, spaces); a combining mark cannot join with the @ after it."""
    if not DOT_ATOM_TEXT_INTL.match(local) or not unicodedata.is_normalized("NFC", local):
        return False
    try:
        check_unsafe_chars(local)
    except EmailNotValidError:
        return False
    return True
