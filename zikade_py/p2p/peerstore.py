"""In-memory knowledge about peers: addresses with expiry times, protocols, identify info.

``Host.new_stream(peer, ...)`` dials from here, identify fills it, and the DHT
reads who speaks ``/ipfs/kad/1.0.0`` from it. Addresses expire (go's peerstore
semantics: permanent while connected, a while after disconnecting, briefly for
addresses heard from third parties), so the book cannot grow without bound.
Every method that depends on time takes ``now`` explicitly (defaulting to the
store's clock) so tests and the simulator can drive it exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zikade_py.p2p.crypto import PublicKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

PERMANENT_ADDR_TTL = math.inf
"""For addresses that must never expire (our own, explicitly configured bootstrap peers)."""
CONNECTED_ADDR_TTL = math.inf
"""While a connection is open: kept until the disconnect lowers it to ``RECENTLY_CONNECTED``."""
RECENTLY_CONNECTED_ADDR_TTL = 15 * 60.0
"""After the last connection closes (go-libp2p ``RecentlyConnectedAddrTTL``)."""
TEMP_ADDR_TTL = 2 * 60.0
"""Addresses learnt from a third party (a DHT response), until a dial confirms them."""
MAX_ADDRS_PER_PEER = 64
"""A peer may list many addresses; more than this is noise or abuse."""
MAX_PROTOCOLS_PER_PEER = 128
"""Cap on the protocol list stored from identify."""
MAX_PEERS = 20_000
"""Peers kept by default; beyond it the oldest unprotected record makes room."""
_EVICT_SCAN = 64  # records looked at per insertion when full (protected ones are skipped)


@dataclass(slots=True)
class PeerRecord:
    """Everything known about one peer (mutable, owned by the store)."""

    addrs: dict[Multiaddr, float] = field(default_factory=dict)
    """Address → absolute expiry time."""
    protocols: tuple[str, ...] = ()
    agent: str = ""
    protocol_version: str = ""
    public_key: PublicKey | None = None


class PeerStore:
    """The host's address book and protocol book."""

    __slots__ = ("_clock", "_peers", "_protected", "max_peers")

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_peers: int = MAX_PEERS,
        protected: Callable[[PeerID], bool] | None = None,
    ) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self._clock = clock
        self._peers: dict[PeerID, PeerRecord] = {}
        self.max_peers = max_peers
        """Records kept at most (rotating identities cannot grow the book without bound)."""
        self._protected = protected

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _record(self, peer: PeerID) -> PeerRecord:
        rec = self._peers.get(peer)
        if rec is None:
            if len(self._peers) >= self.max_peers:
                self._evict()
            rec = self._peers[peer] = PeerRecord()
        return rec

    def _evict(self) -> None:
        """Drop the oldest record that is not protected (connected, or with a permanent
        address); protected ones met on the way move to the back. Bounded work."""
        for _ in range(min(_EVICT_SCAN, len(self._peers))):
            peer = next(iter(self._peers))
            rec = self._peers.pop(peer)
            permanent = any(exp == math.inf for exp in rec.addrs.values())
            if permanent or (self._protected is not None and self._protected(peer)):
                self._peers[peer] = rec
                continue
            return

    def add_addrs(
        self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float | None = None
    ) -> None:
        """Remember ``addrs`` for ``ttl`` seconds; an address already known keeps the later expiry.

        ``/p2p/<peer>`` suffixes are stripped; addresses naming another peer are ignored.
        """
        t = self._now(now)
        expiry = t + ttl
        rec = self._record(peer)
        for addr in addrs:
            owner = addr.peer_id()
            if owner is not None and owner != peer:
                continue
            bare = addr.without_peer_id()
            if bare not in rec.addrs and len(rec.addrs) >= MAX_ADDRS_PER_PEER:
                continue
            if rec.addrs.get(bare, -math.inf) < expiry:
                rec.addrs[bare] = expiry

    def set_addrs_ttl(self, peer: PeerID, ttl: float, now: float | None = None) -> None:
        """Set every address of ``peer`` to expire ``ttl`` from now (e.g. after a disconnect)."""
        rec = self._peers.get(peer)
        if rec is None:
            return
        expiry = self._now(now) + ttl
        for addr in rec.addrs:
            rec.addrs[addr] = expiry

    def addrs(self, peer: PeerID, now: float | None = None) -> list[Multiaddr]:
        """Unexpired addresses of ``peer`` (without ``/p2p``), most durable first."""
        rec = self._peers.get(peer)
        if rec is None:
            return []
        t = self._now(now)
        live = [(exp, a) for a, exp in rec.addrs.items() if exp > t]
        live.sort(key=lambda item: -item[0])
        return [a for _, a in live]

    def clear_addrs(self, peer: PeerID) -> None:
        """Forget every address of ``peer``."""
        rec = self._peers.get(peer)
        if rec is not None:
            rec.addrs.clear()

    def set_protocols(self, peer: PeerID, protocols: Iterable[str]) -> None:
        """Replace the protocol list of ``peer`` (as identify reports it)."""
        unique = tuple(dict.fromkeys(protocols))[:MAX_PROTOCOLS_PER_PEER]
        self._record(peer).protocols = unique

    def protocols(self, peer: PeerID) -> tuple[str, ...]:
        """The protocols ``peer`` said it speaks (empty if unknown)."""
        rec = self._peers.get(peer)
        return rec.protocols if rec is not None else ()

    def supports(self, peer: PeerID, protocol: str) -> bool:
        """Whether ``peer`` listed ``protocol`` in identify."""
        return protocol in self.protocols(peer)

    def first_supported(self, peer: PeerID, protocols: Iterable[str]) -> str | None:
        """The first of ``protocols`` that ``peer`` listed, or ``None``."""
        known = self.protocols(peer)
        return next((p for p in protocols if p in known), None)

    def set_identify_info(
        self,
        peer: PeerID,
        *,
        agent: str,
        protocol_version: str,
        public_key: PublicKey | None,
    ) -> None:
        """Record the software and key identify reported."""
        rec = self._record(peer)
        rec.agent = agent
        rec.protocol_version = protocol_version
        if public_key is not None:
            rec.public_key = public_key

    def agent(self, peer: PeerID) -> str:
        """The peer's agent version string, ``""`` if unknown."""
        rec = self._peers.get(peer)
        return rec.agent if rec is not None else ""

    def protocol_version(self, peer: PeerID) -> str:
        """The peer's identify protocol version, ``""`` if unknown."""
        rec = self._peers.get(peer)
        return rec.protocol_version if rec is not None else ""

    def public_key(self, peer: PeerID) -> PublicKey | None:
        """The peer's identity key, once a handshake or identify delivered it."""
        rec = self._peers.get(peer)
        return rec.public_key if rec is not None else None

    def set_public_key(self, peer: PeerID, key: PublicKey) -> None:
        """Remember the identity key the Noise handshake proved."""
        self._record(peer).public_key = key

    def peers(self) -> list[PeerID]:
        """Every peer with a record."""
        return list(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def remove(self, peer: PeerID) -> None:
        """Forget ``peer`` entirely."""
        self._peers.pop(peer, None)

    def prune(self, now: float | None = None, keep: Iterable[PeerID] = ()) -> int:
        """Drop expired addresses, and peers left without any (except ``keep``); return the
        number of peers removed."""
        t = self._now(now)
        keep_set = set(keep)
        removed = 0
        for peer in list(self._peers):
            rec = self._peers[peer]
            rec.addrs = {a: exp for a, exp in rec.addrs.items() if exp > t}
            if not rec.addrs and peer not in keep_set:
                del self._peers[peer]
                removed += 1
        return removed
