"""Our addresses as other peers see them: identify's ``observedAddr``, with go's rules.

A peer tells us in identify which address our connection came from. One peer
may lie or sit behind an odd NAT, so (as go-libp2p's ``observedaddrs.Manager``)
an observed address counts only once :data:`ACTIVATION_THRESHOLD` distinct
observers report it, where an observer is an IPv4 address or an IPv6 /56; each
connection holds one observation, withdrawn when it closes. Only observations
made on connections whose local side is one of our listen addresses are
recorded (an outbound connection's ephemeral port says nothing about where we
can be dialed), and only those of the same transport (TCP); loopback
observations are ignored unless the address policy counts them as public.
At most :data:`MAX_PER_LOCAL_ADDR` observed addresses per listen address are
reported, the most observed first.

This object is sans-IO: the host calls :meth:`ObservedAddrs.record` and
:meth:`ObservedAddrs.remove`, and reads :meth:`ObservedAddrs.addrs`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Sequence
from typing import Final

from zikade_py.p2p.addrscope import AddressPolicy, Scope
from zikade_py.p2p.multiaddr import Multiaddr

ACTIVATION_THRESHOLD: Final = 4
"""Distinct observers needed before an observed address counts (go ``ActivationThresh``)."""

MAX_PER_LOCAL_ADDR: Final = 3
"""Observed addresses kept per listen address (go ``maxExternalThinWaistAddrsPerLocalAddr``)."""

MAX_CONNECTIONS: Final = 10_000
"""Connections whose observation is held at once (each holds one; more are not recorded)."""


def observer_group(remote: Multiaddr | None) -> str | None:
    """Who made an observation: the IPv4 address, or the IPv6 /56 (go ``getObserver``)."""
    ip = remote.ip_address() if remote is not None else None
    if ip is None:
        return None
    if ip.version == 4:
        return str(ip)
    net = ipaddress.ip_network(f"{ip}/56", strict=False)
    return str(net.network_address)


def _endpoint(addr: Multiaddr | None) -> Multiaddr | None:
    """The ``/ip*/<ip>/tcp/<port>`` form of ``addr`` (its "thin waist"), or ``None``."""
    if addr is None:
        return None
    endpoint = addr.tcp_endpoint()
    ip = addr.ip_address()
    if endpoint is None or ip is None:
        return None
    return Multiaddr.from_tcp(str(ip), endpoint[1])


class ObservedAddrs:
    """Observations of our addresses by connection, and the ones enough observers agree on."""

    __slots__ = ("_by_conn", "_counts", "_listen", "_policy", "threshold")

    def __init__(
        self,
        listen_addrs: Callable[[], Sequence[Multiaddr]],
        policy: AddressPolicy | None = None,
        *,
        threshold: int = ACTIVATION_THRESHOLD,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._listen = listen_addrs
        self._policy = policy or AddressPolicy()
        self.threshold = threshold
        """Distinct observers an address needs (go: 4)."""
        self._by_conn: dict[Hashable, tuple[Multiaddr, Multiaddr, str]] = {}
        # listen endpoint -> observed endpoint -> observer group -> connections
        self._counts: dict[Multiaddr, dict[Multiaddr, dict[str, int]]] = {}

    def record(
        self,
        conn: Hashable,
        local: Multiaddr | None,
        remote: Multiaddr | None,
        observed: Multiaddr | None,
    ) -> bool:
        """Take ``observed`` as reported on ``conn`` (local/remote: its socket addresses);
        whether it was recorded. A new report on the same connection replaces the old."""
        local_ep, observed_ep = _endpoint(local), _endpoint(observed)
        observer = observer_group(remote)
        if local_ep is None or observed_ep is None or observer is None:
            return False
        if self._policy.scope(observed_ep) is Scope.LOOPBACK:
            return False  # we know our loopback addresses already (go ignores them too)
        listen = {e for a in self._listen() if (e := _endpoint(a)) is not None}
        if local_ep not in listen:
            return False  # an outbound connection's ephemeral port
        if observed_ep.ip_address().version != local_ep.ip_address().version:  # type: ignore[union-attr]
            return False
        previous = self._by_conn.get(conn)
        if previous is not None:
            if previous[1] == observed_ep:
                return True
            self._withdraw(*previous)
        elif len(self._by_conn) >= MAX_CONNECTIONS:
            return False
        self._by_conn[conn] = (local_ep, observed_ep, observer)
        groups = self._counts.setdefault(local_ep, {}).setdefault(observed_ep, {})
        groups[observer] = groups.get(observer, 0) + 1
        return True

    def remove(self, conn: Hashable) -> None:
        """``conn`` closed: its observation no longer counts."""
        previous = self._by_conn.pop(conn, None)
        if previous is not None:
            self._withdraw(*previous)

    def _withdraw(self, local_ep: Multiaddr, observed_ep: Multiaddr, observer: str) -> None:
        by_observed = self._counts.get(local_ep, {})
        groups = by_observed.get(observed_ep)
        if groups is None:
            return
        groups[observer] -= 1
        if groups[observer] <= 0:
            del groups[observer]
        if not groups:
            del by_observed[observed_ep]
        if not by_observed:
            self._counts.pop(local_ep, None)

    def observers(self, observed: Multiaddr) -> int:
        """How many distinct observers currently report ``observed``."""
        ep = _endpoint(observed)
        return max(
            (len(by_observed.get(ep, {})) for by_observed in self._counts.values() if ep),
            default=0,
        )

    def addrs(self, min_observers: int | None = None) -> list[Multiaddr]:
        """Observed addresses with at least ``min_observers`` (default: the threshold)
        distinct observers, at most :data:`MAX_PER_LOCAL_ADDR` per listen address."""
        need = self.threshold if min_observers is None else min_observers
        out: dict[Multiaddr, None] = {}
        for by_observed in self._counts.values():
            ranked = sorted(
                (ep for ep, groups in by_observed.items() if len(groups) >= need),
                key=lambda ep: (-len(by_observed[ep]), ep.to_bytes()),
            )
            for ep in ranked[:MAX_PER_LOCAL_ADDR]:
                out.setdefault(ep, None)
        return list(out)

    def __len__(self) -> int:
        return len(self._by_conn)
