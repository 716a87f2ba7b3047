"""The store protocols the DHT handlers, the republisher and the Node are written against.

Two implementations exist (memory and SQLite) so the simulator can run thousands of
nodes without disks while a real node keeps its records across restarts (DESIGN.md §6).
Stores are dumb on purpose: validation and record selection happen before ``put``
(in the handler, with the namespaced validator), and time is always an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.limits import Usage
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

HOUR: Final = 3600.0

PROVIDER_VALIDITY: Final = 48 * HOUR
"""Provider records older than this are discarded (spec "Provide Validity"; go, js, rust)."""

PROVIDER_ADDR_TTL: Final = 24 * HOUR
"""Provider addresses are served this long, then only the id (go ``DefaultProviderAddrTTL``)."""

REPUBLISH_INTERVAL: Final = 22 * HOUR
"""How often our own provider records are announced again (spec SHOULD, go ``reprovide``)."""

MAX_RECORD_AGE: Final = 48 * HOUR
"""Value records received longer ago than this are treated as absent (go ``MaxRecordAge``)."""


class StoreError(Exception):
    """The backing storage failed or is unusable (e.g. a schema from a newer version)."""


class ProviderStore(Protocol):
    """Provider records: which peers announced (ADD_PROVIDER) that they provide a multihash.

    Also remembers the keys *we* provide, so the republisher can announce them
    again every :data:`REPUBLISH_INTERVAL` and after a restart.
    """

    def add(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """Record (or refresh) ``provider`` for multihash ``key`` at time ``now``.

        An announcement without addresses refreshes the record but keeps the
        addresses already known (as go keeps them in its address book). With a
        ``sender`` (the peer that sent the ADD_PROVIDER) the store's limits apply:
        :class:`~.limits.StoreFullError` if the record would exceed one. Durable
        stores have the record on disk when this returns (it may wait for a disk
        sync: the event loop uses :meth:`add_async`).
        """
        ...

    async def add_async(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """:meth:`add` without blocking the event loop; on disk when it returns."""
        ...

    def get(self, key: bytes, now: float, limit: int | None = None) -> list[PeerInfo]:
        """Providers of ``key`` announced within the validity, most recent first.

        Providers whose addresses are older than the address TTL come back with
        ``addrs == ()``: the requester must then FIND_NODE them.
        """
        ...

    async def get_async(
        self, key: bytes, now: float, limit: int | None = None
    ) -> list[PeerInfo]:
        """:meth:`get` without blocking the event loop (durable stores read on a thread)."""
        ...

    def gc(self, now: float, limit: int | None = None) -> int:
        """Delete expired provider records (at most ``limit``, oldest first); return how
        many were removed."""
        ...

    async def gc_async(self, now: float, limit: int | None = None) -> int:
        """:meth:`gc` without blocking the event loop."""
        ...

    def usage(self) -> Usage:
        """Provider records and their bytes held in total (expired ones until collected)."""
        ...

    def sender_usage(self, sender: PeerID) -> Usage:
        """Provider records and bytes announced by ``sender``."""
        ...

    def is_local(self, key: bytes) -> bool:
        """Whether we provide ``key`` (one indexed lookup, whatever the number of keys)."""
        ...

    async def is_local_async(self, key: bytes) -> bool:
        """:meth:`is_local` without blocking the event loop."""
        ...

    async def add_local_async(self, key: bytes, now: float) -> None:
        """:meth:`add_local` without blocking the event loop."""
        ...

    def add_local(self, key: bytes, now: float) -> None:
        """Remember that we provide ``key`` and that it was (or is being) announced at ``now``."""
        ...

    def remove_local(self, key: bytes) -> bool:
        """Stop providing ``key``; False if we did not provide it."""
        ...

    def list_local(self) -> list[bytes]:
        """Every key we provide."""
        ...

    def list_local_due(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """Our keys last announced ``republish_interval`` or longer ago, oldest first."""
        ...

    async def list_local_due_async(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """:meth:`list_local_due` for the event loop (the republisher's read)."""
        ...


class ValueStore(Protocol):
    """Value records (``/pk/…``, ``/ipns/…``) keyed by the full record key."""

    def put(self, key: bytes, value: bytes, now: float, sender: PeerID | None = None) -> bool:
        """Store ``value`` (already validated and selected) received at ``now``.

        Returns True if the stored value changed (new key or different bytes),
        False if the same value was only refreshed. With a ``sender`` (the peer of
        the PUT_VALUE) the limits apply (:class:`~.limits.StoreFullError`). Durable
        stores have the record on disk when this returns.
        """
        ...

    async def put_async(
        self, key: bytes, value: bytes, now: float, sender: PeerID | None = None
    ) -> bool:
        """:meth:`put` without blocking the event loop; on disk when it returns."""
        ...

    def get(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """``(value, time_received)``, or None if absent or received more than ``max_age`` ago."""
        ...

    async def get_async(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """:meth:`get` without blocking the event loop (durable stores read on a thread)."""
        ...

    def delete(self, key: bytes) -> bool:
        """Remove the record; False if there was none."""
        ...

    def gc(self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None) -> int:
        """Delete records older than ``max_age`` (at most ``limit``, oldest first); return
        how many were removed."""
        ...

    async def gc_async(
        self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None
    ) -> int:
        """:meth:`gc` without blocking the event loop."""
        ...

    def usage(self) -> Usage:
        """Value records and their bytes held in total."""
        ...

    def sender_usage(self, sender: PeerID) -> Usage:
        """Value records whose last PUT_VALUE came from ``sender``, and their bytes."""
        ...


class PeerStore(Protocol):
    """An address book with per-address expiry: remembers routing-table peers across restarts."""

    def add_addrs(
        self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float
    ) -> None:
        """Keep each address until ``now + ttl`` (an existing later expiry is kept)."""
        ...

    def addrs(self, peer: PeerID, now: float) -> list[Multiaddr]:
        """The peer's unexpired addresses."""
        ...

    def peers(self, now: float | None = None) -> list[PeerID]:
        """Peers with at least one address (unexpired at ``now`` if given)."""
        ...

    async def entries_async(self, now: float) -> list[tuple[PeerID, list[Multiaddr]]]:
        """Every peer with its unexpired addresses, in one read off the event loop
        (bootstrap and start-up read the whole book)."""
        ...

    def remove(self, peer: PeerID) -> bool:
        """Forget a peer entirely; False if it was unknown."""
        ...

    def save_later(self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float) -> None:
        """:meth:`add_addrs` in the background (the event loop never waits for the disk)."""
        ...

    def forget_later(self, peer: PeerID) -> None:
        """:meth:`remove` in the background."""
        ...

    def gc(self, now: float) -> int:
        """Delete expired addresses; return how many were removed."""
        ...
