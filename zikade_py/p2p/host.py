"""The libp2p host: listens, dials, upgrades, dispatches streams, identifies and pings peers.

Everything above the wire (the DHT) talks to a :class:`Host`: it opens streams
with :meth:`Host.new_stream`, serves protocols with
:meth:`Host.set_stream_handler`, keeps connections with ``host.connmgr`` and
learns about peers from ``host.peerstore`` and :meth:`Host.events`. It knows
nothing of Kademlia.

The host is assembled from one class per idea (see ``host_parts``): ``host_inbound``
(listening, accepting), ``host_dial`` (dialing), ``host_conns`` (admitting and serving
connections), ``host_streams`` (inbound streams); this module adds the lifecycle,
protocol handlers, events, identify and ping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zikade_py.p2p import heap
from zikade_py.p2p.connection import Connection
from zikade_py.p2p.connmgr import ConnectionManager, InboundRateLimiter
from zikade_py.p2p.crypto import PrivateKey, PublicKey
from zikade_py.p2p.dial_guard import DialGuard
from zikade_py.p2p.dns import DnsResolver
from zikade_py.p2p.events import HostEvent
from zikade_py.p2p.host_config import HostConfig, limits_help
from zikade_py.p2p.host_dial import (
    DialError,
    DialTimeoutError,
    HostDialing,
    _Dial,
    describe_dial_error,
)
from zikade_py.p2p.host_inbound import HostListening
from zikade_py.p2p.host_parts import HostClosedError, StreamHandler, _ConnState, log
from zikade_py.p2p.identify import (
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    IdentifyInfo,
    IdentifyService,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import DEFAULT_QUEUE_LIMIT, NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import PeerStore
from zikade_py.p2p.ping import PING_PROTOCOL_ID, PingHandler, ping_stream
from zikade_py.p2p.rcmgr import ResourceManager

if TYPE_CHECKING:
    from zikade_py.p2p.quic.transport import QuicTransport

__all__ = [
    "PEERSTORE_PRUNE_INTERVAL",
    "DialError",
    "DialTimeoutError",
    "Host",
    "HostClosedError",
    "HostConfig",
    "StreamHandler",
    "describe_dial_error",
    "limits_help",
]

PEERSTORE_PRUNE_INTERVAL = 60.0
"""Seconds between sweeps of expired peerstore addresses."""


class Host(HostDialing, HostListening):
    """A libp2p host over TCP with Noise and Yamux (WIRE.md §0)."""

    def __init__(self, key: PrivateKey, config: HostConfig | None = None) -> None:
        self.config = config or HostConfig()
        self._key = key
        self.peer_id = PeerID.from_public_key(key.public_key)
        self.peerstore = PeerStore(
            max_peers=self.config.max_peerstore_peers, protected=self._is_connected
        )
        self.dial_guard = DialGuard.from_env()
        """``ZIKADE_DIAL_ALLOW``: the networks this host may dial (tests: loopback only)."""
        self.resolver = DnsResolver(self.config.dns_resolvers, guard=self.dial_guard)
        """Turns ``/dnsaddr`` and ``/dns*`` addresses into IP addresses before a dial."""
        self.resources = ResourceManager(
            self.config.limits, max_handshakes=self.config.max_pending_handshakes
        )
        """Reservations by scope (IP group, peer, connection, protocol, memory)."""
        self.connmgr: ConnectionManager[Connection] = ConnectionManager(
            max_connections=self.config.max_connections,
            idle_timeout=self.config.idle_timeout,
            redundant_grace=self.config.redundant_grace,
        )
        self._yamux = self.config.yamux_config()
        self._rate = InboundRateLimiter(
            self.config.inbound_per_ip_rate, self.config.inbound_per_ip_burst
        )
        self._handlers: dict[str, StreamHandler] = {}
        self._subscribers: list[NonBlockingQueue[HostEvent]] = []
        self._servers: list[asyncio.Server] = []
        self._listen_addrs: list[Multiaddr] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conn_tasks: dict[Connection, set[asyncio.Task[Any]]] = {}
        self._dials: dict[PeerID, _Dial] = {}
        self._states: dict[Connection, _ConnState] = {}
        self._running = False
        self._closing = False
        self.identify = IdentifyService(self)
        self._handlers[IDENTIFY_PROTOCOL_ID] = self.identify.handle_identify
        self._handlers[IDENTIFY_PUSH_PROTOCOL_ID] = self.identify.handle_push
        self._handlers[PING_PROTOCOL_ID] = PingHandler()
        self._quic_transport: QuicTransport | None = None

    @property
    def _quic(self) -> QuicTransport:
        """The QUIC transport, made at the first QUIC listen or dial: importing aioquic and
        its TLS stack costs ~0.1 s of CPU that a process dialing only TCP never needs."""
        if self._quic_transport is None:
            from zikade_py.p2p.quic.transport import QuicTransport

            self._quic_transport = QuicTransport(
                self._key,
                self.config.quic,
                on_connection=self._on_quic_connection,
                admit=self._admit_quic,
                handshake_timeout=self.config.handshake_timeout,
            )
        return self._quic_transport

    @property
    def public_key(self) -> PublicKey:
        """Our identity key, as sent in Noise and identify."""
        return self._key.public_key

    @property
    def private_key(self) -> PrivateKey:
        """Our identity key pair (for signing records)."""
        return self._key

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Concrete, dialable addresses we listen on (wildcards expanded), without ``/p2p``."""
        return list(self._listen_addrs)

    @property
    def protocols(self) -> list[str]:
        """Protocols we accept inbound streams for (what identify advertises)."""
        return list(self._handlers)

    async def start(self, listen_addrs: Sequence[Multiaddr] = ()) -> None:
        """Listen on each ``/ip4|ip6/<ip>/tcp/<port>`` (port 0 picks one) and start serving.

        An empty list makes a dial-only host. Raises ``ValueError`` for an
        address that is not a TCP IP address, ``OSError`` if binding fails.
        """
        if self._running or self._closing:
            raise HostClosedError("host already started")
        self._running = True
        heap.tune_thresholds()  # before the first socket read (see there)
        try:
            for addr in listen_addrs:
                await self._listen(addr)
        except BaseException:
            await self.close()
            raise
        self._spawn(self.connmgr.run(), name="connmgr")
        self._spawn(self._prune_peerstore(), name="peerstore-prune")
        self._spawn(heap.trim_periodically(), name="heap-trim")

    async def _prune_peerstore(self) -> None:
        """Forget expired addresses (and peers left with none) now and then."""
        while True:
            await asyncio.sleep(PEERSTORE_PRUNE_INTERVAL)
            try:
                self.peerstore.prune(keep=self.connmgr.peers())
            except Exception:  # a bug: say so, and keep sweeping
                log.exception("peerstore prune failed")

    async def close(self) -> None:
        """Stop listening, close every connection, cancel every task this host started."""
        if self._closing:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        dials = [d.task for d in self._dials.values()]
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        await self.identify.close()
        conns = list(self.connmgr.connections())
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        if self._quic_transport is not None:
            await self._quic_transport.close()
        tasks = list(self._tasks) + [t for ts in self._conn_tasks.values() for t in ts]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()
        self._servers.clear()
        for queue in self._subscribers:
            queue.close()
        self._subscribers.clear()
        self._running = False

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def events(self, limit: int = DEFAULT_QUEUE_LIMIT) -> NonBlockingQueue[HostEvent]:
        """Subscribe to peer events; close the queue to unsubscribe. A slow reader loses
        events (counted in ``queue.dropped``) rather than slowing the host."""
        queue: NonBlockingQueue[HostEvent] = NonBlockingQueue(limit, name="host_events")
        if self._closing:
            queue.close()
        else:
            self._subscribers.append(queue)
        return queue

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``; connected peers learn of it through identify push."""
        self._handlers[protocol_id] = handler
        if self.is_running:
            self.identify.schedule_push()

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop serving ``protocol_id`` (and tell connected peers)."""
        if self._handlers.pop(protocol_id, None) is not None and self.is_running:
            self.identify.schedule_push()

    async def identify_peer(self, peer: PeerID, *, timeout: float | None = None) -> IdentifyInfo:
        """Identify of ``peer`` over its connection (waits for the exchange run at connect)."""
        conn = await self.connect(peer, timeout=timeout)
        return await self.identify.identify(conn)

    async def ping(
        self, peer: PeerID, count: int = 1, *, timeout: float | None = None
    ) -> list[float]:
        """``count`` libp2p pings on one stream; round-trip times in seconds."""
        stream = await self.new_stream(peer, [PING_PROTOCOL_ID], timeout=timeout)
        return [rtt async for rtt in ping_stream(stream, count)]
