"""Bootstrap entries to dialable seeds: names resolved before :meth:`Node.bootstrap` dials.

A bootstrap entry is ``…/p2p/<id>`` (one peer) or a bare ``/dnsaddr/<name>``, which
stands for every peer its TXT records name (how ``bootstrap.libp2p.io`` publishes
the public bootstrap peers). Names are resolved here, up front, so the address book
keeps IP addresses (what we may hand to other peers), and a name that does not
resolve is reported as that entry's failure, in one line, like an unreachable peer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from zikade_py.p2p.dns import DnsError, DnsResolver, needs_resolution
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.peer_id import PeerID

Seed = tuple[PeerID, list[Multiaddr], str]
"""A peer to dial: its id, its addresses (without ``/p2p/``), and the entry it came from."""


async def resolve_seeds(
    resolver: DnsResolver, entries: Sequence[str | Multiaddr], *, timeout: float
) -> tuple[list[Seed], list[tuple[str, str]]]:
    """``(seeds, failures)`` for the bootstrap ``entries``; ValueError for a malformed one."""
    parsed: list[tuple[Multiaddr, str]] = []
    for entry in entries:
        try:
            addr = entry if isinstance(entry, Multiaddr) else Multiaddr.parse(entry)
        except InvalidMultiaddrError as exc:
            raise ValueError(f"invalid bootstrap address {entry!r}: {exc}") from None
        if addr.peer_id() is None and addr.components[0].name != "dnsaddr":
            raise ValueError(f"bootstrap address {entry!r} has no /p2p/<peer-id> component")
        parsed.append((addr, str(entry)))
    results = await asyncio.gather(
        *(_expand(resolver, addr, timeout) for addr, _ in parsed), return_exceptions=True
    )
    seeds: dict[PeerID, Seed] = {}
    failures: list[tuple[str, str]] = []
    for (_, text), result in zip(parsed, results, strict=True):
        if isinstance(result, DnsError):
            failures.append((text, str(result)))
            continue
        if isinstance(result, BaseException):
            raise result
        if not result:
            failures.append((text, "the name resolved to no peer address"))
        for peer, addr in result:
            _, addrs, _ = seeds.setdefault(peer, (peer, [], text))
            if addr not in addrs:
                addrs.append(addr)
    return list(seeds.values()), failures


async def _expand(
    resolver: DnsResolver, addr: Multiaddr, timeout: float
) -> list[tuple[PeerID, Multiaddr]]:
    resolved = await resolver.resolve(addr, timeout=timeout) if needs_resolution(addr) else [addr]
    out: list[tuple[PeerID, Multiaddr]] = []
    for one in resolved:
        peer = one.peer_id()
        if peer is not None and len(one.components) > 1:
            out.append((peer, one.without_peer_id()))
    return out


__all__ = ["Seed", "resolve_seeds"]
