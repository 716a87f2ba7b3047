"""The Bitswap exchange on our host: the thin asyncio driver around the pure parts.

Pieces (BITSWAP.md §2) and where they live:

* **Network** — this module: one handler for every bitswap protocol id, one
  sender task per peer (a new stream per message, as Helia expects), peers
  learned from identify, connections held through the connection manager's
  ``acquire``/``release`` while a peer holds wants of ours;
* **WantManager** — :mod:`.wantmanager` (pure); **Engine** and **Ledger** —
  :mod:`.engine` (pure); **Session** want/peer logic — :mod:`.session_logic`
  (pure, time-driven); the notifier — :mod:`.notifier`;
* **BlockRouter** — :meth:`Bitswap._on_blocks`: every received block is checked
  (its CID was computed from its bytes by :mod:`.wire`), dropped if nobody wanted
  it, published (stored, then delivered), reported to the sessions that want it
  and to the engine; **PeerRouter** — :meth:`Bitswap._peer_gone` and the HAVE /
  DONT_HAVE routing in :meth:`Bitswap._on_message`;
* **GetBlocks** — :meth:`Bitswap.get_blocks`, inside an
  :class:`~.session.ExchangeSession` (:mod:`.session`) scoped by
  ``zikade_py.session()``: every ``get_blocks`` in one session shares its peers
  and wants; leaving or cancelling the session cancels its wants (CANCEL to every
  peer that had them) and stops its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from zikade_py import telemetry
from zikade_py.bitswap import wire
from zikade_py.bitswap.config import BitswapConfig, BitswapStat, ProviderFinder
from zikade_py.bitswap.engine import Engine
from zikade_py.bitswap.notifier import BlockNotifier
from zikade_py.bitswap.session import ExchangeSession
from zikade_py.bitswap.wantmanager import WantManager
from zikade_py.blocks import cid as cids
from zikade_py.blocks.store import Blockstore
from zikade_py.dht.session import SessionCancelledError, current_session
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.events import PeerDisconnected, PeerIdentified, ProtocolsUpdated
from zikade_py.p2p.host import Host
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.peer_id import PeerID

log = logging.getLogger(__name__)


class Bitswap:
    """See the module docstring. ``start()`` registers the protocols on the host."""

    def __init__(
        self,
        host: Host,
        store: Blockstore,
        *,
        find_providers: ProviderFinder | None = None,
        config: BitswapConfig | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.find_providers = find_providers
        self.config = config or BitswapConfig()
        self.wants = WantManager()
        self.engine = Engine(store.size_of)
        self.notifier = BlockNotifier(store, on_stored=self._stored)
        self._routes: dict[bytes, set[ExchangeSession]] = {}
        self._sessions: dict[str, ExchangeSession] = {}
        self._all_sessions: set[ExchangeSession] = set()
        self._ids = itertools.count(1)
        self._outbox: dict[PeerID, list[wire.Message]] = {}
        self._queued: dict[PeerID, int] = {}
        """Block bytes queued or being sent to each peer (the engine waits past a limit)."""
        self._senders: dict[PeerID, asyncio.Task[None]] = {}
        self._held: set[PeerID] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serve_wake = asyncio.Event()
        self._protocols: dict[PeerID, str] = {}
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the bitswap protocols and follow peers through host events."""
        self._started = True
        for proto in wire.PROTOCOLS:
            self.host.set_stream_handler(proto, self._handle)
        events = self.host.events()
        self._spawn(self._watch(events), "bitswap-host-events")
        self._spawn(self._serve(), "bitswap-engine")

    async def close(self) -> None:
        """Stop sessions, senders and tasks; release every held connection."""
        for proto in wire.PROTOCOLS:
            self.host.remove_stream_handler(proto)
        for s in list(self._all_sessions):
            s.stop()
        for task in [*self._tasks, *self._senders.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._senders.values(), return_exceptions=True)
        for s in list(self._all_sessions):
            await asyncio.gather(s._runner, return_exceptions=True)
        self._all_sessions.clear()
        for peer in list(self._held):
            self._release(peer)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sessions ---------------------------------------------------------------------------

    def session(self) -> tuple[ExchangeSession, bool]:
        """The exchange session of the current ``zikade_py.session()`` (created and joined
        to it on first use), or a new ephemeral one; the flag says whether it is ephemeral."""
        owner = current_session()
        if owner is not None and not owner.cancelled:
            existing = self._sessions.get(owner.id)
            if existing is not None and not existing.closed:
                return existing, False
            s = ExchangeSession(self, next(self._ids), owner)
            self._sessions[owner.id] = s
            self._all_sessions.add(s)
            owner.add(s)
            return s, False
        if owner is not None:
            raise SessionCancelledError("session cancelled")
        s = ExchangeSession(self, next(self._ids), None)
        self._all_sessions.add(s)
        return s, True

    def forget_session(self, s: ExchangeSession) -> None:
        """Called by a stopping session."""
        if s.owner is not None and self._sessions.get(s.owner.id) is s:
            del self._sessions[s.owner.id]
        self._all_sessions.discard(s)
        if s.owner is not None:
            s.owner.discard(s)

    async def get_blocks(self, wanted: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
        """The blocks of ``wanted`` (binary CIDs), in order: local ones at once, the rest
        from the network within the current session."""
        s, ephemeral = self.session()
        try:
            async for item in s.get_blocks(list(wanted)):
                yield item
        finally:
            if ephemeral:
                s.stop()
                await s.wait_stopped()

    async def get_block(self, cid: bytes) -> bytes:
        """One block (local or fetched)."""
        async for _, data in self.get_blocks([cid]):
            return data
        raise AssertionError("unreachable")

    async def put_blocks(
        self, blocks: Sequence[tuple[bytes, bytes]], *, pin: bytes | None = None
    ) -> None:
        """Store checked blocks; peers that want them get them."""
        await self.notifier.publish(blocks, pin=pin)

    # -- routing ----------------------------------------------------------------------------

    def route_add(self, cid: bytes, s: ExchangeSession) -> None:
        """``s`` wants to hear about ``cid`` (blocks, HAVE, DONT_HAVE)."""
        self._routes.setdefault(cids.multihash_of(cid), set()).add(s)

    def route_remove(self, cid: bytes, s: ExchangeSession) -> None:
        """``s`` no longer cares about ``cid``."""
        mh = cids.multihash_of(cid)
        routes = self._routes.get(mh)
        if routes is not None:
            routes.discard(s)
            if not routes:
                del self._routes[mh]

    def _interested(self, cid: bytes) -> list[ExchangeSession]:
        return list(self._routes.get(cids.multihash_of(cid), ()))

    def _stored(self, cid: bytes) -> None:
        self.engine.block_added(cid)
        self._serve_wake.set()

    # -- peers ------------------------------------------------------------------------------

    async def _watch(self, events: Any) -> None:
        async for event in events:
            match event:
                case PeerIdentified(peer, protocols, _, _) | ProtocolsUpdated(peer, protocols):
                    proto = next((p for p in wire.PROTOCOLS if p in protocols), None)
                    if proto is not None:
                        self._protocols[peer] = proto
                        self.wants.connected(peer)
                        self.flush_wants()
                case PeerDisconnected(peer):
                    self._peer_gone(peer)
                case _:
                    pass

    def ensure_peer(self, peer: PeerID) -> None:
        """A session wants to talk to ``peer``: treat it as a bitswap peer (the sender dials)."""
        self.wants.connected(peer)

    def _peer_gone(self, peer: PeerID) -> None:
        self.wants.disconnected(peer)
        self.engine.peer_gone(peer)
        self._protocols.pop(peer, None)
        self._outbox.pop(peer, None)
        self._queued.pop(peer, None)
        if peer in self._held:
            self._release(peer)
        now = time.monotonic()
        for s in list(self._all_sessions):
            s.logic.remove_peer(peer, now)
            s.wake()

    def _release(self, peer: PeerID) -> None:
        self._held.discard(peer)
        with contextlib.suppress(Exception):
            self.host.connmgr.release(peer)

    # -- sending ----------------------------------------------------------------------------

    def flush_wants(self) -> None:
        """Move the want manager's pending changes to the outboxes; sync connection holds."""
        for peer, msg in self.wants.poll():
            self._enqueue(peer, msg)
        holders = self.wants.peers_with_wants()
        for peer in holders - self._held:
            self.host.connmgr.acquire(peer)
            self._held.add(peer)
        for peer in self._held - holders:
            self._release(peer)

    def _enqueue(self, peer: PeerID, msg: wire.Message) -> None:
        if msg.empty:
            return
        self._outbox.setdefault(peer, []).append(msg)
        if msg.blocks:
            self._queued[peer] = self._queued.get(peer, 0) + sum(len(d) for _, d in msg.blocks)
        if peer not in self._senders:
            task = asyncio.get_running_loop().create_task(
                self._send_loop(peer), name=f"bitswap-send-{peer}"
            )
            self._senders[peer] = task

    async def wait_sent(self) -> None:
        """Return once every queued message was sent (or failed)."""
        while self._senders:
            await asyncio.gather(*list(self._senders.values()), return_exceptions=True)

    async def _send_loop(self, peer: PeerID) -> None:
        try:
            while self._outbox.get(peer):
                batch = self._outbox.pop(peer)
                for msg in _merge(batch):
                    await self._send(peer, msg)
                    if msg.blocks and peer in self._queued:
                        left = self._queued[peer] - sum(len(d) for _, d in msg.blocks)
                        if left > 0:
                            self._queued[peer] = left
                        else:
                            del self._queued[peer]
                        self._serve_wake.set()  # room for the engine's next task
        finally:
            self._senders.pop(peer, None)

    async def _send(self, peer: PeerID, msg: wire.Message) -> None:
        with telemetry.tracer().start_as_current_span("Bitswap.Send") as span:
            span.set_attribute("peer", str(peer))
            span.set_attribute("wants", len(msg.wants))
            span.set_attribute("blocks", len(msg.blocks))
            span.set_attribute("haves", len(msg.haves))
            span.set_attribute("dont_haves", len(msg.dont_haves))
            await self._send_traced(peer, msg)

    async def _send_traced(self, peer: PeerID, msg: wire.Message) -> None:
        try:
            async with asyncio.timeout(self.config.send_timeout):
                stream = await self.host.new_stream(
                    peer, self._offer(peer), timeout=self.config.send_timeout
                )
                try:
                    await stream.write(length_prefixed(wire.encode(msg, stream.protocol)))
                    await stream.close()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await stream.reset()
                    raise
            self._protocols[peer] = stream.protocol
            ledger = self.engine.ledger
            if stream.protocol == wire.PROTOCOL_120:
                ledger.haves_sent += len(msg.haves)
                ledger.dont_haves_sent += len(msg.dont_haves)
            if msg.blocks:
                self.engine.ledger.sent(peer, len(msg.blocks), sum(len(d) for _, d in msg.blocks))
        except Exception as exc:
            log.debug("bitswap send to %s failed: %r", peer, exc)
            if msg.wants:  # the peer cannot be reached: sessions move their wants on
                self._peer_gone(peer)

    def _offer(self, peer: PeerID) -> list[str]:
        known = self._protocols.get(peer)
        return [known] if known else list(wire.PROTOCOLS)

    # -- receiving --------------------------------------------------------------------------

    async def _handle(self, stream: Stream) -> None:
        peer = stream.remote_peer
        self._protocols.setdefault(peer, stream.protocol)
        reader = stream.reader
        while not await reader.at_eof():
            raw = await reader.read_length_prefixed(wire.MAX_MESSAGE_SIZE)
            try:
                msg = wire.decode(raw)
            except wire.WireError:
                self.engine.ledger.invalid_messages += 1
                raise  # the host resets the stream
            await self._on_message(peer, msg)

    async def _on_message(self, peer: PeerID, msg: wire.Message) -> None:
        if msg.wants or msg.full:
            self.engine.receive(peer, msg)
            self._serve_wake.set()
        if msg.blocks:
            await self._on_blocks(peer, msg.blocks)
        now = time.monotonic()
        self.engine.ledger.haves_received += len(msg.haves)
        self.engine.ledger.dont_haves_received += len(msg.dont_haves)
        for cid in msg.haves:
            for s in self._interested(cid):
                s.logic.on_have(peer, cid, now)
                s.wake()
        for cid in msg.dont_haves:
            for s in self._interested(cid):
                s.logic.on_dont_have(peer, cid, now)
                s.wake()

    async def _on_blocks(self, peer: PeerID, blocks: Sequence[tuple[bytes, bytes]]) -> None:
        ledger = self.engine.ledger
        accepted = []
        for cid, data in blocks:
            if not (self.notifier.wanted(cid) or self.wants.is_wanted(cid)):
                ledger.unwanted_blocks += 1
                continue
            if self.store.has(cid):
                ledger.duplicate_blocks += 1
            accepted.append((cid, data))
        if not accepted:
            return
        ledger.received(peer, len(accepted), sum(len(d) for _, d in accepted))
        await self.notifier.publish(accepted)
        now = time.monotonic()
        receivers: dict[ExchangeSession, int] = {}
        for cid, _ in accepted:
            for s in self._interested(cid):
                s.logic.on_block(peer, cid, now)
                s.wake()
                receivers[s] = receivers.get(s, 0) + 1
        for s, count in receivers.items():  # in the trace of the session's cat
            span = telemetry.tracer().start_span("Bitswap.Receive", context=s.trace_context)
            span.set_attribute("peer", str(peer))
            span.set_attribute("blocks", count)
            span.end()

    # -- serving ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            await self._serve_wake.wait()
            self._serve_wake.clear()
            while True:
                limit = self.config.max_queued_bytes
                busy = {p for p, queued in self._queued.items() if queued >= limit}
                if not self.engine.pending_except(busy):
                    break
                for task in self.engine.poll(skip=busy):
                    blocks = []
                    for cid in task.blocks:
                        data = await self.store.get(cid)
                        if data is not None:
                            blocks.append((cid, data))
                    self._enqueue(
                        task.peer,
                        wire.Message(blocks=tuple(blocks), haves=task.haves,
                                     dont_haves=task.dont_haves),
                    )
                await asyncio.sleep(0)

    # -- views ------------------------------------------------------------------------------

    def stat(self) -> BitswapStat:
        """Counters for ``zikade bitswap stat``."""
        led = self.engine.ledger
        return BitswapStat(
            wants=self.wants.total_wants,
            peers=len(self.wants.peers | self.engine.peers),
            sessions=len(self._all_sessions),
            blocks_received=led.total.blocks_received,
            bytes_received=led.total.bytes_received,
            blocks_sent=led.total.blocks_sent,
            bytes_sent=led.total.bytes_sent,
            duplicate_blocks=led.duplicate_blocks,
            unwanted_blocks=led.unwanted_blocks,
            invalid_messages=led.invalid_messages,
            haves_sent=led.haves_sent,
            dont_haves_sent=led.dont_haves_sent,
            haves_received=led.haves_received,
            dont_haves_received=led.dont_haves_received,
        )

    @property
    def held_connections(self) -> int:
        """Peers whose connection we hold for our wants (tests check it drops to zero)."""
        return len(self._held)

    @property
    def sender_tasks(self) -> int:
        """Sender tasks running (tests)."""
        return len(self._senders)


def _merge(batch: list[wire.Message]) -> list[wire.Message]:
    """Coalesce queued messages: want changes (last one per CID wins), presences, and
    blocks split so that no message passes the size limit."""
    wants: dict[bytes, wire.WantEntry] = {}
    full = False
    haves: dict[bytes, None] = {}
    dont: dict[bytes, None] = {}
    blocks: list[tuple[bytes, bytes]] = []
    for msg in batch:
        if msg.full:
            full, wants = True, {}
        for w in msg.wants:
            wants[w.cid] = w
        haves.update(dict.fromkeys(msg.haves))
        dont.update(dict.fromkeys(msg.dont_haves))
        blocks.extend(msg.blocks)
    groups = wire.split_blocks(blocks) or [[]]
    out = [wire.Message(wants=tuple(wants.values()), full=full, blocks=tuple(groups[0]),
                        haves=tuple(haves), dont_haves=tuple(dont))]
    out.extend(wire.Message(blocks=tuple(g)) for g in groups[1:])
    return [m for m in out if not m.empty]


__all__ = ["Bitswap", "BitswapConfig", "BitswapStat", "ExchangeSession", "ProviderFinder"]
