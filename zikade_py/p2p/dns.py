"""Name resolution for dialing: ``/dnsaddr`` TXT records and ``/dns``, ``/dns4``, ``/dns6``.

The public bootstrap peers are published as ``/dnsaddr/bootstrap.libp2p.io/p2p/<id>``
(the multiaddr DNSADDR spec): the TXT records at ``_dnsaddr.<name>`` hold
``dnsaddr=<multiaddr>`` entries, which may name further ``/dnsaddr`` levels. When
the address names a peer (``/p2p/<id>`` after the name), only entries ending in the
same ``/p2p/<id>`` count (go-multiaddr-dns's rule). ``/dns4`` asks for A records,
``/dns6`` for AAAA, ``/dns`` for both. Queries go through dnspython's asyncio
resolver, never the blocking system call, so a slow resolver stalls nothing.

Which server is asked (Kubo's ``DNS.Resolvers``): ``ZIKADE_DNS_RESOLVER=<ip>:<port>``
for every name when set; else the repo config's map from a domain suffix (``.`` for
all) to ``<ip>[:<port>]``; else the system's resolvers (``/etc/resolv.conf``). Under
the dial guard (``ZIKADE_DIAL_ALLOW``) the system's resolvers are never asked and an
explicit resolver must sit on an allowed address.

Every failure is one :class:`DnsError` with a one-line message; a malformed TXT
entry is skipped (a hostile record never raises), and limits bound the depth of
nesting, the lookups and the addresses one resolution may produce.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from zikade_py.p2p.dial_guard import DialGuard, DialRefusedError
from zikade_py.p2p.multiaddr import (
    PROTOCOLS_BY_NAME,
    Component,
    InvalidMultiaddrError,
    Multiaddr,
)

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.rdata

log = logging.getLogger(__name__)

DNS_RESOLVER_ENV: Final = "ZIKADE_DNS_RESOLVER"
"""``<ip>:<port>`` of the DNS server to ask for every name (overrides the repo config)."""

DEFAULT_DNS_TIMEOUT: Final = 10.0
"""Seconds one resolution (all its lookups together) may take."""

MAX_DNSADDR_DEPTH: Final = 8
"""``/dnsaddr`` levels followed below the first (js allows 32; real records use 2)."""

MAX_LOOKUPS: Final = 32
"""DNS queries one resolution may send (nested records cannot fan out without bound)."""

MAX_RESOLVED_ADDRS: Final = 100
"""Addresses one resolution yields at most (go-libp2p's ``maxAddressResolution`` is 32
per dial; the first 100 are plenty for a bootstrap name)."""

DNSADDR_PREFIX: Final = "dnsaddr="
_NAME_PROTOCOLS: Final = frozenset(("dns", "dns4", "dns6", "dnsaddr"))
_LOCALHOST: Final = frozenset(("localhost", "localhost."))


class DnsError(Exception):
    """A name could not be resolved; the message is one line that says which and why."""


def needs_resolution(addr: Multiaddr) -> bool:
    """Whether ``addr`` starts with a name (``/dns*``, ``/dnsaddr``) rather than an IP."""
    return addr.components[0].name in _NAME_PROTOCOLS


def parse_server(text: str) -> tuple[str, int]:
    """``(ip, port)`` of ``<ip>[:<port>]`` or ``[<ipv6>]:<port>`` (port 53 by default)."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid DNS resolver {text!r}: expected [<ipv6>]:<port>")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"invalid DNS resolver {text!r}: expected <ip>:<port>") from None
    if not 0 < number < 65536:
        raise ValueError(f"invalid DNS resolver {text!r}: port out of range")
    return str(ip), number


