"""The unified notifier (DESIGN.md §4, bitswap's "Sync sessions and received blocks").

Provider records reach a node three ways: they are in the local store already,
a peer announces one with ADD_PROVIDER while we are looking, or a GET_PROVIDERS
answer names one. ``find_providers`` must yield each provider once, whichever
way it came and in whatever order. The classic bug is the gap between "check
the store" and "start listening": a record arriving in between is lost. Here
both steps happen in one synchronous call on the event loop:

* :meth:`Notifier.publish` stores what arrived (unless the caller stored it
  already) and hands it to every subscription of its key, in one step;
* :meth:`Subscription.subscribe` reads the store and registers the
  subscription in one step, so nothing published can fall between the two.

A subscription remembers what it delivered and drops repeats; its buffer is a
:class:`~zikade_py.p2p.nbqueue.NonBlockingQueue`, so a slow reader never slows
a publisher (it loses records beyond the buffer, counted in ``dropped``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import ProviderStore
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID

SUBSCRIPTION_BUFFER = 4096
"""Records a subscription holds for its reader before it drops new ones."""


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """``provider`` provides the content with multihash ``key``."""

    key: bytes
    provider: PeerInfo


class Notifier:
    """Publishes provider records to the store and to the subscriptions of their key."""

    __slots__ = ("_clock", "_store", "_subs")

    def __init__(self, store: ProviderStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._subs: dict[bytes, set[Subscription]] = {}

    @property
    def store(self) -> ProviderStore:
        """Where published records are kept."""
        return self._store

    def publish(self, key: bytes, provider: PeerInfo, *, store: bool = True) -> None:
        """Store ``provider`` for ``key`` (``store=False``: the caller did) and notify.

        Records learned from a lookup are published with ``store=False``: other
        lookups of the same key see them, but we do not serve them as our own.
        """
        if store:
            self._store.add(key, provider, self._clock())
        for sub in list(self._subs.get(key, ())):
            sub.offer(ProviderRecord(key, provider))

    def subscribe(
        self, keys: Iterable[bytes], *, buffer: int = SUBSCRIPTION_BUFFER
    ) -> Subscription:
        """A subscription to ``keys`` that starts with what the store already holds."""
        sub = Subscription(self, buffer=buffer)
        sub.subscribe(keys)
        return sub

    def subscribers(self, key: bytes) -> int:
        """Open subscriptions of ``key`` (for tests and metrics)."""
        return len(self._subs.get(key, ()))

    def _register(self, key: bytes, sub: Subscription) -> None:
        self._subs.setdefault(key, set()).add(sub)

    def _unregister(self, key: bytes, sub: Subscription) -> None:
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[key]


class Subscription:
    """Provider records of some keys, each (key, provider) delivered once."""

    __slots__ = ("_keys", "_notifier", "_queue", "_seen")

    def __init__(self, notifier: Notifier, *, buffer: int = SUBSCRIPTION_BUFFER) -> None:
        self._notifier = notifier
        self._queue: NonBlockingQueue[ProviderRecord] = NonBlockingQueue(
            buffer, name="provider_subscription"
        )
        self._keys: set[bytes] = set()
        self._seen: set[tuple[bytes, PeerID]] = set()

    @property
    def dropped(self) -> int:
        """Records lost because the reader fell more than the buffer behind."""
        return self._queue.dropped

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._queue.closed

    def subscribe(self, keys: Iterable[bytes]) -> None:
        """Add ``keys``: deliver what the store holds for them, then what gets published."""
        if self._queue.closed:
            return
        now = self._notifier._clock()
        for key in keys:
            if key in self._keys:
                continue
            for provider in self._notifier.store.get(key, now):
                self.offer(ProviderRecord(key, provider))
            self._keys.add(key)
            self._notifier._register(key, self)

    def offer(self, record: ProviderRecord) -> bool:
        """Deliver ``record`` unless this subscription already delivered its provider."""
        ident = (record.key, record.provider.peer_id)
        if self._queue.closed or ident in self._seen:
            return False
        if self._queue.push(record):
            self._seen.add(ident)
            return True
        return False

    async def get(self) -> ProviderRecord:
        """The next record; raises ``QueueClosedError`` once closed and drained."""
        return await self._queue.get()

    def get_nowait(self) -> ProviderRecord | None:
        """The next buffered record, if any."""
        return self._queue.get_nowait()

    def close(self) -> None:
        """Stop receiving; buffered records can still be read."""
        for key in self._keys:
            self._notifier._unregister(key, self)
        self._keys.clear()
        self._queue.close()

    def __aiter__(self) -> AsyncIterator[ProviderRecord]:
        return self._queue.__aiter__()


__all__ = ["Notifier", "ProviderRecord", "Subscription"]
