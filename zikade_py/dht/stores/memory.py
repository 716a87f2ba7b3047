"""In-memory stores: the default for tests and the simulator, where nothing must survive.

They implement the protocols of :mod:`.base` with plain dicts and the same
expiry rules as the SQLite stores, so behaviour tests can run against both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID


@dataclass(slots=True)
class _ProviderEntry:
    peer_id: PeerID
    time_received: float
    addrs: tuple[Multiaddr, ...]
    addrs_time: float


class MemoryProviderStore:
    """Provider records in a dict; see :class:`~.base.ProviderStore`."""

    __slots__ = ("_addr_ttl", "_local", "_providers", "_validity")

    def __init__(
        self, validity: float = PROVIDER_VALIDITY, addr_ttl: float = PROVIDER_ADDR_TTL
    ) -> None:
        self._validity = validity
        self._addr_ttl = addr_ttl
        self._providers: dict[bytes, dict[bytes, _ProviderEntry]] = {}
        self._local: dict[bytes, float] = {}

    def add(self, key: bytes, provider: PeerInfo, now: float) -> None:
        """Record or refresh ``provider`` for ``key``."""
        entries = self._providers.setdefault(bytes(key), {})
        pid = provider.peer_id.multihash
        old = entries.get(pid)
        if provider.addrs or old is None:
            entries[pid] = _ProviderEntry(provider.peer_id, now, tuple(provider.addrs), now)
        else:
            old.time_received = now

    def get(self, key: bytes, now: float, limit: int | None = None) -> list[PeerInfo]:
        """Unexpired providers of ``key``, most recently announced first."""
        entries = self._providers.get(bytes(key), {})
        live = [e for e in entries.values() if now - e.time_received <= self._validity]
        live.sort(key=lambda e: (-e.time_received, e.peer_id.multihash))
        if limit is not None:
            live = live[: max(limit, 0)]
        return [
            PeerInfo(e.peer_id, e.addrs if now - e.addrs_time <= self._addr_ttl else ())
            for e in live
        ]

    def gc(self, now: float) -> int:
        """Drop expired records and empty keys."""
        removed = 0
        for key in list(self._providers):
            entries = self._providers[key]
            for pid in [p for p, e in entries.items() if now - e.time_received > self._validity]:
                del entries[pid]
                removed += 1
            if not entries:
                del self._providers[key]
        return removed

    def add_local(self, key: bytes, now: float) -> None:
        """Mark ``key`` as ours, announced at ``now``."""
        self._local[bytes(key)] = now

    def remove_local(self, key: bytes) -> bool:
        """Stop providing ``key``."""
        return self._local.pop(bytes(key), None) is not None

    def list_local(self) -> list[bytes]:
        """All keys we provide, sorted."""
        return sorted(self._local)

    def list_local_due(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """Our keys due for another announcement, oldest announcement first."""
        due = [(t, k) for k, t in self._local.items() if now - t >= republish_interval]
        return [k for _, k in sorted(due)]


class MemoryValueStore:
    """Value records in a dict; see :class:`~.base.ValueStore`."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[bytes, tuple[bytes, float]] = {}

    def put(self, key: bytes, value: bytes, now: float) -> bool:
        """Store ``value``; True if it differs from what was stored."""
        old = self._records.get(bytes(key))
        self._records[bytes(key)] = (bytes(value), now)
        return old is None or old[0] != value

    def get(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """The record if received at most ``max_age`` ago."""
        found = self._records.get(bytes(key))
        if found is None or now - found[1] > max_age:
            return None
        return found

    def delete(self, key: bytes) -> bool:
        """Remove the record."""
        return self._records.pop(bytes(key), None) is not None

    def gc(self, now: float, max_age: float = MAX_RECORD_AGE) -> int:
        """Drop records older than ``max_age``."""
        old = [k for k, (_, t) in self._records.items() if now - t > max_age]
        for key in old:
            del self._records[key]
        return len(old)


class MemoryPeerStore:
    """Peer addresses with expiry in a dict; see :class:`~.base.PeerStore`."""

    __slots__ = ("_addrs",)

    def __init__(self) -> None:
        self._addrs: dict[PeerID, dict[Multiaddr, float]] = {}

    def add_addrs(
        self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float
    ) -> None:
        """Extend each address's expiry to ``now + ttl``."""
        expires = now + ttl
        book = self._addrs.setdefault(peer, {})
        for addr in addrs:
            if book.get(addr, float("-inf")) < expires:
                book[addr] = expires
        if not book:
            del self._addrs[peer]

    def addrs(self, peer: PeerID, now: float) -> list[Multiaddr]:
        """Unexpired addresses, longest-lived first."""
        book = self._addrs.get(peer, {})
        live = [(exp, a) for a, exp in book.items() if exp > now]
        live.sort(key=lambda item: (-item[0], item[1].to_bytes()))
        return [a for _, a in live]

    def peers(self, now: float | None = None) -> list[PeerID]:
        """Peers with an (unexpired) address, sorted by id bytes."""
        out = [
            p
            for p, book in self._addrs.items()
            if book and (now is None or any(exp > now for exp in book.values()))
        ]
        return sorted(out, key=lambda p: p.multihash)

    def remove(self, peer: PeerID) -> bool:
        """Forget ``peer``."""
        return self._addrs.pop(peer, None) is not None

    def gc(self, now: float) -> int:
        """Drop expired addresses and peers left with none."""
        removed = 0
        for peer in list(self._addrs):
            book = self._addrs[peer]
            for addr in [a for a, exp in book.items() if exp <= now]:
                del book[addr]
                removed += 1
            if not book:
                del self._addrs[peer]
        return removed
