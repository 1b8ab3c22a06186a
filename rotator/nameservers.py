"""DNS resolvers as the settings name them: `IP`, `IP:PORT` or `[IPv6]:PORT`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DNS_PORT = 53


@dataclass(frozen=True)
class Nameserver:
    address: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        if self.port == DNS_PORT:
            return self.address
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def parse_nameserver(text: str) -> Nameserver:
    """Raises ValueError naming the problem; a host name is refused (a resolver that
    needs a resolver to be found is not one)."""
    value = text.strip()
    host, port_text = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 resolver with a port as [addr]:port")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (IP, IP:PORT or [IPv6]:PORT)") from None
    port = DNS_PORT
    if port_text:
        if not port_text.isdecimal() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return Nameserver(str(address), port)


def parse_nameservers(values: list[str]) -> list[Nameserver]:
    return [parse_nameserver(value) for value in values]
