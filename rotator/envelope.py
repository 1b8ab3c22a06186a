"""Addresses as they go on the wire (RFC 5321 envelope): the domain IDNA-encoded (IDNA 2008
with UTS 46 mapping, as browsers and mail servers resolve it), the local part as it is.
A non-ASCII local part can only travel with SMTPUTF8 (RFC 6531)."""

from __future__ import annotations

from dataclasses import dataclass

import idna


class UnencodableAddress(ValueError):
    """The address cannot be written into an SMTP command."""


@dataclass(frozen=True)
class WireAddress:
    address: str  # what goes into MAIL FROM / RCPT TO
    needs_smtputf8: bool


def wire_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UnencodableAddress(f"domain {domain!r} has no IDNA form: {exc}") from None


def wire_address(address: str) -> WireAddress:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UnencodableAddress(f"not an address: {address!r}")
    if any(c in address for c in "\r\n<>") or any(c.isspace() for c in address):
        raise UnencodableAddress(f"address contains characters SMTP cannot carry: {address!r}")
    return WireAddress(f"{local}@{wire_domain(domain)}", needs_smtputf8=not local.isascii())
