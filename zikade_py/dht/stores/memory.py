"""In-memory stores: the default for tests and the simulator, where nothing must survive.

They implement the protocols of :mod:`.base` with plain dicts and the same
expiry rules as the SQLite stores, so behaviour tests can run against both.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
)
from zikade_py.dht.stores.limits import (
    Accounting,
    StoreFullError,
    StoreLimits,
    Usage,
    provider_size,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID


@dataclass(slots=True)
class _ProviderEntry:
    peer_id: PeerID
    time_received: float
    addrs: tuple[Multiaddr, ...]
    addrs_time: float
    size: int


def _addrs_len(addrs: tuple[Multiaddr, ...]) -> int:
    return sum(len(a.to_bytes()) + 1 for a in addrs)


class MemoryProviderStore:
    """Provider records in a dict; see :class:`~.base.ProviderStore`.

    Expiry is kept in a heap (refreshes push a new entry, stale ones are skipped),
    so a GC batch costs O(batch log n), not a scan of every record.
    """

    __slots__ = ("_acct", "_addr_ttl", "_expiry", "_limits", "_local", "_providers", "_validity")

    def __init__(
        self,
        validity: float = PROVIDER_VALIDITY,
        addr_ttl: float = PROVIDER_ADDR_TTL,
        limits: StoreLimits | None = None,
    ) -> None:
        self._validity = validity
        self._addr_ttl = addr_ttl
        self._limits = limits or StoreLimits()
        self._limits.validate()
        self._acct = Accounting(
            self._limits.max_providers_per_peer,
            self._limits.max_providers,
            self._limits.max_provider_bytes,
        )
        self._providers: dict[bytes, dict[bytes, _ProviderEntry]] = {}
        self._expiry: list[tuple[float, bytes, bytes]] = []
        self._local: dict[bytes, float] = {}

    def add(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """Record or refresh ``provider`` for ``key`` (limits apply with a ``sender``)."""
        key = bytes(key)
        pid = provider.peer_id.multihash
        entries = self._providers.get(key)
        old = entries.get(pid) if entries is not None else None
        limited = None if sender is None else pid
        if old is None:
            addrs = tuple(provider.addrs)
            size = provider_size(key, pid, _addrs_len(addrs))
            if (
                limited is not None
                and entries is not None
                and len(entries) >= self._limits.max_providers_per_key
            ):
                raise StoreFullError("per_key", "this key has its maximum of providers")
            self._acct.check_new(limited, size)
            if entries is None:
                entries = self._providers[key] = {}
            entries[pid] = _ProviderEntry(provider.peer_id, now, addrs, now, size)
            self._acct.charge(pid, 1, size)
        elif provider.addrs:
            addrs = tuple(provider.addrs)
            size = provider_size(key, pid, _addrs_len(addrs))
            self._acct.check_grow(limited, size - old.size)
            self._acct.charge(pid, 0, size - old.size)
            old.time_received, old.addrs, old.addrs_time, old.size = now, addrs, now, size
        else:
            old.time_received = now
        heapq.heappush(self._expiry, (now, key, pid))
        if len(self._expiry) > 4 * self._acct.total.records + 64:
            self._compact()

    async def add_async(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """:meth:`add` (nothing to wait for in memory)."""
        self.add(key, provider, now, sender)

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

    async def get_async(
        self, key: bytes, now: float, limit: int | None = None
    ) -> list[PeerInfo]:
        """:meth:`get`."""
        return self.get(key, now, limit)

    def gc(self, now: float, limit: int | None = None) -> int:
        """Drop expired records (at most ``limit``, oldest first) and empty keys."""
        removed = 0
        cutoff = now - self._validity
        heap = self._expiry
        while heap and heap[0][0] < cutoff and (limit is None or removed < limit):
            t, key, pid = heapq.heappop(heap)
            entries = self._providers.get(key)
            entry = entries.get(pid) if entries is not None else None
            if entry is None or entry.time_received != t:
                continue  # refreshed since, or already gone
            assert entries is not None
            del entries[pid]
            self._acct.charge(pid, -1, -entry.size)
            removed += 1
            if not entries:
                del self._providers[key]
        return removed

    async def gc_async(self, now: float, limit: int | None = None) -> int:
        """:meth:`gc`."""
        return self.gc(now, limit)

    def _compact(self) -> None:
        self._expiry = [
            (e.time_received, key, pid)
            for key, entries in self._providers.items()
            for pid, e in entries.items()
        ]
        heapq.heapify(self._expiry)

    def usage(self) -> Usage:
        """Records and bytes held."""
        return self._acct.snapshot()

    def sender_usage(self, sender: PeerID) -> Usage:
        """Records and bytes announced by ``sender``."""
        return self._acct.snapshot(sender.multihash)

    def is_local(self, key: bytes) -> bool:
        """Whether we provide ``key``."""
        return bytes(key) in self._local

    def add_local(self, key: bytes, now: float) -> None:
        """Mark ``key`` as ours, announced at ``now``."""
        self._local[bytes(key)] = now

    async def is_local_async(self, key: bytes) -> bool:
        """:meth:`is_local`."""
        return self.is_local(key)

    async def add_local_async(self, key: bytes, now: float) -> None:
        """:meth:`add_local`."""
        self.add_local(key, now)

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

    async def list_local_due_async(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """:meth:`list_local_due`."""
        return self.list_local_due(now, republish_interval)


class MemoryValueStore:
    """Value records in a dict; see :class:`~.base.ValueStore` (expiry heap as above)."""

    __slots__ = ("_acct", "_expiry", "_limits", "_records")

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self._limits = limits or StoreLimits()
        self._limits.validate()
        self._acct = Accounting(
            self._limits.max_values_per_peer, self._limits.max_values, self._limits.max_value_bytes
        )
        self._records: dict[bytes, tuple[bytes, float, bytes]] = {}
        self._expiry: list[tuple[float, bytes]] = []

    def put(self, key: bytes, value: bytes, now: float, sender: PeerID | None = None) -> bool:
        """Store ``value`` (limits apply with a ``sender``); True if it differs from before."""
        key, value = bytes(key), bytes(value)
        who = b"" if sender is None else sender.multihash
        limited = None if sender is None else who
        if limited is not None and len(value) > self._limits.max_record_size:
            raise StoreFullError("too_large", f"a value of {len(value)} bytes is too large")
        old = self._records.get(key)
        size = len(key) + len(value)
        if old is None:
            self._acct.check_new(limited, size)
        else:
            old_size = len(key) + len(old[0])
            if old[2] != who:
                self._acct.check_new(limited, size)
            else:
                self._acct.check_grow(limited, size - old_size)
            self._acct.charge(old[2], -1, -old_size)
        self._acct.charge(who, 1, size)
        self._records[key] = (value, now, who)
        heapq.heappush(self._expiry, (now, key))
        if len(self._expiry) > 4 * len(self._records) + 64:
            self._expiry = [(t, k) for k, (_, t, _) in self._records.items()]
            heapq.heapify(self._expiry)
        return old is None or old[0] != value

    async def put_async(
        self, key: bytes, value: bytes, now: float, sender: PeerID | None = None
    ) -> bool:
        """:meth:`put`."""
        return self.put(key, value, now, sender)

    def get(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """The record if received at most ``max_age`` ago."""
        found = self._records.get(bytes(key))
        if found is None or now - found[1] > max_age:
            return None
        return found[0], found[1]

    async def get_async(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """:meth:`get`."""
        return self.get(key, now, max_age)

    def delete(self, key: bytes) -> bool:
        """Remove the record."""
        old = self._records.pop(bytes(key), None)
        if old is None:
            return False
        self._acct.charge(old[2], -1, -(len(key) + len(old[0])))
        return True

    def gc(self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None) -> int:
        """Drop records older than ``max_age`` (at most ``limit``, oldest first)."""
        removed = 0
        heap = self._expiry
        while heap and now - heap[0][0] > max_age and (limit is None or removed < limit):
            t, key = heapq.heappop(heap)
            found = self._records.get(key)
            if found is None or found[1] != t:
                continue
            self.delete(key)
            removed += 1
        return removed

    async def gc_async(
        self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None
    ) -> int:
        """:meth:`gc`."""
        return self.gc(now, max_age, limit)

    def usage(self) -> Usage:
        """Records and bytes held."""
        return self._acct.snapshot()

    def sender_usage(self, sender: PeerID) -> Usage:
        """Records last put by ``sender`` and their bytes."""
        return self._acct.snapshot(sender.multihash)


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

    async def entries_async(self, now: float) -> list[tuple[PeerID, list[Multiaddr]]]:
        """Every peer with its unexpired addresses, sorted by id bytes."""
        return [(p, self.addrs(p, now)) for p in self.peers(now)]

    def remove(self, peer: PeerID) -> bool:
        """Forget ``peer``."""
        return self._addrs.pop(peer, None) is not None

    def save_later(self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float) -> None:
        """:meth:`add_addrs` (nothing to wait for in memory)."""
        self.add_addrs(peer, addrs, ttl, now)

    def forget_later(self, peer: PeerID) -> None:
        """:meth:`remove`."""
        self.remove(peer)

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
