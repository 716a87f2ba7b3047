"""How far an address reaches, and which addresses may go to (or come from) whom.

go's WAN DHT keeps only public addresses (``dual``: ``AddressFilter(IsPublicAddr)``)
and go identify drops listen addresses of a narrower scope than the connection
they arrived on (``filterAddrs``). Both are one rule here: an address has a
:class:`Scope` (loopback < private < public), a peer has the scope of the address
it reached us from, and an address is kept from, or given to, a peer only if its
scope is at least the peer's. So a public peer neither gives us nor gets from us
a loopback or private address; a LAN peer gets private and public ones; a peer
on loopback gets everything.

Loopback-only networks (the devnet, the tests) need stand-ins: an
:class:`AddressPolicy` can name networks that count as public
(``public_nets=("127.0.0.0/8",)``: the whole loopback range is "the internet") or
as private, explicitly. Nothing is public by accident: the default policy
classifies by the IP alone, and 127.0.0.0/8 is loopback (docs/autonat.md).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from zikade_py.p2p.multiaddr import Multiaddr

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NET: Final = "127.0.0.0/8"
"""What ``--public-net`` takes to make a loopback-only network count as public."""


class Scope(enum.IntEnum):
    """How far an address reaches; ordered, so ``a >= b`` means "a reaches at least as far"."""

    LOOPBACK = 0
    PRIVATE = 1
    """RFC 1918, link-local, CGNAT, ULA and every other non-global range."""
    PUBLIC = 2


def _natural_scope(ip: IPAddress) -> Scope:
    if ip.is_loopback:
        return Scope.LOOPBACK
    if ip.is_private or ip.is_link_local or not ip.is_global:
        return Scope.PRIVATE
    return Scope.PUBLIC


def _networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which IP networks count as public or private beyond what the IP itself says.

    Both lists are CIDRs (``"127.0.0.0/8"``, ``"127.0.1.0/24"``); ``private_nets``
    wins where they overlap. The default (both empty) is the real-world rule.
    """

    public_nets: tuple[str, ...] = ()
    """Networks treated as public: the explicit switch for loopback test networks."""
    private_nets: tuple[str, ...] = ()
    """Networks treated as private (a LAN stand-in inside 127.0.0.0/8 for tests)."""
    _public: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _private: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_public", _networks(self.public_nets))
        object.__setattr__(self, "_private", _networks(self.private_nets))

    def validate(self) -> None:
        """Raise ``ValueError`` for a network that does not parse (done at construction)."""
        _networks(self.public_nets)
        _networks(self.private_nets)

    @property
    def overridden(self) -> bool:
        """Whether any network is re-classified (the daemon says so at start)."""
        return bool(self.public_nets or self.private_nets)

    def ip_scope(self, ip: IPAddress) -> Scope:
        """The scope of one IP address under this policy."""
        if any(ip in net for net in self._private if net.version == ip.version):
            return Scope.PRIVATE
        if any(ip in net for net in self._public if net.version == ip.version):
            return Scope.PUBLIC
        return _natural_scope(ip)

    def scope(self, addr: Multiaddr | None) -> Scope | None:
        """The scope of ``addr``'s IP; ``None`` for an address without one (DNS names)."""
        if addr is None:
            return None
        ip = addr.ip_address()
        return None if ip is None else self.ip_scope(ip)

    def is_public(self, addr: Multiaddr | None) -> bool:
        """Whether ``addr`` is a public IP address (under this policy)."""
        return self.scope(addr) is Scope.PUBLIC

    def peer_scope(self, remote: Multiaddr | None) -> Scope:
        """The scope of a peer that reached us from ``remote``; unknown counts as public
        (the strictest: nothing narrow goes to or is taken from it)."""
        scope = self.scope(remote)
        return Scope.PUBLIC if scope is None else scope

    def keep(self, addrs: Iterable[Multiaddr], peer: Scope) -> list[Multiaddr]:
        """``addrs`` that reach at least as far as ``peer``: what we take from, or give to,
        a peer of that scope. Addresses without an IP (``/dns``) are kept: a name resolves
        wherever the receiver is."""
        out: list[Multiaddr] = []
        for addr in addrs:
            scope = self.scope(addr)
            if scope is None or scope >= peer:
                out.append(addr)
        return out

    def usable_from(self, addrs: Sequence[Multiaddr], remote: Multiaddr | None) -> list[Multiaddr]:
        """:meth:`keep` for a peer that reached us from ``remote``."""
        return self.keep(addrs, self.peer_scope(remote))


DEFAULT_POLICY: Final = AddressPolicy()
"""The real-world classification: loopback is loopback, RFC 1918 is private."""


def normalize_addrs(addrs: Iterable[Multiaddr], owner: object) -> list[Multiaddr]:
    """``addrs`` of peer ``owner`` without ``/p2p/<owner>`` suffixes and without
    duplicates; addresses that name another peer are dropped (py-libp2p sends
    suffixed addresses, and the same address then came back twice)."""
    seen: dict[Multiaddr, None] = {}
    for addr in addrs:
        named = addr.peer_id()
        if named is not None and named != owner:
            continue
        seen.setdefault(addr.without_peer_id(), None)
    return list(seen)
