"""One notifier for blocks (BITSWAP.md §4): publish stores then informs; subscribe
registers then checks the store.

The race it closes: "is the block local?" → no → "subscribe to arrivals": a
block stored between the two would be missed, and the caller would wait
forever. Here a subscription registers its interest first and checks the store
second; a block published in between is delivered by :meth:`BlockNotifier.publish`
and found again by the check, and each CID's future completes once, so it is
delivered exactly once either way. :meth:`BlockNotifier.publish` awaits the
store before informing anyone, so a subscriber never sees a block the store does
not hold yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from zikade_py.blocks.cid import multihash_of
from zikade_py.blocks.store import Blockstore


class BlockSubscription:
    """Futures for the blocks of some CIDs; each completes once, with the block's bytes."""

    __slots__ = ("_futures", "_notifier", "delivered")

    def __init__(self, notifier: BlockNotifier) -> None:
        self._notifier = notifier
        self._futures: dict[bytes, asyncio.Future[bytes]] = {}
        self.delivered = 0
        """Blocks handed to this subscription (tests check "exactly once")."""

    def future(self, cid: bytes) -> asyncio.Future[bytes]:
        """The future of ``cid``'s block (subscribed before)."""
        return self._futures[multihash_of(cid)]

    def offer(self, mh: bytes, data: bytes) -> bool:
        """Complete ``mh``'s future unless done; whether this delivered it."""
        fut = self._futures.get(mh)
        if fut is None or fut.done():
            return False
        fut.set_result(data)
        self.delivered += 1
        return True

    async def subscribe(self, cids: Iterable[bytes]) -> list[bytes]:
        """Register ``cids``, then deliver the ones the store has; returns those not local."""
        added = []
        loop = asyncio.get_running_loop()
        for cid in cids:
            mh = multihash_of(cid)
            if mh not in self._futures:
                self._futures[mh] = loop.create_future()
                self._notifier._register(mh, self)
                added.append((cid, mh))
        missing = []
        for cid, mh in added:
            if self._futures[mh].done():
                continue
            if self._notifier.store.has(cid):
                data = await self._notifier.store.get(cid)
                if data is not None:
                    self.offer(mh, data)
                    continue
            if not self._futures[mh].done():
                missing.append(cid)
        return missing

    def unsubscribe(self, cids: Iterable[bytes]) -> None:
        """Stop waiting for ``cids`` (pending futures are cancelled)."""
        for cid in cids:
            mh = multihash_of(cid)
            fut = self._futures.pop(mh, None)
            if fut is not None:
                if not fut.done():
                    fut.cancel()
                self._notifier._unregister(mh, self)

    def remove(self) -> None:
        """Unsubscribe from everything."""
        for mh, fut in list(self._futures.items()):
            if not fut.done():
                fut.cancel()
            self._notifier._unregister(mh, self)
        self._futures.clear()

    @property
    def pending(self) -> int:
        """CIDs subscribed and not yet delivered."""
        return sum(1 for f in self._futures.values() if not f.done())


class BlockNotifier:
    """Stores published blocks, then completes the subscriptions that want them."""

    __slots__ = ("_on_stored", "_subs", "store")

    def __init__(
        self, store: Blockstore, on_stored: Callable[[bytes], None] | None = None
    ) -> None:
        self.store = store
        """Where published blocks go first."""
        self._on_stored = on_stored
        self._subs: dict[bytes, set[BlockSubscription]] = {}

    def subscribe(self) -> BlockSubscription:
        """A new, empty subscription (add CIDs with :meth:`BlockSubscription.subscribe`)."""
        return BlockSubscription(self)

    async def publish(
        self, blocks: Sequence[tuple[bytes, bytes]], *, pin: bytes | None = None
    ) -> None:
        """Store ``blocks`` (checked by the caller), then deliver them to subscribers."""
        await self.store.put_many(blocks, pin=pin)
        for cid, data in blocks:
            if self._on_stored is not None:
                self._on_stored(cid)
            for sub in list(self._subs.get(multihash_of(cid), ())):
                sub.offer(multihash_of(cid), data)

    def wanted(self, cid: bytes) -> bool:
        """Whether a subscription waits for ``cid``."""
        return multihash_of(cid) in self._subs

    def subscribers(self, cid: bytes) -> int:
        """Subscriptions of ``cid`` (tests)."""
        return len(self._subs.get(multihash_of(cid), ()))

    def _register(self, mh: bytes, sub: BlockSubscription) -> None:
        self._subs.setdefault(mh, set()).add(sub)

    def _unregister(self, mh: bytes, sub: BlockSubscription) -> None:
        subs = self._subs.get(mh)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[mh]


__all__ = ["BlockNotifier", "BlockSubscription"]
