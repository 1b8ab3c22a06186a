"""A local authoritative DNS server for tests (dnslib), on 127.0.0.1, UDP and TCP on one
free port.

Names answer what `add` gave them (A, TXT, MX, PTR, CNAME; CNAMEs are followed); a name
under a `silent` suffix gets no answer at all (the resolver times out), under a `refuse`
or `servfail` suffix that error; a name with records of other types NOERROR and no data;
everything else NXDOMAIN. Every query is counted in `queries`."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

TTL = 60


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class Zones(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[object]] = {}
        self.silent: set[str] = set()
        self.rcodes: dict[str, int] = {}
        self.queries: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def add(self, name: str, qtype: str, value: str | int | list[str], pref: int = 10) -> None:
        rdata: object
        if qtype == "A":
            rdata = A(str(value))
        elif qtype == "TXT":
            text = value if isinstance(value, list) else [str(value)]
            # One TXT record of several strings when longer than a string may be (255).
            chunks = [s[i : i + 255] for s in text for i in range(0, max(len(s), 1), 255)]
            rdata = TXT(chunks)
        elif qtype == "MX":
            rdata = MX(str(value), pref)
        elif qtype == "PTR":
            rdata = PTR(str(value))
        elif qtype == "CNAME":
            rdata = CNAME(str(value))
        else:
            raise ValueError(qtype)
        with self.lock:
            self.records.setdefault((_key(name), qtype), []).append(rdata)

    def remove(self, name: str, qtype: str | None = None) -> None:
        with self.lock:
            for key in list(self.records):
                if key[0] == _key(name) and (qtype is None or key[1] == qtype):
                    del self.records[key]

    def silence(self, suffix: str) -> None:
        self.silent.add(_key(suffix))

    def refuse(self, suffix: str) -> None:
        self.rcodes[_key(suffix)] = RCODE.REFUSED

    def servfail(self, suffix: str) -> None:
        self.rcodes[_key(suffix)] = RCODE.SERVFAIL

    def _under(self, name: str, suffixes: set[str] | dict[str, int]) -> str | None:
        return next((s for s in suffixes if name == s or name.endswith("." + s)), None)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        name = _key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(name, qtype)] += 1
        if self._under(name, self.silent):
            raise DNSError("silent zone: no answer")  # dnslib then sends nothing
        reply = request.reply()
        suffix = self._under(name, self.rcodes)
        if suffix:
            reply.header.rcode = self.rcodes[suffix]
            return reply
        with self.lock:
            found = self._answer(reply, name, qtype, hops=0)
            exists = found or any(key[0] == name for key in self.records)
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply

    def _answer(self, reply: DNSRecord, name: str, qtype: str, hops: int) -> bool:
        rdatas = self.records.get((name, qtype))
        if rdatas:
            for rdata in rdatas:
                reply.add_answer(RR(name, getattr(QTYPE, qtype), rdata=rdata, ttl=TTL))
            return True
        cname = self.records.get((name, "CNAME"))
        if cname and qtype != "CNAME" and hops < 8:
            target = _key(str(cname[0].label))  # type: ignore[attr-defined]
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=cname[0], ttl=TTL))
            self._answer(reply, target, qtype, hops + 1)
            return True
        return False


class LocalDns:
    def __init__(self) -> None:
        self.zones = Zones()
        self.port = 0
        self._servers: list[DNSServer] = []

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
        for _ in range(20):  # a free UDP port whose TCP twin is free too
            udp = DNSServer(self.zones, address="127.0.0.1", port=0, logger=quiet)
            self.port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self.zones, address="127.0.0.1", port=self.port, tcp=True, logger=quiet
                )
            except OSError:
                udp.server.server_close()
                continue
            self._servers = [udp, tcp]
            for server in self._servers:
                server.start_thread()
            return
        raise RuntimeError("no free port for the test DNS server")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


@contextmanager
def local_dns() -> Iterator[LocalDns]:
    server = LocalDns()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tcp_query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    """One query over TCP (resolvers fall back to it for long answers)."""
    packet = DNSRecord.question(name, qtype).pack()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(len(packet).to_bytes(2, "big") + packet)
        size = int.from_bytes(conn.recv(2), "big")
        data = b""
        while len(data) < size:
            data += conn.recv(size - len(data))
    return DNSRecord.parse(data)