def _server_text(server: tuple[str, int]) -> str:
    ip, port = server
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(slots=True)
class _Budget:
    """What one resolution may still spend: a deadline and a number of lookups."""

    deadline: float
    lookups: int = MAX_LOOKUPS

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class DnsResolver:
    """Resolves the names in multiaddrs to IP multiaddrs (see the module docstring).

    ``resolvers`` maps a domain suffix (``"."`` for every name) to ``<ip>[:<port>]``;
    ``ZIKADE_DNS_RESOLVER`` in ``environ`` (default ``os.environ``) overrides it.
    """

    resolvers: Mapping[str, str] = field(default_factory=dict)
    guard: DialGuard = field(default_factory=DialGuard.from_env)
    timeout: float = DEFAULT_DNS_TIMEOUT
    environ: Mapping[str, str] | None = None
    _servers: dict[str, tuple[str, int]] = field(init=False, default_factory=dict)
    _clients: dict[tuple[str, int] | None, dns.asyncresolver.Resolver] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        env = os.environ if self.environ is None else self.environ
        override = env.get(DNS_RESOLVER_ENV, "").strip()
        table = {".": override} if override else dict(self.resolvers)
        for suffix, server in table.items():
            where = DNS_RESOLVER_ENV if override else f"DNS resolver for {suffix!r}"
            try:
                self._servers[_suffix(suffix)] = parse_server(server)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None

    def server_for(self, name: str) -> tuple[str, int] | None:
        """The configured server for ``name`` (longest suffix match), None for the system's."""
        fqdn = _suffix(name)
        best: tuple[int, tuple[str, int]] | None = None
        for suffix, server in self._servers.items():
            if (suffix == "." or fqdn.endswith("." + suffix) or fqdn == suffix) and (
                best is None or len(suffix) > best[0]
            ):
                best = (len(suffix), server)
        return best[1] if best else None

    # -- multiaddrs ----------------------------------------------------------------------------

    async def resolve(self, addr: Multiaddr, *, timeout: float | None = None) -> list[Multiaddr]:
        """The IP addresses ``addr`` stands for (itself if it names no host by name).

        Raises :class:`DnsError` when nothing could be resolved; partial failures in
        nested records are skipped as long as something resolves.
        """
        if not needs_resolution(addr):
            return [addr]
        budget = _Budget(time.monotonic() + min(timeout or self.timeout, self.timeout))
        out = await self._resolve(addr, 0, budget)
        return list(dict.fromkeys(out))[:MAX_RESOLVED_ADDRS]

    async def resolve_all(
        self, addrs: Iterable[Multiaddr], *, timeout: float | None = None
    ) -> tuple[list[Multiaddr], list[tuple[Multiaddr, DnsError]]]:
        """Resolve each address concurrently: ``(resolved addresses, failures)``."""
        addrs = list(addrs)
        results = await asyncio.gather(
            *(self.resolve(a, timeout=timeout) for a in addrs), return_exceptions=True
        )
        out: list[Multiaddr] = []
        errors: list[tuple[Multiaddr, DnsError]] = []
        for addr, result in zip(addrs, results, strict=True):
            if isinstance(result, DnsError):
                errors.append((addr, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                out.extend(result)
        return list(dict.fromkeys(out)), errors

    async def _resolve(self, addr: Multiaddr, depth: int, budget: _Budget) -> list[Multiaddr]:
        first, rest = addr.components[0], addr.components[1:]
        if first.name == "dnsaddr":
            return await self._resolve_dnsaddr(first.value_text(), rest, depth, budget)
        if first.name in ("dns", "dns4", "dns6"):
            ips = await self._ips(first.value_text(), first.name, budget)
            return [_with_ip(ip, rest) for ip in ips]
        return [addr]

    async def _resolve_dnsaddr(
        self, name: str, trailer: Sequence[Component], depth: int, budget: _Budget
    ) -> list[Multiaddr]:
        if depth > MAX_DNSADDR_DEPTH:
            raise DnsError(f"/dnsaddr/{name}: nested more than {MAX_DNSADDR_DEPTH} levels deep")
        tail = [c.to_bytes() for c in trailer]
        out: list[Multiaddr] = []
        errors: list[DnsError] = []
        for entry in await self._txt(f"_dnsaddr.{name}", budget):
            addr = _parse_entry(entry)
            if addr is None or not _ends_with(addr, tail):
                continue  # malformed, or another peer's entry
            try:
                out.extend(await self._resolve(addr, depth + 1, budget))
            except DnsError as exc:
                errors.append(exc)
            if len(out) >= MAX_RESOLVED_ADDRS:
                break
        if not out and errors:
            raise errors[0]
        return out

    # -- queries -------------------------------------------------------------------------------

    async def _ips(self, name: str, protocol: str, budget: _Budget) -> list[str]:
        if name.lower() in _LOCALHOST:  # RFC 6761: localhost is loopback, no query needed
            return {"dns4": ["127.0.0.1"], "dns6": ["::1"]}.get(protocol, ["127.0.0.1", "::1"])
        kinds = {"dns4": ("A",), "dns6": ("AAAA",)}.get(protocol, ("A", "AAAA"))
        results = await asyncio.gather(
            *(self._query(name, kind, budget) for kind in kinds), return_exceptions=True
        )
        ips: list[str] = []
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                ips.extend(str(rdata) for rdata in result)
        if ips:
            return ips
        if errors:
            raise errors[0]
        raise DnsError(f"resolving {name}: no {'/'.join(kinds)} records")

    async def _txt(self, name: str, budget: _Budget) -> list[str]:
        entries: list[str] = []
        for rdata in await self._query(name, "TXT", budget):
            strings = getattr(rdata, "strings", None)  # TXT: one record may be split in parts
            if not isinstance(strings, tuple):
                continue
            try:
                entries.append(b"".join(strings).decode())
            except (TypeError, UnicodeDecodeError):
                continue
        return entries

    async def _query(self, name: str, kind: str, budget: _Budget) -> list[dns.rdata.Rdata]:
        if budget.lookups <= 0:
            raise DnsError(f"resolving {name}: more than {MAX_LOOKUPS} DNS lookups")
        budget.lookups -= 1
        remaining = budget.remaining()
        if remaining <= 0:
            raise DnsError(f"resolving {name}: timed out after {self.timeout:g} s")
        server = self.server_for(name)
        where = _server_text(server) if server else "the system resolver"
        client = self._client(server, name)
        import dns.exception  # imported late: see _client
        import dns.name
        import dns.resolver

        try:
            qname = dns.name.from_text(name)
            answer = await client.resolve(
                qname, kind, lifetime=remaining, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            raise DnsError(f"resolving {name}: no such domain ({where})") from None
        except dns.exception.Timeout:
            raise DnsError(
                f"resolving {name}: no answer from {where} within {remaining:.3g} s"
            ) from None
        except dns.resolver.NoNameservers:
            raise DnsError(f"resolving {name}: {where} failed to answer") from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"resolving {name}: {exc} ({where})") from None
        return list(answer.rrset or ())

    def _client(self, server: tuple[str, int] | None, name: str) -> dns.asyncresolver.Resolver:
        if server is None and self.guard.active:
            self._refuse(
                f"refusing to resolve {name} through the system resolver under "
                f"ZIKADE_DIAL_ALLOW={self.guard.describe()} (set {DNS_RESOLVER_ENV}=<ip>:<port>)"
            )
        if server is not None and not self.guard.allows(server[0]):
            self._refuse(
                f"refusing to ask DNS resolver {_server_text(server)} for {name}: "
                f"outside ZIKADE_DIAL_ALLOW={self.guard.describe()}"
            )
        client = self._clients.get(server)
        if client is None:
            # dnspython is imported at the first name resolved, not with the host: most
            # processes (every CLI command, a node dialing IP addresses) never resolve one
            import dns.asyncresolver
            import dns.exception
            import dns.nameserver
            import dns.resolver

            if server is None:
                try:
                    client = dns.asyncresolver.Resolver()
                except dns.exception.DNSException as exc:
                    raise DnsError(f"resolving {name}: no system resolver: {exc}") from None
            else:
                client = dns.asyncresolver.Resolver(configure=False)
                client.nameservers = [dns.nameserver.Do53Nameserver(*server)]
            client.cache = dns.resolver.LRUCache(256)  # bootstrap asks one name many times
            self._clients[server] = client
        return client

    def _refuse(self, message: str) -> None:
        try:
            self.guard.refuse(message)
        except DialRefusedError as exc:
            raise DnsError(str(exc)) from None


def _suffix(name: str) -> str:
    name = name.strip().lower()
    return name if name == "." else name.rstrip(".")


def _parse_entry(text: str) -> Multiaddr | None:
    """The multiaddr of one ``dnsaddr=<multiaddr>`` TXT entry; None if it is not one."""
    text = text.strip()
    if not text.startswith(DNSADDR_PREFIX):
        return None
    try:
        return Multiaddr.parse(text[len(DNSADDR_PREFIX) :])
    except (InvalidMultiaddrError, ValueError):
        log.debug("ignoring a malformed dnsaddr TXT entry %r", text[:200])
        return None


def _ends_with(addr: Multiaddr, tail: Sequence[bytes]) -> bool:
    """Whether the last components of ``addr`` are ``tail`` (binary, component by component)."""
    if not tail:
        return True
    ending = addr.components[-len(tail) :]
    return len(ending) == len(tail) and [c.to_bytes() for c in ending] == list(tail)


def _with_ip(ip: str, rest: Sequence[Component]) -> Multiaddr:
    version = ipaddress.ip_address(ip).version
    first = Component(
        PROTOCOLS_BY_NAME["ip4" if version == 4 else "ip6"], ipaddress.ip_address(ip).packed
    )
    return Multiaddr.from_components((first, *rest))


__all__ = [
    "DEFAULT_DNS_TIMEOUT",
    "DNS_RESOLVER_ENV",
    "MAX_DNSADDR_DEPTH",
    "MAX_LOOKUPS",
    "MAX_RESOLVED_ADDRS",
    "DnsError",
    "DnsResolver",
    "needs_resolution",
    "parse_server",
]
