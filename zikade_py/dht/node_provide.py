"""Providing at scale: many CIDs at once, the reprovider's statistics, stopping it all.

``provide`` (:mod:`.node_content`) announces one CID at once. For thousands or
millions the node hands them to its reprovider instead:

* with the **sweep** (default) :meth:`ProvideAPI.provide_many` stores the keys
  (sorted by keyspace position, in the repo) and the sweep announces them in
  bursts grouped by region, then keeps re-announcing them region by region;
* with the **classic** reprovider each new key is stored as ours and announced
  on its own (at most :data:`CLASSIC_CONCURRENCY` at a time), and the hourly
  republisher re-announces each one, one lookup per key.

:meth:`ProvideAPI.provide_stat` is what ``zikade provide stat`` shows (the
counters of Kubo's ``ipfs provide stat``); :meth:`ProvideAPI.provide_clear`
is ``zikade provide clear``; :meth:`ProvideAPI.reprovide_now` starts a full
reprovide cycle at once (``zikade provide reprovide``, benchmarks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

from multiformats import CID

from zikade_py.core.coordinator_events import BroadcastStrategy
from zikade_py.dht import keys as keyfmt
from zikade_py.dht.messages import add_provider
from zikade_py.dht.node_core import NodeCore
from zikade_py.dht.stores.base import REPUBLISH_INTERVAL
from zikade_py.dht.stores.sqlite_provide import SqliteProvideKeys

CLASSIC_CONCURRENCY: Final = 16
"""Keys the classic path announces at once in :meth:`ProvideAPI.provide_many`."""


class ProvideAPI(NodeCore):
    """Many CIDs, provide statistics, clear (see the module docstring)."""

    async def provide_many(self, cids: Iterable[str | bytes | CID]) -> int:
        """Provide every CID of ``cids`` from now on; how many were new."""
        return await self.provide_multihashes(keyfmt.content_multihash(c) for c in cids)

    async def provide_multihashes(self, multihashes: Iterable[bytes]) -> int:
        """:meth:`provide_many` of CIDs already decoded to their multihashes (the RPC
        API decodes each line once, to name a bad one); how many were new."""
        mhs = list(dict.fromkeys(multihashes))
        me = self.self_info()
        if not me.addrs:
            raise ValueError("cannot provide without a listen address (peers would drop it)")
        if self.reprovider is not None:
            return await self.reprovider.provide(mhs)
        now = time.time()
        due = set(await self.providers.list_local_due_async(now + REPUBLISH_INTERVAL))
        new = [mh for mh in mhs if mh not in due]
        gate = asyncio.Semaphore(CLASSIC_CONCURRENCY)

        async def one(mh: bytes) -> None:
            async with gate:
                await self.providers.add_async(mh, me, now)
                await self.providers.add_local_async(mh, now)
                await self._broadcast(
                    "DHT.Provide", mh, add_provider(mh, me), BroadcastStrategy.FOLLOW_UP,
                    None, None,
                )

        await asyncio.gather(*(one(mh) for mh in new))
        return len(new)

    async def provide_stat(self) -> dict[str, object]:
        """The reprovider's state: keys, regions, cycle progress, last and next region,
        lookups and messages this cycle, failures, estimated network size; and the node's
        kad traffic since start (``wire``: streams and messages, for benchmarks)."""
        out = await self._provide_stat()
        if self._router is not None and self._driver is not None:
            router, sender = self._router, self._driver.batch_sender
            batch_streams = getattr(sender, "streams", 0)
            batch_messages = getattr(sender, "messages", 0)
            out["wire"] = {
                "requests": router.requests_sent,
                "messages_unanswered": router.messages_sent,
                "batch_streams": batch_streams,
                "batch_messages": batch_messages,
                "streams": router.requests_sent + router.messages_sent + batch_streams,
                "messages": router.requests_sent + router.messages_sent + batch_messages,
            }
        return out

    async def _provide_stat(self) -> dict[str, object]:
        if self.reprovider is not None:
            return await self.reprovider.stat()
        if self._datastore is not None and not self.config.republish:
            # An in-process node on the repo (no daemon): what the repo holds.
            store = SqliteProvideKeys(self._datastore)
            cycle_start, rows = await store.load_schedule()
            count = await store.count()
            if count or rows:
                return {
                    "strategy": "sweep", "keys": count, "regions": len(rows),
                    "cycle_start": cycle_start, "running": False,
                }
        keys = len(await asyncio.to_thread(self.providers.list_local))
        out: dict[str, object] = {"strategy": "classic" if self.config.republish else "none"}
        out["keys"] = keys
        rep = self.provider_republisher
        if rep is not None:
            out.update(
                {"announced_total": rep.announced, "failures_total": rep.failed,
                 "retired_total": rep.retired}
            )
        return out

    async def provide_clear(self) -> int:
        """Stop re-announcing everything we provide; how many keys were dropped."""
        if self.reprovider is not None:
            return await self.reprovider.clear()
        cleared = 0
        if self._datastore is not None:
            cleared = await SqliteProvideKeys(self._datastore).clear()
        keys = await self.providers.list_local_due_async(time.time() + REPUBLISH_INTERVAL)
        for key in keys:
            await asyncio.to_thread(self.providers.remove_local, key)
        return cleared + len(keys)

    async def reprovide_now(self) -> None:
        """Re-announce everything we provide now (sweep: every region; classic: every key)."""
        if self.reprovider is not None:
            self.reprovider.reprovide_now()
        elif self.provider_republisher is not None:
            await self.provider_republisher.run_once(interval=0.0)


__all__ = ["CLASSIC_CONCURRENCY", "ProvideAPI"]
