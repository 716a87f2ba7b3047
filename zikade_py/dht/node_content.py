"""The content API of the Node: announce that we provide a CID, find who provides one.

* ``provide`` — stored locally (and re-announced every 22 h by the provider
  republisher, through :meth:`ContentAPI._announce`), then ADD_PROVIDER to the
  k closest peers of the CID's multihash (FollowUp, or Optimistic).
* ``find_providers`` — local records, then a GET_PROVIDERS walk, streamed
  through the :class:`~zikade_py.dht.notifier.Notifier` (records arriving by
  ADD_PROVIDER meanwhile included, each provider once).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from multiformats import CID

from zikade_py import telemetry
from zikade_py.core.coordinator_events import BroadcastStrategy, StartMessageQuery
from zikade_py.core.key import Key
from zikade_py.dht import keys as keyfmt
from zikade_py.dht.config import BroadcastResult
from zikade_py.dht.driver import QueryHandle
from zikade_py.dht.messages import Message, PeerInfo, add_provider, get_providers, provider_peers
from zikade_py.dht.node_core import NodeCore
from zikade_py.dht.query_events import (
    EventCallback,
    QueryEvent,
    QueryEventType,
    emit,
)
from zikade_py.dht.router import CLOSER_PEER_ADDR_TTL
from zikade_py.p2p.peer_id import PeerID


class ContentAPI(NodeCore):
    """Provider records (see the module docstring)."""

    async def provide(
        self,
        cid: str | CID,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        optimistic: bool = False,
    ) -> BroadcastResult:
        """Announce that we provide ``cid``: stored locally (and re-announced every 22 h),
        then ADD_PROVIDER to the k closest peers of its multihash."""
        mh = keyfmt.content_multihash(cid)
        me = self.self_info()
        if not me.addrs:
            raise ValueError("cannot provide without a listen address (peers would drop it)")
        now = time.time()
        await self.providers.add_async(mh, me, now)
        await self.providers.add_local_async(mh, now)
        if self.reprovider is not None:  # the sweep re-announces it from now on
            await self.reprovider.provide([mh], announced=True)
        self.notifier.publish(mh, me, store=False)
        strategy = BroadcastStrategy.OPTIMISTIC if optimistic else BroadcastStrategy.FOLLOW_UP
        return await self._broadcast(
            "DHT.Provide", mh, add_provider(mh, me), strategy, timeout, on_event
        )

    async def _announce(self, mh: bytes, now: float) -> BroadcastResult:
        """Re-announce a multihash we provide (the provider republisher's hook)."""
        return await self._broadcast(
            "DHT.Provide", mh, add_provider(mh, self.self_info()),
            BroadcastStrategy.FOLLOW_UP, None, None,
        )

    async def find_providers(
        self,
        cid: str | CID,
        *,
        count: int = 20,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> AsyncIterator[PeerInfo]:
        """Providers of ``cid``, each once: local ones first, then those the GET_PROVIDERS
        walk finds and those announced to us meanwhile; stops after ``count`` (0: all)."""
        mh = keyfmt.content_multihash(cid)
        sub = self.notifier.subscribe([mh])
        handle: QueryHandle | None = None
        yielded = 0
        try:
            with self._root_span("DHT.FindProviders", key=telemetry.key_attribute(mh)) as span:

                def learn(frm: PeerID, response: object) -> None:
                    if not isinstance(response, Message):
                        return
                    for info in provider_peers(response):
                        if info.addrs and info.peer_id != self.peer_id:
                            self.host.peerstore.add_addrs(
                                info.peer_id, info.addrs, CLOSER_PEER_ADDR_TTL
                            )
                        self.notifier.publish(mh, info, store=False)

                observer = self._observer(on_event, learn)
                handle = self._open("find-providers", span, timeout, observer)
                handle.finished.add_done_callback(lambda _: sub.close())
                self.driver.notify(
                    StartMessageQuery(
                        handle.query_id, Key.from_preimage(mh), get_providers(mh),
                        trace=handle.trace,
                    )
                )
                async for record in sub:
                    info = record.provider
                    if not info.addrs and info.peer_id != self.peer_id:
                        info = self._info(info.peer_id)
                    emit(on_event, QueryEvent(QueryEventType.PROVIDER, info.peer_id, (info,)))
                    yielded += 1
                    span.set_attribute("providers", yielded)
                    yield info
                    if count and yielded >= count:
                        break
                if not handle.finished.done():
                    self.driver.stop(handle)
                await self.driver.wait(handle)
        finally:
            sub.close()
            if handle is not None and not handle.finished.done():
                self.driver.stop(handle)
            if handle is not None:
                await handle.reap()



__all__ = ["ContentAPI"]
