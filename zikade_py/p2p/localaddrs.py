"""Our own addresses: which we know, which are confirmed, and which we tell whom.

Candidates are the concrete listen addresses plus the observed addresses enough
peers agree on (:mod:`.observed`). AutoNAT confirms or refutes the public ones
(a peer dialed us back there, or could not). What a peer is told (identify's
``listenAddrs``, our entry in kad answers) is filtered by scope
(:mod:`.addrscope`: nothing narrower than the peer) and, when
``require_confirmation`` is on (the DHT's auto mode), a public address is
announced only once it is confirmed: by AutoNAT, or by enough observers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Sequence

from zikade_py.p2p.addrscope import AddressPolicy, Scope
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.observed import ObservedAddrs

MAX_CONFIRMED = 64
"""Addresses remembered as confirmed (a handful in practice)."""


class LocalAddrs:
    """The host's view of its own addresses (see the module docstring)."""

    __slots__ = ("_confirmed", "_listen", "observed", "policy", "require_confirmation")

    def __init__(
        self, listen_addrs: Callable[[], Sequence[Multiaddr]], policy: AddressPolicy
    ) -> None:
        self._listen = listen_addrs
        self.policy = policy
        """How far each address reaches (loopback stand-ins included)."""
        self.observed = ObservedAddrs(listen_addrs, policy)
        """Identify's observed addresses by connection (go's rules)."""
        self._confirmed: dict[Multiaddr, None] = {}
        self.require_confirmation = False
        """Announce public addresses only once confirmed (set by the DHT in auto mode)."""

    # -- what we know -------------------------------------------------------------------------

    def candidates(self) -> list[Multiaddr]:
        """Listen addresses, then activated observed addresses, without duplicates."""
        out = dict.fromkeys(a for a in self._listen() if not a.is_unspecified())
        out.update(dict.fromkeys(self.observed.addrs()))
        return list(out)

    def public_candidates(self) -> list[Multiaddr]:
        """The candidates that are public (what an AutoNAT server is asked to dial)."""
        return [a for a in self.candidates() if self.policy.scope(a) is Scope.PUBLIC]

    def record_observation(
        self, conn: Hashable, local: Multiaddr | None, remote: Multiaddr | None,
        observed: Multiaddr | None,
    ) -> bool:
        """Identify on ``conn`` said we were seen at ``observed``."""
        return self.observed.record(conn, local, remote, observed)

    def forget_connection(self, conn: Hashable) -> None:
        """``conn`` closed: withdraw its observation."""
        self.observed.remove(conn)

    # -- confirmations (AutoNAT) --------------------------------------------------------------

    def confirm(self, addr: Multiaddr) -> bool:
        """A peer dialed us back at ``addr``; whether that is news."""
        bare = addr.without_peer_id()
        if bare in self._confirmed:
            return False
        if len(self._confirmed) >= MAX_CONFIRMED:
            self._confirmed.pop(next(iter(self._confirmed)))
        self._confirmed[bare] = None
        return True

    def unconfirm_all(self) -> bool:
        """AutoNAT decided we are not reachable: nothing stays confirmed; whether any was."""
        had = bool(self._confirmed)
        self._confirmed.clear()
        return had

    def confirmed(self) -> list[Multiaddr]:
        """Addresses a peer dialed us back at, still among our candidates or observed."""
        return list(self._confirmed)

    def is_confirmed(self, addr: Multiaddr) -> bool:
        """Whether ``addr`` was dialed back by AutoNAT or reported by enough observers."""
        bare = addr.without_peer_id()
        return bare in self._confirmed or bare in self.observed.addrs()

    # -- what we say --------------------------------------------------------------------------

    def announce(
        self, remote: Multiaddr | None = None, *, scope: Scope | None = None
    ) -> list[Multiaddr]:
        """The addresses to tell a peer that reached us from ``remote`` (or one of
        ``scope``; neither: any scope). Public ones must be confirmed when
        ``require_confirmation`` is on; confirmed addresses that are not listen
        addresses (a NAT's port mapping seen by AutoNAT) are included."""
        peer = scope if scope is not None else (
            self.policy.peer_scope(remote) if remote is not None else Scope.LOOPBACK
        )
        addrs = dict.fromkeys(self.candidates())
        addrs.update(dict.fromkeys(self._confirmed))
        out = []
        for addr in self.policy.keep(addrs, peer):
            if (
                self.require_confirmation
                and self.policy.scope(addr) is Scope.PUBLIC
                and not self.is_confirmed(addr)
            ):
                continue
            out.append(addr)
        return out


def dial_source(listen_addrs: Sequence[Multiaddr], target_host: str) -> tuple[str, int] | None:
    """The local address to dial ``target_host`` from, or ``None`` to let the kernel pick.

    On loopback the kernel picks 127.0.0.1 as the source of every connection, so
    nodes listening on other 127.x.y.z stand-in addresses would all be observed
    (and AutoNAT-checked) as 127.0.0.1. A host listening on exactly one such
    address dials loopback targets from it, as a host on a real network is seen
    from its own address. Elsewhere the kernel's choice stands.
    """
    try:
        target = ipaddress.ip_address(target_host)
    except ValueError:
        return None
    if not target.is_loopback:
        return None
    ips = {ip for a in listen_addrs if (ip := a.ip_address()) is not None}
    if len(ips) != 1:
        return None
    (ip,) = ips
    if not ip.is_loopback or ip.version != target.version or str(ip) in ("127.0.0.1", "::1"):
        return None
    return (str(ip), 0)
