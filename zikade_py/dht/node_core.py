"""The Node's core: its parts, their lifecycle, and the plumbing every API call shares.

:class:`NodeCore` owns the host, the stores, the inbound server (server mode),
the router, the coordinator and its asyncio :class:`~zikade_py.dht.driver.Driver`.
It is what the KadServer reads (:class:`~zikade_py.dht.handlers.RoutingView`) and
what the driver tells about routing changes
(:class:`~zikade_py.dht.driver.DriverListener`). The API calls live in
:mod:`.node_peers`, :mod:`.node_content` and :mod:`.node_values`, built on the
helpers here: a root span per call (:meth:`NodeCore._root_span`), a query handle
under its deadline and session (:meth:`NodeCore._open`) and a store to the k
closest peers (:meth:`NodeCore._broadcast`).

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
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

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
    NodeUnreachable,
    StartBroadcast,
)
from zikade_py.core.key import Key
from zikade_py.core.sweep_events import SweepOutput
from zikade_py.dht.config import (
    DATASTORE_FILENAME,
    IDENTITY_FILENAME,
    BroadcastResult,
    NodeClosedError,
    NodeConfig,
)
from zikade_py.dht.driver import Driver, QueryHandle, key_peer, peer_key
from zikade_py.dht.handlers import KadServer
from zikade_py.dht.messages import Message, MessageType, PeerInfo
from zikade_py.dht.notifier import Notifier
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.query_events import EventCallback, EventObserver, ResponseHook
from zikade_py.dht.records import NamespacedValidator, amino_validator
from zikade_py.dht.reprovide import SweepReprovider
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
from zikade_py.p2p.autonat_service import AutoNAT
from zikade_py.p2p.autonat_status import Reachability
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import HostEvent, PeerIdentified, ProtocolsUpdated
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.keystore import load_or_create_identity
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID

log = logging.getLogger(__name__)

ROUTING_ADDR_TTL: Final = 24 * 3600.0
"""Addresses of routing-table peers are kept this long (in memory and on disk)."""

PROVIDER_PEER_ADDR_TTL: Final = 30 * 60.0
"""Addresses of a peer that sent us an ADD_PROVIDER, in the host's address book
(go ``peerstore.ProviderAddrTTL``, 30 min); the provider store serves them 24 h itself."""


class NodeCore:
    """The parts of a node and their lifecycle; the API mixins build on it."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.config = config or NodeConfig()
        self.config.validate()
        self.mode = self.config.mode
        self._host: Host | None = None
        self._driver: Driver | None = None
        self._router: Router | None = None
        self._server: KadServer | None = None
        self._autonat: AutoNAT | None = None
        self.mode_listeners: list[Callable[[str, str], None]] = []
        """Called with ``(reachability, mode)`` whenever either changes (the daemon prints)."""
        self._datastore: SqliteDatastore | None = None
        self._events: NonBlockingQueue[HostEvent] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bootstrap_waiters: list[asyncio.Future[BootstrapFinished]] = []
        self.provider_republisher: Republisher | None = None
        """Re-announces the content we provide every 22 h (``None`` without ``republish``)."""
        self.value_republisher: Republisher | None = None
        """Puts the records we put again every 22 h (``None`` without ``republish``)."""
        self.reprovider: SweepReprovider | None = None
        """The reprovide sweep's keys and schedule (``reprovide="sweep"``, the default)."""
        self._started = False
        self._closed = False
        self.validator: NamespacedValidator = amino_validator()
        limits = self.config.store_limits
        self.providers: ProviderStore = MemoryProviderStore(limits=limits)
        self.values: ValueStore = MemoryValueStore(limits)
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
            # Opening scans the tables once (usage per sender): off the event loop.
            self._datastore = await asyncio.to_thread(
                SqliteDatastore, repo / DATASTORE_FILENAME, limits=cfg.store_limits
            )
            self.providers = self._datastore.providers
            self.values = self._datastore.values
            self.peer_book = self._datastore.peers
            self.notifier = Notifier(self.providers)
        host = self._host = Host(key or PrivateKey.generate(), cfg.host or HostConfig())
        self._server = KadServer(
            host=host,
            view=self,
            providers=self.providers,
            values=self.values,
            validator=self.validator,
            clock=time.time,
        )
        if self.mode == "server":
            self._server.attach()  # before listening: the first identify already says kad
        elif self.mode == "auto":
            # a client until AutoNAT says otherwise; public addresses only once confirmed
            host.identify.addresses.require_confirmation = True
        self._events = host.events()
        await host.start([_multiaddr(a) for a in cfg.listen_addrs])
        now = time.monotonic()
        coordinator = Coordinator(peer_key(host.peer_id), cfg.core_config(), now=now)
        self._router = Router(host, request_timeout=cfg.request_timeout)
        self._driver = Driver(coordinator, self._router, self)
        await self._load_peer_book()
        self._spawn(self._watch_host(self._events), "dht-host-events")
        self._spawn(self._collect_garbage(), "dht-store-gc")
        self._autonat = AutoNAT(host, cfg.autonat)
        self._autonat.subscribe(self._on_reachability)
        self._autonat.start()

    async def close(self) -> None:
        """Stop everything the node started: queries, requests, timers, tasks, streams,
        connections and the datastore."""
        if self._closed:
            return
        self._closed = True
        if self.reprovider is not None:
            await self.reprovider.close()
        for republisher in (self.provider_republisher, self.value_republisher):
            if republisher is not None:
                await republisher.close()
        if self._events is not None:
            self._events.close()
        if self._autonat is not None:
            await self._autonat.close()
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
            # Waits for queued writes to be committed: off the event loop.
            await asyncio.to_thread(self._datastore.close)

    async def __aenter__(self) -> Self:
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
        """The inbound kad server (``None`` while we are a client)."""
        server = self._server
        return server if server is not None and server.attached else None

    @property
    def autonat(self) -> AutoNAT:
        """Our reachability as AutoNAT sees it, and the AutoNAT server."""
        if self._autonat is None:
            raise NodeClosedError("node not started")
        return self._autonat

    @property
    def reachability(self) -> str:
        """``unknown``, ``public`` or ``private`` (AutoNAT)."""
        return self._autonat.status.value if self._autonat is not None else "unknown"

    @property
    def effective_mode(self) -> str:
        """``server`` while we serve ``/ipfs/kad/1.0.0``, else ``client`` (in auto mode this
        follows :attr:`reachability`)."""
        return "server" if self.server is not None else "client"

    def _on_reachability(self, status: Reachability) -> None:
        """AutoNAT changed its mind: in auto mode, serve the DHT exactly while public.
        Attaching or detaching the server changes our protocols, and the host pushes the
        new identify to every peer, so their routing tables add or drop us."""
        server = self._server
        if self.mode == "auto" and server is not None and not self._closed:
            if status is Reachability.PUBLIC:
                server.attach()
            else:
                server.detach()
        log.info("reachability %s, mode %s", status.value, self.effective_mode)
        for listener in list(self.mode_listeners):
            try:
                listener(status.value, self.effective_mode)
            except Exception:
                log.exception("mode listener failed")

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
        """Our id with the addresses we announce: listen and confirmed observed ones, public
        ones only once confirmed in auto mode (p2p/localaddrs.py). Answers to a peer are
        filtered again by its scope."""
        return PeerInfo(self.peer_id, tuple(self.host.identify.addresses.announce()))

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
            self._host.peerstore.add_addrs(
                provider.peer_id, provider.addrs, PROVIDER_PEER_ADDR_TTL
            )
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
            self.peer_book.save_later(peer, addrs, ROUTING_ADDR_TTL, time.time())
        except Exception as exc:
            log.warning("cannot save routing peer %s: %s", peer, exc)

    def on_routing_removed(self, node: Key) -> None:
        """Forget a peer that left the table from the peer store."""
        try:
            self.peer_book.forget_later(key_peer(node))
        except Exception as exc:
            log.warning("cannot forget routing peer: %s", exc)

    def on_bootstrap_finished(self, event: BootstrapFinished) -> None:
        """Wake the :meth:`bootstrap` calls waiting for this walk."""
        waiters, self._bootstrap_waiters = self._bootstrap_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(event)

    def on_sweep(self, out: SweepOutput) -> None:
        """The reprovide sweep wants a region's keys or its progress kept."""
        if self.reprovider is not None:
            self.reprovider.on_output(out)

    # -- host events -------------------------------------------------------------------------

    async def _watch_host(self, events: NonBlockingQueue[HostEvent]) -> None:
        """Identified kad servers with addresses become routing candidates (WIRE.md §10 pt 15)."""
        book = self.host.peerstore
        driver = self._driver
        if driver is None or self._closed:  # closed before this task first ran
            return
        async for event in events:
            match event:
                case PeerIdentified(peer=peer, protocols=protocols, listen_addrs=addrs):
                    dialable = [a for a in addrs if a.tcp_endpoint() or a.quic_endpoint()]
                    if KAD_PROTOCOL in protocols and dialable:
                        driver.notify(AddCandidates((peer_key(peer),)))
                    elif KAD_PROTOCOL not in protocols:
                        self._stopped_dht(peer)
                case ProtocolsUpdated(peer=peer, protocols=protocols):
                    if KAD_PROTOCOL in protocols and book.addrs(peer):
                        driver.notify(AddCandidates((peer_key(peer),)))
                    elif KAD_PROTOCOL not in protocols:
                        self._stopped_dht(peer)
                case _:
                    pass

    def _stopped_dht(self, peer: PeerID) -> None:
        """``peer`` no longer lists the kad protocol (it became a client, go
        ``peerStoppedDHT``): if it is in the table, check it now; the check is refused
        and the table drops it."""
        if self._driver is None or self._closed:
            return
        node = peer_key(peer)
        if node in self._driver.coordinator.routing_table:
            self._driver.notify(NodeUnreachable(node))

    async def _collect_garbage(self) -> None:
        """Every ``gc_interval``: delete expired provider and value records in batches of
        ``gc_batch`` (each its own short write, off the event loop), until none is left."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.gc_interval)
            try:
                await self.collect_garbage()
            except Exception:
                log.exception("collecting expired records failed")

    async def collect_garbage(self) -> int:
        """One collection of expired provider and value records, in bounded batches; how
        many were deleted. The node runs it every ``gc_interval``."""
        batch = self.config.gc_batch
        removed = 0
        for gc in (self.providers.gc_async, self.values.gc_async):
            while True:
                n = await gc(time.time(), limit=batch)
                removed += n
                if n < batch:
                    break
                await asyncio.sleep(0)
        return removed

    async def _load_peer_book(self) -> None:
        for peer, addrs in await self.peer_book.entries_async(time.time()):
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

    def _observer(
        self, on_event: EventCallback | None, hook: ResponseHook | None = None
    ) -> EventObserver:
        """The observer of one call's query: its events for ``on_event``, answers to ``hook``."""
        return EventObserver(on_event, hook, self_id=self.peer_id)

    def _open(
        self, kind: str, parent: Span, timeout: float | None, observer: EventObserver | None
    ) -> QueryHandle:
        """A handle for a query of this call: deadline from ``timeout``, the current session."""
        return self.driver.open(
            kind,
            parent,
            deadline=self._deadline(timeout),
            observer=observer,
            session=current_session(),
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
        """Store ``message`` at the peers closest to ``key`` (or at ``seeds``, STATIC)."""
        with self._root_span(
            name, key=telemetry.key_attribute(key), strategy=strategy.value
        ) as span:
            handle = self._open(name, span, timeout, self._observer(on_event))
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


def _multiaddr(addr: str | Multiaddr) -> Multiaddr:
    return addr if isinstance(addr, Multiaddr) else Multiaddr.parse(addr)


__all__ = ["PROVIDER_PEER_ADDR_TTL", "ROUTING_ADDR_TTL", "NodeCore"]
