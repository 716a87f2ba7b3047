"""The Node: a Kademlia DHT node on the libp2p host, and its public Python API.

``async with Node(NodeConfig(...)) as node: await node.find_peer(pid)``

The node owns the host, the stores, the inbound server (server mode), the
router, the coordinator and its asyncio :class:`~zikade_py.dht.driver.Driver`.
Each API call turns into one coordinator query or broadcast (DESIGN.md §7):

* ``find_peer`` — a FIND_NODE walk to the peer's key, stopped as soon as the
  peer answers or an answer names it with addresses; connected peers are
  answered from the address book first, like go.
* ``get_closest_peers`` / ``lookup`` — a FIND_NODE walk; the k closest that answered.
* ``provide`` — ADD_PROVIDER to the k closest (FollowUp, or Optimistic).
* ``find_providers`` — local records, then a GET_PROVIDERS walk, streamed
  through the :class:`~zikade_py.dht.notifier.Notifier` (records arriving by
  ADD_PROVIDER meanwhile included, each provider once).
* ``put_value`` / ``get_value`` — validated ``/pk/`` and ``/ipns/`` records.

Every call runs under a deadline (``timeout``, default ``query_timeout``), has a
root span ``DHT.<Op>`` (attribute ``session_id`` inside a
:func:`~zikade_py.dht.session.session`) that parents its ``Query.Run``, and
reports progress to ``on_event``. Cancelling the calling task stops the query
and cancels every request before the cancellation propagates. Calls that
return lists return partial results at the deadline; ``find_peer`` and
``get_value`` raise ``TimeoutError`` only if they found nothing.

Routing-table admission follows WIRE.md §8.5/§10 pt 15: only peers whose
identify lists ``/ipfs/kad/1.0.0`` with an address become candidates, and the
include queue checks them before they enter. Table peers and their addresses
are saved in the peer store, so a restarted node bootstraps from its old table.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from multiformats import CID
from opentelemetry import trace
from opentelemetry.trace import Span

from zikade_py import telemetry
from zikade_py.core.coordinator import Coordinator
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    BroadcastFinished,
    BroadcastStrategy,
    NodeConnected,
    QueryFinished,
    StartBootstrap,
    StartBroadcast,
    StartFindCloserQuery,
    StartMessageQuery,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.trace import Trace
from zikade_py.dht import keys as keyfmt
from zikade_py.dht.config import (
    DATASTORE_FILENAME,
    IDENTITY_FILENAME,
    BootstrapResult,
    BroadcastResult,
    LookupResult,
    NodeClosedError,
    NodeConfig,
    NotFoundError,
    RoutingEntry,
)
from zikade_py.dht.driver import Driver, QueryHandle, key_peer, peer_key
from zikade_py.dht.handlers import KadServer
from zikade_py.dht.messages import (
    Message,
    MessageType,
    PeerInfo,
    add_provider,
    closer_peers,
    get_providers,
    get_value,
    make_record,
    provider_peers,
    put_value,
)
from zikade_py.dht.notifier import Notifier
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.query_events import EventCallback, QueryEvent, QueryEventType, emit
from zikade_py.dht.records import InvalidRecordError, NamespacedValidator, amino_validator
from zikade_py.dht.republisher import Republisher
from zikade_py.dht.router import Router
from zikade_py.dht.session import current_session
from zikade_py.dht.stores import (
    MemoryPeerStore,
    MemoryProviderStore,
    MemoryValueStore,
    PeerStore,
    ProviderStore,
    SqliteDatastore,
    ValueStore,
)
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import HostEvent, PeerIdentified, ProtocolsUpdated
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.keystore import load_or_create_identity
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import PERMANENT_ADDR_TTL

log = logging.getLogger(__name__)

ROUTING_ADDR_TTL = 24 * 3600.0
"""Addresses of routing-table peers are kept this long (in memory and on disk)."""


class _Observer:
    """Turns a query's progress into :class:`QueryEvent` s and an optional hook."""

    __slots__ = ("_hook", "_on_event")

    def __init__(
        self,
        on_event: EventCallback | None,
        hook: Callable[[PeerID, object], None] | None = None,
    ) -> None:
        self._on_event = on_event
        self._hook = hook

    def on_sending(self, peer: PeerID) -> None:
        emit(self._on_event, QueryEvent(QueryEventType.SENDING_QUERY, peer))

    def on_progress(self, peer: PeerID, response: object) -> None:
        if self._on_event is not None:
            closer: Sequence[PeerInfo] = ()
            if isinstance(response, Message):
                closer = closer_peers(response)
            elif isinstance(response, list):
                closer = response
            emit(self._on_event, QueryEvent(QueryEventType.PEER_RESPONSE, peer, tuple(closer)))
        if self._hook is not None:
            self._hook(peer, response)

    def on_request_failed(self, peer: PeerID, error: str) -> None:
        emit(self._on_event, QueryEvent(QueryEventType.QUERY_ERROR, peer, extra=error))


