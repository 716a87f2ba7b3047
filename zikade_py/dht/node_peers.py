"""The peer API of the Node: find a peer, walk towards a key, join the network, the table.

* ``find_peer`` — a FIND_NODE walk to the peer's key, stopped as soon as the
  peer answers or an answer names it with addresses; connected peers are
  answered from the address book first, like go.
* ``lookup`` / ``get_closest_peers`` — a FIND_NODE walk; the k closest that answered.
* ``bootstrap`` — connect to the seeds (and the peers saved from the last
  routing table), then look up our own key.
* ``routing_table``, ``connected_peers``, ``add_peer``, ``ping`` — local views
  and nudges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from zikade_py import telemetry
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    QueryFinished,
    StartBootstrap,
    StartFindCloserQuery,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.trace import Trace
from zikade_py.dht import keys as keyfmt
from zikade_py.dht.config import BootstrapResult, LookupResult, NotFoundError, RoutingEntry
from zikade_py.dht.driver import QueryHandle, key_peer, peer_key
from zikade_py.dht.messages import Message, PeerInfo, closer_peers
from zikade_py.dht.node_core import ROUTING_ADDR_TTL, NodeCore
from zikade_py.dht.query_events import (
    EventCallback,
    QueryEvent,
    QueryEventType,
    emit,
)
from zikade_py.dht.seeds import resolve_seeds
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import PERMANENT_ADDR_TTL

log = logging.getLogger(__name__)


class PeerAPI(NodeCore):
    """Peer routing and the routing table (see the module docstring)."""

    async def find_peer(
        self,
        peer: PeerID | str,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        local_first: bool = True,
    ) -> PeerInfo:
        """The addresses of ``peer``.

        With ``local_first`` a connected peer is answered from the address book
        without a lookup (as go does). Raises :class:`NotFoundError`, or
        ``TimeoutError`` if the deadline passed before the peer was found.
        """
        pid = keyfmt.parse_peer(peer)
        if pid == self.peer_id:
            return self.self_info()
        if local_first and self.host.connmgr.get(pid) is not None:
            info = self._info(pid)
            if info.addrs:
                emit(on_event, QueryEvent(QueryEventType.FINAL_PEER, pid, (info,)))
                return info
        found: list[PeerInfo] = []
        handle: QueryHandle | None = None

        def check(frm: PeerID, response: object) -> None:
            if found or handle is None:
                return
            infos = response if isinstance(response, list) else []
            if isinstance(response, Message):
                infos = closer_peers(response)
            if frm == pid:
                found.append(self._info(pid))
            else:
                found.extend(i for i in infos if i.peer_id == pid and i.addrs)
            if found:
                self.driver.stop(handle)  # ErrSkipRemaining: the others are cancelled

        with self._root_span("DHT.FindPeer", peer_id=str(pid)) as span:
            handle = self._open("find-peer", span, timeout, self._observer(on_event, check))
            result = await self.driver.run(
                handle, StartFindCloserQuery(handle.query_id, peer_key(pid), trace=handle.trace)
            )
            span.set_attribute("reason", result.reason.value)
            if found:
                addrs = dict.fromkeys(found[0].addrs)
                addrs.update(dict.fromkeys(self.host.peerstore.addrs(pid)))
                info = PeerInfo(pid, tuple(addrs))
                emit(on_event, QueryEvent(QueryEventType.FINAL_PEER, pid, (info,)))
                span.set_attribute("found", True)
                return info
            if result.reason is FinishReason.TIMEOUT:
                raise TimeoutError(f"peer {pid} not found before the deadline")
            raise NotFoundError(f"peer {pid} not found")

    async def lookup(
        self,
        key: bytes | str | PeerID,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> LookupResult:
        """A FIND_NODE walk towards ``key``: the closest peers that answered and why it ended
        (``TIMEOUT`` with the partial results when the deadline cut it short)."""
        preimage = keyfmt.lookup_key(key)
        with self._root_span(
            "DHT.GetClosestPeers", key=telemetry.key_attribute(preimage)
        ) as span:
            handle = self._open("get-closest-peers", span, timeout, self._observer(on_event))
            target = Key.from_preimage(preimage)
            result = await self.driver.run(
                handle, StartFindCloserQuery(handle.query_id, target, trace=handle.trace)
            )
            assert isinstance(result, QueryFinished)
            peers = [self._info(key_peer(k)) for k in result.closest]
            for info in peers:
                emit(on_event, QueryEvent(QueryEventType.FINAL_PEER, info.peer_id, (info,)))
            span.set_attributes({"reason": result.reason.value, "peers": len(peers)})
            return LookupResult(peers, result.reason, result.stats)

    async def get_closest_peers(
        self,
        key: bytes | str | PeerID,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> list[PeerInfo]:
        """The k closest peers to ``key`` that answered (partial at the deadline).

        A ``str`` key is a CID or peer id (its multihash is looked up); ``bytes`` are
        the preimage as-is.
        """
        return (await self.lookup(key, timeout=timeout, on_event=on_event)).peers

    def routing_table(self) -> list[RoutingEntry]:
        """The routing table's peers (with addresses and wall-clock times)."""
        table = self.driver.coordinator.routing_table
        offset = time.time() - time.monotonic()
        out: list[RoutingEntry] = []
        for node in table.nodes():
            added = table.added_at(node) or 0.0
            seen = table.last_seen(node) or added
            out.append(
                RoutingEntry(self._info(key_peer(node)), table.cpl(node), added + offset,
                             seen + offset)
            )
        return out

    def connected_peers(self) -> list[PeerInfo]:
        """Peers we have a connection to."""
        return [self._info(p) for p in self.host.connmgr.peers()]

    def add_peer(self, addr: str | Multiaddr) -> PeerID:
        """Remember ``addr`` (``…/p2p/<id>``) and offer the peer to the routing table (it
        enters once it answers a check)."""
        peer, bare = keyfmt.peer_multiaddr(addr)
        self.host.peerstore.add_addrs(peer, [bare], ROUTING_ADDR_TTL)
        self.driver.notify(AddCandidates((peer_key(peer),)))
        return peer

    async def ping(self, peer: PeerID | str | Multiaddr, count: int = 1) -> list[float]:
        """libp2p ping round-trip times in seconds (dials a ``/p2p`` multiaddr if given)."""
        if isinstance(peer, Multiaddr) or (isinstance(peer, str) and peer.startswith("/")):
            pid, bare = keyfmt.peer_multiaddr(peer)
            await self.host.connect(pid, [bare])
        else:
            pid = keyfmt.parse_peer(peer)
        return await self.host.ping(pid, count)

    # -- the API: bootstrap ------------------------------------------------------------------

    async def bootstrap(
        self, peers: Sequence[str | Multiaddr] | None = None, *, timeout: float | None = None
    ) -> BootstrapResult:
        """Join the network through ``peers`` (default: the configured bootstrap peers and
        the peers saved from our last routing table): connect, then look up our own key.
        A timeout is reported in the result's ``reason``, not raised."""
        budget = self.config.bootstrap_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        entries = self.config.bootstrap if peers is None else peers
        if not entries and peers is None:
            log.info("no bootstrap peers configured: joining only through the saved peers")
        # /dnsaddr and /dns* entries are resolved first (seeds.py); a name that does not
        # resolve is that entry's failure
        targets, unresolved = await resolve_seeds(self.host.resolver, entries, timeout=budget)
        for pid, addrs, _ in targets:
            self.host.peerstore.add_addrs(pid, addrs, PERMANENT_ADDR_TTL)
        if peers is None:
            known = {t[0] for t in targets}
            for pid, _ in await self.peer_book.entries_async(time.time()):
                if pid not in known and pid != self.peer_id:
                    targets.append((pid, [], str(pid)))
        with self._root_span("DHT.Bootstrap", seeds=len(targets)) as span:
            outcomes = await asyncio.gather(
                *(self.host.connect(pid, addrs, timeout=budget) for pid, addrs, _ in targets),
                return_exceptions=True,
            )
            connected: list[PeerID] = []
            failed: list[tuple[str, str]] = list(unresolved)
            for (pid, _, text), outcome in zip(targets, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed.append((text, str(outcome) or type(outcome).__name__))
                else:
                    connected.append(pid)
            span.set_attributes({"connected": len(connected), "failed": len(failed)})
            table = self.driver.coordinator.routing_table
            if not connected:
                return BootstrapResult(FinishReason.FAILED, [], failed, len(table))
            waiter: asyncio.Future[BootstrapFinished] = (
                asyncio.get_running_loop().create_future()
            )
            self._bootstrap_waiters.append(waiter)
            seeds = tuple(peer_key(p) for p in connected)
            self.driver.notify(
                StartBootstrap(seeds, trace=Trace(span.get_span_context(), deadline))
            )
            try:
                event = await waiter
            finally:
                if waiter in self._bootstrap_waiters:
                    self._bootstrap_waiters.remove(waiter)
            span.set_attribute("reason", event.reason.value)
            return BootstrapResult(event.reason, connected, failed, len(table), event.stats)



__all__ = ["PeerAPI"]
