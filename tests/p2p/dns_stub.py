"""A tiny DNS server on 127.0.0.1 for tests: answers A, AAAA and TXT from a table.

Tests never ask a public DNS server (HELPER_RULES, issue 10): they start this, point
``ZIKADE_DNS_RESOLVER`` (or a resolver's config) at :attr:`DnsStub.server`, and
publish the records they need. It runs in a thread over a plain UDP socket, so it
serves both asyncio tests and ``zikade`` subprocesses started by blocking calls.
``silent=True`` makes it a resolver that never answers (timeouts).
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass
class DnsStub:
    """``records[(name, type)]`` → rdata texts (TXT values without quotes)."""

    silent: bool = False
    records: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    queries: list[tuple[str, str]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def add_txt(self, name: str, *values: str) -> None:
        """Publish TXT records at ``name``."""
        self.records[(name.rstrip(".").lower(), "TXT")].extend(values)

    def add_a(self, name: str, *ips: str) -> None:
        """Publish A records at ``name``."""
        self.records[(name.rstrip(".").lower(), "A")].extend(ips)

    @property
    def server(self) -> str:
        """``127.0.0.1:<port>`` (what ``ZIKADE_DNS_RESOLVER`` takes)."""
        assert self._sock is not None
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> DnsStub:
        """Bind a free loopback port and serve in a daemon thread."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="dns-stub")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (bounded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> DnsStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            kind = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, kind))
            if self.silent:
                continue
            self._sock.sendto(self._answer(query, name, kind).to_wire(), peer)

    def _answer(self, query: dns.message.Message, name: str, kind: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        values = self.records.get((name, kind))
        if values:
            texts = [_quote(v) if kind == "TXT" else v for v in values]
            response.answer.append(
                dns.rrset.from_text_list(name + ".", 60, dns.rdataclass.IN, kind, texts)
            )
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


def _quote(value: str) -> str:
    """A TXT value as quoted strings of at most 255 bytes (longer values are split, as
    DNS requires; resolvers join the parts)."""
    raw = value.encode()
    parts = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + "".join(_escape(b) for b in part) + '"' for part in parts)


def _escape(byte: int) -> str:
    if byte in (0x22, 0x5C) or not 0x20 <= byte < 0x7F:
        return f"\\{byte:03d}"
    return chr(byte)