class Node:
    """A zikade-py DHT node (see the module docstring)."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.config = config or NodeConfig()
        self.config.validate()
        self.mode = self.config.mode
        self._host: Host | None = None
        self._driver: Driver | None = None
        self._router: Router | None = None
        self._server: KadServer | None = None
        self._datastore: SqliteDatastore | None = None
        self._events: NonBlockingQueue[HostEvent] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bootstrap_waiters: list[asyncio.Future[BootstrapFinished]] = []
        self._republisher: Republisher | None = None
        self._started = False
        self._closed = False
        self.validator: NamespacedValidator = amino_validator()
        self.providers: ProviderStore = MemoryProviderStore()
        self.values: ValueStore = MemoryValueStore()
        self.peer_book: PeerStore = MemoryPeerStore()
        self.notifier = Notifier(self.providers)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores, start the host (and the kad server in server mode) and the driver."""
        if self._started:
            raise NodeClosedError("node already started")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        cfg = self.config
        key = cfg.private_key
        if cfg.repo is not None:
            repo = Path(cfg.repo).expanduser()
            repo.mkdir(parents=True, exist_ok=True)
            if key is None:
                key = load_or_create_identity(repo / IDENTITY_FILENAME)
            self._datastore = SqliteDatastore(repo / DATASTORE_FILENAME)
            self.providers = self._datastore.providers
            self.values = self._datastore.values
            self.peer_book = self._datastore.peers
            self.notifier = Notifier(self.providers)
        host = self._host = Host(key or PrivateKey.generate(), cfg.host or HostConfig())
        if self.mode == "server":
            self._server = KadServer(
                host=host,
                view=self,
                providers=self.providers,
                values=self.values,
                validator=self.validator,
                clock=time.time,
            )
            self._server.attach()  # before listening: the first identify already says kad
        self._events = host.events()
        await host.start([_multiaddr(a) for a in cfg.listen_addrs])
        now = time.monotonic()
        coordinator = Coordinator(peer_key(host.peer_id), cfg.coordinator, now=now)
        self._router = Router(host, request_timeout=cfg.request_timeout)
        self._driver = Driver(coordinator, self._router, self)
        self._load_peer_book()
        self._spawn(self._watch_host(self._events), "dht-host-events")
        if cfg.republish:
            self._republisher = Republisher(self.providers, self._announce)
            self._republisher.start()

    async def close(self) -> None:
        """Stop everything the node started: queries, requests, timers, tasks, streams,
        connections and the datastore."""
        if self._closed:
            return
        self._closed = True
        if self._republisher is not None:
            await self._republisher.close()
        if self._events is not None:
            self._events.close()
        if self._driver is not None:
            await self._driver.close()
        if self._router is not None:
            await self._router.close()
        for fut in self._bootstrap_waiters:
            if not fut.done():
                fut.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
        if self._host is not None:
            await self._host.close()
        if self._datastore is not None:
            self._datastore.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        # A fresh context: background work must not join the caller's session (rule 3).
        task = asyncio.get_running_loop().create_task(
            coro, name=name, context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- parts -------------------------------------------------------------------------------

    @property
    def host(self) -> Host:
        """The libp2p host (raises :class:`NodeClosedError` before :meth:`start`)."""
        if self._host is None:
            raise NodeClosedError("node not started")
        return self._host

    @property
    def driver(self) -> Driver:
        """The coordinator's driver (for metrics and tests)."""
        if self._driver is None or self._closed:
            raise NodeClosedError("node is not running")
        return self._driver

    @property
    def router(self) -> Router:
        """The outbound request sender."""
        if self._router is None:
            raise NodeClosedError("node not started")
        return self._router

    @property
    def server(self) -> KadServer | None:
        """The inbound kad server (``None`` in client mode)."""
        return self._server

    @property
    def peer_id(self) -> PeerID:
        """Our peer id."""
        return self.host.peer_id

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Where we can be dialed (concrete addresses, without ``/p2p``)."""
        return self.host.listen_addrs

    @property
    def multiaddrs(self) -> list[Multiaddr]:
        """Our listen addresses with ``/p2p/<our id>``, ready to give to others."""
        return [a.with_peer_id(self.peer_id) for a in self.listen_addrs]

    # -- RoutingView (read by the KadServer) -------------------------------------------------

    def closest_peers(self, key: bytes, n: int) -> list[PeerInfo]:
        """Routing-table peers closest to the keyspace point ``key`` that have addresses."""
        if self._driver is None:
            return []
        table = self._driver.coordinator.routing_table
        out: list[PeerInfo] = []
        for node in table.nearest(Key(key), n):
            info = self._info(key_peer(node))
            if info.addrs:
                out.append(info)
        return out

    def self_info(self) -> PeerInfo:
        """Our id with our listen addresses."""
        return PeerInfo(self.peer_id, tuple(self.listen_addrs))

    def peer_info(self, peer: PeerID) -> PeerInfo | None:
        """The addresses we know of ``peer``, ``None`` if none."""
        addrs = self.host.peerstore.addrs(peer)
        return PeerInfo(peer, tuple(addrs)) if addrs else None

    def on_inbound_request(self, peer: PeerID, msg_type: MessageType) -> None:
        """A peer that identified as a kad server asked us something: it is live."""
        if self._driver is None or self._closed:
            return
        book = self.host.peerstore
        if book.supports(peer, KAD_PROTOCOL) and book.addrs(peer):
            self._driver.notify(NodeConnected(peer_key(peer)))

    def on_provider_added(self, key: bytes, provider: PeerInfo) -> None:
        """An ADD_PROVIDER was stored by the server: keep the addresses, tell subscribers."""
        if provider.addrs and self._host is not None:
            self._host.peerstore.add_addrs(provider.peer_id, provider.addrs, ROUTING_ADDR_TTL)
        self.notifier.publish(key, provider, store=False)

    # -- DriverListener ----------------------------------------------------------------------

    def on_routing_updated(self, node: Key) -> None:
        """Keep a new table peer's addresses, in memory and in the peer store."""
        peer = key_peer(node)
        addrs = self.host.peerstore.addrs(peer)
        if not addrs:
            return
        self.host.peerstore.add_addrs(peer, addrs, ROUTING_ADDR_TTL)
        try:
            self.peer_book.add_addrs(peer, addrs, ROUTING_ADDR_TTL, time.time())
        except Exception as exc:
            log.warning("cannot save routing peer %s: %s", peer, exc)

    def on_routing_removed(self, node: Key) -> None:
        """Forget a peer that left the table from the peer store."""
        try:
            self.peer_book.remove(key_peer(node))
        except Exception as exc:
            log.warning("cannot forget routing peer: %s", exc)

    def on_bootstrap_finished(self, event: BootstrapFinished) -> None:
        """Wake the :meth:`bootstrap` calls waiting for this walk."""
        waiters, self._bootstrap_waiters = self._bootstrap_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(event)

    # -- host events -------------------------------------------------------------------------

    async def _watch_host(self, events: NonBlockingQueue[HostEvent]) -> None:
        """Identified kad servers with addresses become routing candidates (WIRE.md §10 pt 15)."""
        book = self.host.peerstore
        driver = self.driver
        async for event in events:
            match event:
                case PeerIdentified(peer=peer, protocols=protocols, listen_addrs=addrs):
                    dialable = [a for a in addrs if a.tcp_endpoint() is not None]
                    if KAD_PROTOCOL in protocols and dialable:
                        driver.notify(AddCandidates((peer_key(peer),)))
                case ProtocolsUpdated(peer=peer, protocols=protocols):
                    if KAD_PROTOCOL in protocols and book.addrs(peer):
                        driver.notify(AddCandidates((peer_key(peer),)))
                case _:
                    pass

    def _load_peer_book(self) -> None:
        now = time.time()
        for peer in self.peer_book.peers(now):
            addrs = self.peer_book.addrs(peer, now)
            if addrs:
                self.host.peerstore.add_addrs(peer, addrs, ROUTING_ADDR_TTL)

    # -- helpers -----------------------------------------------------------------------------

    def _info(self, peer: PeerID) -> PeerInfo:
        return PeerInfo(peer, tuple(self.host.peerstore.addrs(peer)))

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.config.query_timeout if timeout is None else timeout)

    @contextlib.contextmanager
    def _root_span(self, name: str, **attributes: str | int) -> Iterator[Span]:
        """The call's root span ``DHT.<Op>``: parent of its ``Query.Run``, tagged with the
        session. Started explicitly (not as the current span) so async generators can use it."""
        sess = current_session()
        attrs: dict[str, str | int] = dict(attributes)
        if sess is not None:
            attrs["session_id"] = sess.id
        span = telemetry.tracer().start_span(name, attributes=attrs)
        try:
            yield span
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc) or type(exc).__name__)
            else:
                span.set_attribute("cancelled", True)
            raise
        finally:
            span.end()

    def _open(
        self, kind: str, parent: Span, timeout: float | None, observer: _Observer | None
    ) -> QueryHandle:
        return self.driver.open(
            kind,
            parent,
            deadline=self._deadline(timeout),
            observer=observer,
            session=current_session(),
        )

    # -- the API: peers ----------------------------------------------------------------------

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
            handle = self._open("find-peer", span, timeout, _Observer(on_event, check))
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
            handle = self._open("get-closest-peers", span, timeout, _Observer(on_event))
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
        targets: list[tuple[PeerID, list[Multiaddr], str]] = []
        for text in self.config.bootstrap if peers is None else peers:
            pid, bare = keyfmt.peer_multiaddr(text)
            self.host.peerstore.add_addrs(pid, [bare], PERMANENT_ADDR_TTL)
            targets.append((pid, [bare], str(text)))
        if peers is None:
            known = {t[0] for t in targets}
            for pid in self.peer_book.peers(time.time()):
                if pid not in known and pid != self.peer_id:
                    targets.append((pid, [], str(pid)))
        with self._root_span("DHT.Bootstrap", seeds=len(targets)) as span:
            outcomes = await asyncio.gather(
                *(self.host.connect(pid, addrs, timeout=budget) for pid, addrs, _ in targets),
                return_exceptions=True,
            )
            connected: list[PeerID] = []
            failed: list[tuple[str, str]] = []
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

    # -- the API: providers ------------------------------------------------------------------

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
        self.notifier.publish(mh, me)
        self.providers.add_local(mh, now)
        strategy = BroadcastStrategy.OPTIMISTIC if optimistic else BroadcastStrategy.FOLLOW_UP
        return await self._broadcast(
            "DHT.Provide", mh, add_provider(mh, me), strategy, timeout, on_event
        )

    async def _announce(self, mh: bytes) -> BroadcastResult:
        """Re-announce a multihash we provide (the republisher's hook)."""
        return await self._broadcast(
            "DHT.Provide", mh, add_provider(mh, self.self_info()),
            BroadcastStrategy.FOLLOW_UP, None, None,
        )

    async def _broadcast(
        self,
        name: str,
        key: bytes,
        message: Message,
        strategy: BroadcastStrategy,
        timeout: float | None,
        on_event: EventCallback | None,
        seeds: tuple[Key, ...] | None = None,
    ) -> BroadcastResult:
        with self._root_span(
            name, key=telemetry.key_attribute(key), strategy=strategy.value
        ) as span:
            handle = self._open(name, span, timeout, _Observer(on_event))
            start = StartBroadcast(
                handle.query_id, Key.from_preimage(key), message, strategy, seeds,
                trace=handle.trace,
            )
            result = await self.driver.run(handle, start)
            assert isinstance(result, BroadcastFinished)
            span.set_attributes(
                {"reason": result.reason.value, "contacted": len(result.contacted)}
            )
            return BroadcastResult(
                result.reason,
                [key_peer(k) for k in result.contacted],
                [(key_peer(k), err) for k, err in result.errors],
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
                                info.peer_id, info.addrs, ROUTING_ADDR_TTL
                            )
                        self.notifier.publish(mh, info, store=False)

                handle = self._open("find-providers", span, timeout, _Observer(on_event, learn))
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

    # -- the API: values ---------------------------------------------------------------------

    async def put_value(
        self,
        key: bytes | str,
        value: bytes,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> BroadcastResult:
        """Validate the record (``InvalidRecordError`` if bad or worse than ours), store it,
        then PUT_VALUE it to the k closest peers."""
        k = keyfmt.record_key(key)
        self.validator.validate(k, value)
        now = time.time()
        existing = self.values.get(k, now)
        if (
            existing is not None
            and existing[0] != value
            and self._valid(k, existing[0])
            and self.validator.select(k, [value, existing[0]]) != 0
        ):
            raise InvalidRecordError("a better record is already stored under this key")
        self.values.put(k, value, now)
        message = put_value(k, make_record(k, value))
        return await self._broadcast(
            "DHT.PutValue", k, message, BroadcastStrategy.FOLLOW_UP, timeout, on_event
        )

    def _valid(self, key: bytes, value: bytes) -> bool:
        try:
            self.validator.validate(key, value)
        except InvalidRecordError:
            return False
        return True

    def _better(self, key: bytes, best: bytes | None, candidate: bytes) -> bool:
        if best is None:
            return True
        if candidate == best:
            return False
        try:
            return self.validator.select(key, [best, candidate]) == 1
        except InvalidRecordError:
            return False

    async def get_value(
        self,
        key: bytes | str,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        quorum: int = 0,
    ) -> bytes:
        """The best valid record under ``key``: local, then from a GET_VALUE walk (stopped
        once ``quorum`` peers returned the best; 0 asks the k closest). Peers that sent a
        worse record or none get the best one back (corrective PUT_VALUE, in the
        background). Raises :class:`NotFoundError`, or ``TimeoutError`` if nothing came
        before the deadline."""
        k = keyfmt.record_key(key)
        self.validator.validator_for(k)  # refuse namespaces nobody would store
        best: bytes | None = None
        local = self.values.get(k, time.time())
        if local is not None and self._valid(k, local[0]):
            best = local[0]
            emit(on_event, QueryEvent(QueryEventType.VALUE, self.peer_id, extra=str(len(best))))
        answers: dict[PeerID, bytes | None] = {}
        handle: QueryHandle | None = None

        def collect(frm: PeerID, response: object) -> None:
            nonlocal best
            if not isinstance(response, Message) or handle is None:
                return
            value: bytes | None = None
            if response.HasField("record") and response.record.key == k:
                candidate = response.record.value
                if self._valid(k, candidate):
                    value = candidate
                    emit(on_event, QueryEvent(QueryEventType.VALUE, frm, extra=str(len(value))))
                    if self._better(k, best, value):
                        best = value
            answers[frm] = value
            if quorum and sum(1 for v in answers.values() if v == best) >= quorum:
                self.driver.stop(handle)

        with self._root_span("DHT.GetValue", key=telemetry.key_attribute(k)) as span:
            handle = self._open("get-value", span, timeout, _Observer(on_event, collect))
            result = await self.driver.run(
                handle,
                StartMessageQuery(
                    handle.query_id, Key.from_preimage(k), get_value(k), trace=handle.trace
                ),
            )
            span.set_attributes({"reason": result.reason.value, "answers": len(answers)})
            if best is None:
                if result.reason is FinishReason.TIMEOUT:
                    raise TimeoutError("no record found before the deadline")
                raise NotFoundError("no valid record found")
            stale = tuple(peer_key(p) for p, v in answers.items() if v != best)
            if stale:
                self._spawn(self._correct(k, best, stale), "dht-corrective-put")
            return best

    async def _correct(self, key: bytes, value: bytes, peers: tuple[Key, ...]) -> None:
        """Give the best record to peers that had a worse one or none (Static broadcast)."""
        with contextlib.suppress(Exception):
            await self._broadcast(
                "DHT.PutValue", key, put_value(key, make_record(key, value)),
                BroadcastStrategy.STATIC, self.config.request_timeout * 2, None, seeds=peers,
            )

    # -- views -------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters for the daemon's status output and metrics."""
        driver = self.driver
        return {
            "routing_table_size": len(driver.coordinator.routing_table),
            "connections": len(self.host.connmgr),
            "queries_running": driver.queries_running,
            "requests_running": driver.requests_running,
            "requests_dropped": driver.coordinator.requests_dropped,
            "requests_sent": self.router.requests_sent,
            "requests_failed": self.router.requests_failed,
            "requests_cancelled": self.router.requests_cancelled,
        }


def _multiaddr(addr: str | Multiaddr) -> Multiaddr:
    return addr if isinstance(addr, Multiaddr) else Multiaddr.parse(addr)


__all__ = ["ROUTING_ADDR_TTL", "Node"]
