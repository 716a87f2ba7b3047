"""The libp2p host: listens, dials, upgrades, dispatches streams, identifies and pings peers.

Everything above the wire (the DHT) talks to a :class:`Host`: it opens streams
with :meth:`Host.new_stream`, serves protocols with
:meth:`Host.set_stream_handler`, keeps connections with ``host.connmgr`` and
learns about peers from ``host.peerstore`` and :meth:`Host.events`. It knows
nothing of Kademlia.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zikade_py.p2p import heap
from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.connection import (
    Connection,
    MuxedStream,
    Stream,
    upgrade_inbound,
    upgrade_outbound,
)
from zikade_py.p2p.connmgr import ConnectionLimitError, ConnectionManager, InboundRateLimiter
from zikade_py.p2p.crypto import PrivateKey, PublicKey
from zikade_py.p2p.dial_guard import DialGuard
from zikade_py.p2p.dns import DnsResolver
from zikade_py.p2p.events import Direction, HostEvent, PeerConnected, PeerDisconnected
from zikade_py.p2p.identify import (
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    IdentifyInfo,
    IdentifyService,
)
from zikade_py.p2p.io import BufferedReader, TcpStream
from zikade_py.p2p.localaddrs import dial_source
from zikade_py.p2p.mss import handle_negotiation
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import DEFAULT_QUEUE_LIMIT, NonBlockingQueue
from zikade_py.p2p.netif import interface_addresses
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import (
    CONNECTED_ADDR_TTL,
    RECENTLY_CONNECTED_ADDR_TTL,
    PeerStore,
)
from zikade_py.p2p.ping import PING_PROTOCOL_ID, PingHandler, ping_stream
from zikade_py.p2p.quic.config import QuicConfig
from zikade_py.p2p.quic.dial_order import FALLBACK_DELAY, race, split
from zikade_py.p2p.rcmgr import (
    ConnectionScope,
    InboundStream,
    ResourceLimitError,
    ResourceLimits,
    ResourceManager,
)
from zikade_py.p2p.yamux import YamuxConfig

if TYPE_CHECKING:
    from zikade_py.p2p.quic.transport import QuicTransport

log = logging.getLogger(__name__)

PEERSTORE_PRUNE_INTERVAL = 60.0
"""Seconds between sweeps of expired peerstore addresses."""

StreamHandler = Callable[[Stream], Awaitable[None]]
"""Serves one inbound stream of a protocol; the stream is reset if it raises."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Limits and timeouts of a host. The defaults suit a DHT server on the public network."""

    max_connections: int = 400
    """Open connections at most; beyond it idle unheld ones are trimmed, else new ones refused."""
    max_inbound_connections: int = 300
    """Of those, connections peers dialed (the rest stay free for our own dials)."""
    max_streams_per_connection: int = 1000
    """Yamux streams per connection, both directions together (js-yamux allows 1000 each)."""
    inbound_per_ip_rate: float = 5.0
    """New inbound connections per second from one IP address (token bucket rate)."""
    inbound_per_ip_burst: int = 20
    """... and the bucket size: that many may arrive at once."""
    max_pending_handshakes: int = 64
    """Inbound connections being upgraded at once; more are dropped until some finish."""
    dial_timeout: float = 10.0
    """Default budget of :meth:`Host.connect` (all addresses, TCP and upgrade)."""
    handshake_timeout: float = 10.0
    """mss + Noise + mss + yamux start on one connection."""
    negotiation_timeout: float = 10.0
    """multistream-select on one stream (inbound and outbound)."""
    idle_timeout: float = 60.0
    """An unheld connection without streams closes after this many seconds."""
    keepalive_interval: float | None = 30.0
    """Yamux pings that detect dead connections (go and js use 30 s)."""
    ping_timeout: float = 10.0
    """A keep-alive ping unanswered for this long closes the connection."""
    redundant_grace: float = 1.0
    """A second connection to a peer (both dialed at once) is closed once it has carried no
    stream for this long; both sides pick the same survivor (see ``Host._settle``)."""
    stream_close_timeout: float = 10.0
    """After a handler returns, its half-closed stream waits this long for the peer's FIN,
    then is reset (a stream the peer never closes would keep its connection busy)."""
    trim_grace: float = 2.0
    """A connection this young is not trimmed to make room for another (it has had no
    chance to open its first stream yet), unless its IP group is crowded and the newcomer's
    is less so (a flood arriving faster than this would shut every newcomer out)."""
    max_unacked_inbound: int = 256
    """Inbound streams waiting un-ACKed while the connection's stream slots are full
    (go-yamux's accept backlog); further ones are reset."""
    max_peerstore_peers: int = 20_000
    """Peers the address book keeps; beyond it the oldest without a connection go."""
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    """Which networks count as public or private (addrscope.py): what identify announces
    to whom and keeps from whom; loopback test networks name 127.0.0.0/8 here."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    quic: QuicConfig = field(default_factory=QuicConfig)
    """QUIC idle timeout, keep-alive, write high-water mark, accept backlog (quic/session.py)."""
    quic_fallback_delay: float = FALLBACK_DELAY
    """When a peer offers QUIC and TCP, TCP starts after QUIC had this long (quic/dial_order.py)."""
    """Per IP group, peer, connection, protocol and memory limits (rcmgr.py)."""
    dns_resolvers: Mapping[str, str] = field(default_factory=dict, hash=False)
    """DNS servers by domain suffix (``"."``: every name) as ``<ip>[:<port>]`` (Kubo's
    ``DNS.Resolvers``); empty: the system's. ``ZIKADE_DNS_RESOLVER`` overrides (p2p/dns.py)."""

    def yamux_config(self) -> YamuxConfig:
        """The yamux settings these limits imply."""
        return YamuxConfig(
            max_streams=self.max_streams_per_connection,
            max_unacked_inbound=self.max_unacked_inbound,
            keepalive_interval=self.keepalive_interval,
            ping_timeout=self.ping_timeout,
        )


def limits_help(config: HostConfig | None = None) -> str:
    """The connection, stream and memory limits of ``config`` (default: the defaults) as
    lines for a ``--help`` text (``zikade daemon --help``), so an operator sees them."""
    c = config or HostConfig()
    lim = c.limits
    mib = 1 << 20
    kad = ", ".join(f"{p} {n}" for p, n in lim.protocol_streams_per_connection)
    return "\n".join(
        [
            "\b",
            "Limits (node config: NodeConfig.host, HostConfig / ResourceLimits):",
            f"  connections: {c.max_connections} ({c.max_inbound_connections} inbound), "
            f"{lim.connections_per_peer} per peer, {lim.connections_per_ip_group} inbound "
            f"per IP group (IPv4 /{lim.ipv4_prefix}, IPv6 /{lim.ipv6_prefix})",
            f"  handshakes: {c.max_pending_handshakes} at once, "
            f"{lim.handshakes_per_ip_group} per IP group, {c.handshake_timeout:g} s each; "
            f"{c.inbound_per_ip_rate:g}/s per IP group (burst {c.inbound_per_ip_burst})",
            f"  inbound streams: {lim.inbound_streams_per_connection} per connection "
            f"(+{c.max_unacked_inbound} waiting), {lim.inbound_streams_per_peer} per peer, "
            f"{lim.inbound_streams} in total; per protocol and connection "
            f"{lim.inbound_streams_per_protocol_per_connection} ({kad}); "
            f"outbound streams: {lim.outbound_streams_per_peer} per peer",
            f"  memory for received data: {lim.connection_memory // mib} MiB per connection, "
            f"{lim.host_memory // mib} MiB in total; data dropped unread: "
            f"{lim.discard_rate // mib} MiB/s per connection (burst {lim.discard_burst // mib} "
            f"MiB), then reading pauses; {lim.bad_streams_per_connection} failed stream "
            f"negotiations per {lim.bad_stream_interval:g} s, then the connection closes",
            f"  half-closed streams reset after {c.stream_close_timeout:g} s; "
            f"address book: {c.max_peerstore_peers} peers",
            f"  exempt from per-IP limits: {', '.join(lim.allowlist) or 'nothing'}",
        ]
    )


class DialError(Exception):
    """No address of the peer led to an upgraded connection (each failure is listed)."""

    def __init__(self, message: str, errors: Sequence[tuple[Multiaddr, Exception]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)
        """Each address tried and why it failed (``PeerIDMismatchError``, ``OSError``, ...)."""


class DialTimeoutError(DialError, TimeoutError):
    """The caller's dial budget ran out (a ``TimeoutError`` too, for those who catch that)."""


@dataclass(slots=True, eq=False)
class _ConnState:
    """What the host keeps per connection: its resource scope, and an event set whenever
    one of its inbound stream slots frees up."""

    scope: ConnectionScope
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)


class HostClosedError(Exception):
    """The host is not running (never started, or closed): local misuse."""


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Say when a task of the host's own died of an exception (nobody awaits them)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("host task %s failed: %r", task.get_name(), exc, exc_info=exc)


def _seconds(value: float) -> str:
    """A duration for an error message: ``5 s``, ``0.25 s``."""
    return f"{value:.3g} s"


def describe_dial_error(exc: BaseException) -> str:
    """What went wrong on one address, in words: never empty (``str(TimeoutError())`` is)."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) and exc.errno:
        # asyncio's text is "Connect call failed (addr)"; the address is printed already
        reason = os.strerror(exc.errno) if exc.errno > 0 else (exc.strerror or "")
        if reason:
            return reason[0].lower() + reason[1:]
    return str(exc) or type(exc).__name__


def _name_peer(addr: Multiaddr, peer: PeerID) -> Multiaddr:
    """``/dnsaddr/<name>`` as ``/dnsaddr/<name>/p2p/<peer>`` (other addresses unchanged)."""
    if addr.components[0].name == "dnsaddr" and addr.peer_id() is None:
        return addr.with_peer_id(peer)
    return addr


@dataclass(slots=True, eq=False)
class _Dial:
    """A dial under way, shared by every caller of :meth:`Host.connect` for its peer; it
    runs while at least one of them waits (``waiters``) and is cancelled when the last leaves."""

    task: asyncio.Task[Connection]
    waiters: int = 0


class Host:
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
    def _pending_handshakes(self) -> int:
        return self.resources.stats()["handshakes"]

    def _crowd(self, conn: Connection) -> int:
        state = self._states.get(conn)
        return self.resources.crowd(state.scope) if state is not None else 0

    def _is_connected(self, peer: PeerID) -> bool:
        return bool(self.connmgr.connections(peer))

    # --- identity and addresses ------------------------------------------------------------

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

    @property
    def is_running(self) -> bool:
        """Between :meth:`start` and :meth:`close`."""
        return self._running and not self._closing

    # --- lifecycle -------------------------------------------------------------------------

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

    async def _listen(self, addr: Multiaddr) -> None:
        if addr.quic_endpoint() is not None:
            for bound in await self._quic.listen(addr):
                if bound not in self._listen_addrs:
                    self._listen_addrs.append(bound)
            return
        endpoint = addr.tcp_endpoint()
        ip = addr.ip_address()
        if endpoint is None or ip is None:
            raise ValueError(
                f"cannot listen on {addr}: need /ip4|ip6/<ip>/tcp/<port> or .../udp/<port>/quic-v1"
            )
        server = await asyncio.start_server(self._on_accept, str(ip), endpoint[1])
        self._servers.append(server)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            hosts = interface_addresses(ip.version) if ip.is_unspecified else [host]
            for h in hosts:
                bound = Multiaddr.from_tcp(h, port)
                if bound not in self._listen_addrs:
                    self._listen_addrs.append(bound)

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

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str, conn: Connection | None = None
    ) -> asyncio.Task[Any]:
        """Start a task of the host's own (not awaited by any caller) in an empty context, so
        handlers do not inherit the span that was current when the host started or a dial
        began: every inbound request starts its own trace."""
        task = asyncio.get_running_loop().create_task(
            coro, name=name, context=contextvars.Context()
        )
        group = self._tasks if conn is None else self._conn_tasks.setdefault(conn, set())
        group.add(task)
        task.add_done_callback(group.discard)
        task.add_done_callback(_log_failure)
        return task

    # --- events ----------------------------------------------------------------------------

    def events(self, limit: int = DEFAULT_QUEUE_LIMIT) -> NonBlockingQueue[HostEvent]:
        """Subscribe to peer events; close the queue to unsubscribe. A slow reader loses
        events (counted in ``queue.dropped``) rather than slowing the host."""
        queue: NonBlockingQueue[HostEvent] = NonBlockingQueue(limit, name="host_events")
        if self._closing:
            queue.close()
        else:
            self._subscribers.append(queue)
        return queue

    def publish(self, event: HostEvent) -> None:
        """Hand ``event`` to every open subscription (never waits)."""
        if any(q.closed for q in self._subscribers):
            self._subscribers = [q for q in self._subscribers if not q.closed]
        for queue in self._subscribers:
            queue.push(event)

    # --- protocol handlers -----------------------------------------------------------------

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``; connected peers learn of it through identify push."""
        self._handlers[protocol_id] = handler
        if self.is_running:
            self.identify.schedule_push()

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop serving ``protocol_id`` (and tell connected peers)."""
        if self._handlers.pop(protocol_id, None) is not None and self.is_running:
            self.identify.schedule_push()

    # --- inbound ---------------------------------------------------------------------------

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp = TcpStream(reader, writer)
        remote = tcp.remote_address
        if self._closing or remote is None:
            tcp.abort()
            return
        group = self.resources.group(remote[0])
        if not self._rate.allow(group or remote[0], time.monotonic()):
            log.debug("inbound rate limit for %s", remote[0])
            tcp.abort()
            return
        if not self.connmgr.has_room() and self.connmgr.trim_candidate() is None:
            tcp.abort()  # full of held or busy connections: spare us the handshake
            return
        try:
            handshake = self.resources.open_handshake(remote[0])
        except ResourceLimitError as exc:
            log.debug("inbound connection from %s refused: %s", remote[0], exc)
            tcp.abort()
            return
        try:
            self._spawn(self._upgrade_inbound(tcp, handshake.release), name="upgrade-inbound")
        except BaseException:
            handshake.release()
            tcp.abort()
            raise

    def _admit_quic(self, ip: str) -> Callable[[], None] | None:
        """The TCP accept checks for a new inbound QUIC connection from ``ip``: rate, room,
        a handshake slot (whose release is returned), else None (its Initial is dropped)."""
        if self._closing:
            return None
        group = self.resources.group(ip)
        if not self._rate.allow(group or ip, time.monotonic()):
            return None
        if not self.connmgr.has_room() and self.connmgr.trim_candidate() is None:
            return None
        try:
            return self.resources.open_handshake(ip).release
        except ResourceLimitError as exc:
            log.debug("inbound QUIC connection from %s refused: %s", ip, exc)
            return None

    def _on_quic_connection(self, conn: Connection) -> None:
        self._spawn(self._add_inbound(conn), name="quic-inbound")

    async def _add_inbound(self, conn: Connection) -> None:
        try:
            await self._add_connection(conn)
        except ConnectionLimitError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)

    async def _upgrade_inbound(self, tcp: TcpStream, done: Callable[[], None]) -> None:
        try:
            conn = await upgrade_inbound(
                tcp, self._key, yamux_config=self._yamux, timeout=self.config.handshake_timeout
            )
        except Exception as exc:  # whatever a broken peer caused; the socket is closed
            log.debug("inbound upgrade from %s failed: %r", tcp.remote_address, exc)
            return
        finally:
            done()
        try:
            await self._add_connection(conn)
        except ConnectionLimitError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)

    async def _make_room(self, direction: Direction, crowd: int = 0) -> None:
        """Make room for one more connection in ``direction`` by closing the least recently
        used unheld idle one (of that direction when only the inbound share is full), the way
        a disconnect does: subscribers hear of it and the peer's addresses lose their
        permanence. ``crowd``: connections of the newcomer's IP group, itself included (the
        fairness rules of ``ConnectionManager.trim_candidate``). Raises
        :class:`ConnectionLimitError` if nothing can go."""
        for _ in range(self.config.max_connections + 1):  # bounded: each round removes one
            total = len(self.connmgr)
            total_full = total >= self.config.max_connections
            cap = self.config.max_inbound_connections
            inbound_full = (  # counted only when it could matter (a walk over every connection)
                direction is Direction.INBOUND
                and total >= cap
                and sum(1 for c in self.connmgr if c.direction is Direction.INBOUND) >= cap
            )
            if not total_full and not inbound_full:
                return
            only = Direction.INBOUND if inbound_full and not total_full else None
            old = time.monotonic() - self.config.trim_grace

            def trimmable(c: Connection, only: Direction | None = only) -> bool:
                return only is None or c.direction is only

            def young(c: Connection, old: float = old) -> bool:
                return c.opened_at > old

            victim = self.connmgr.trim_candidate(
                trimmable, self._crowd, incoming=crowd, young=young
            )
            if victim is None:
                kind = "inbound connections" if only else "connections"
                raise ConnectionLimitError(f"{len(self.connmgr)} {kind}, all held or busy")
            await self._remove_connection(victim)
        raise ConnectionLimitError("no room")  # pragma: no cover

    async def _add_connection(self, conn: Connection) -> None:
        """Register an authenticated connection: within the limits (trimming idle ones if
        needed), else it is closed and :class:`ConnectionLimitError` raised."""
        if self._closing:
            await conn.close()
            return
        peer = conn.remote_peer
        ip = None
        if conn.direction is Direction.INBOUND and conn.remote_addr is not None:
            remote_ip = conn.remote_addr.ip_address()
            ip = str(remote_ip) if remote_ip is not None else None
        try:
            scope = self.resources.open_connection(peer, ip)
        except ResourceLimitError as exc:
            await conn.close()
            raise ConnectionLimitError(str(exc)) from None
        try:
            await self._make_room(conn.direction, self.resources.crowd(scope))
        except BaseException:
            scope.close()
            await conn.close()
            raise
        if self._closing or conn.is_closed:
            scope.close()
            await conn.close()
            if self._closing:
                return
            raise ConnectionLimitError("connection closed while making room")
        conn.session.memory = scope
        conn.scope = scope
        self._states[conn] = _ConnState(scope)
        self.connmgr.add(conn)
        self.peerstore.set_public_key(peer, conn.remote_public_key)
        if conn.direction is Direction.OUTBOUND and conn.remote_addr is not None:
            self.peerstore.add_addrs(peer, [conn.remote_addr], CONNECTED_ADDR_TTL)
        self._spawn(self._serve(conn), name="serve-connection", conn=conn)
        if self._settle(conn):
            return  # redundant: serves the peer's streams until it closes, nothing more
        self.identify.identify(conn)
        self.publish(PeerConnected(peer, conn.remote_addr, conn.direction))

    def _settle(self, conn: Connection) -> bool:
        """Retire the redundant one when ``conn`` duplicates a connection in the other
        direction; return whether that is ``conn`` itself.

        Both sides keep the connection dialed by the peer with the smaller peer id
        multihash, so they agree without talking. Nothing in flight breaks: the retired
        connection finishes its streams and closes after ``redundant_grace`` of idleness.
        Duplicates in the same direction are left to the idle timeout.
        """
        ours = self.peer_id.multihash < conn.remote_peer.multihash
        winning = Direction.OUTBOUND if ours else Direction.INBOUND
        others = [
            c
            for c in self.connmgr.connections(conn.remote_peer)
            if c is not conn and not c.is_closed and c.direction is not conn.direction
        ]
        if not others:
            return False
        if conn.direction is winning:
            for other in others:
                self.connmgr.retire(other)
            return False
        self.connmgr.retire(conn)
        return True

    async def _serve(self, conn: Connection) -> None:
        """Accept the peer's streams until the session ends, then clean up.

        A stream is accepted (and ACKed) only when the connection has a free inbound stream
        slot; until then the peer's new streams wait in yamux's backlog, and beyond
        ``max_unacked_inbound`` they are reset."""
        state = self._states.get(conn)
        try:
            if state is None:
                return
            while True:
                while not state.scope.has_stream_slot():
                    state.slot_freed.clear()
                    await state.slot_freed.wait()
                inner = await conn.accept_stream()
                try:
                    slot = state.scope.open_stream()
                except ResourceLimitError as exc:
                    log.debug("inbound stream from %s refused: %s", conn.remote_peer, exc)
                    await inner.reset()
                    continue
                self._spawn(self._handle_stream(conn, inner, slot), name="stream", conn=conn)
        except Exception:  # SessionClosedError: the connection ended (any reason)
            pass
        finally:
            await self._remove_connection(conn)

    async def _remove_connection(self, conn: Connection) -> None:
        await conn.close()
        state = self._states.pop(conn, None)
        if state is not None:
            state.scope.close()
            state.slot_freed.set()
        self.identify.forget(conn)
        tasks = [t for t in self._conn_tasks.pop(conn, ()) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if self.connmgr.remove(conn):
            self.peerstore.set_addrs_ttl(conn.remote_peer, RECENTLY_CONNECTED_ADDR_TTL)
            self.publish(PeerDisconnected(conn.remote_peer))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle_stream(
        self, conn: Connection, inner: MuxedStream, slot: InboundStream
    ) -> None:
        """Negotiate, run the handler, then close the stream fully (see ``_finish_stream``);
        the stream's slot is given back on every path."""
        try:
            await self._run_stream(conn, inner, slot)
        finally:
            slot.release()
            state = self._states.get(conn)
            if state is not None:
                state.slot_freed.set()

    async def _run_stream(self, conn: Connection, inner: MuxedStream, slot: InboundStream) -> None:
        try:
            async with asyncio.timeout(self.config.negotiation_timeout):
                protocol, reader = await handle_negotiation(
                    inner, self._handlers.__contains__, reader=BufferedReader(inner)
                )
            slot.set_protocol(protocol)
        except Exception as exc:
            log.debug("stream negotiation with %s failed: %r", conn.remote_peer, exc)
            with contextlib.suppress(Exception):
                await inner.reset()
            if not isinstance(exc, ResourceLimitError):
                self._note_bad_stream(conn)
            return
        handler = self._handlers.get(protocol)
        stream = Stream(inner, reader, protocol, conn)
        if handler is None:
            await stream.reset()
            return
        try:
            await handler(stream)
        except Exception as exc:
            log.debug("%s handler for %s failed: %r", protocol, conn.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()
        conn.lingering += 1
        try:
            await self._finish_stream(inner)
        finally:
            conn.lingering -= 1

    def _note_bad_stream(self, conn: Connection) -> None:
        """A stream the peer opened failed its negotiation: past the connection's allowance
        (``bad_streams_per_connection``) the connection is closed."""
        state = self._states.get(conn)
        if state is None or state.scope.note_bad_stream(time.monotonic()):
            return
        log.debug("closing the connection of %s: too many failed streams", conn.remote_peer)
        self._spawn(conn.close(), name="close-misbehaving")

    async def _finish_stream(self, inner: MuxedStream) -> None:
        """After the handler: nothing more is read, so incoming data is dropped; the peer gets
        ``stream_close_timeout`` to send its FIN, then the stream is reset."""
        inner.discard_incoming()
        if inner.is_fully_closed:
            return
        try:
            async with asyncio.timeout(self.config.stream_close_timeout):
                await inner.wait_remote_closed()
        except TimeoutError:
            with contextlib.suppress(Exception):
                await inner.reset()

    # --- outbound --------------------------------------------------------------------------

    async def connect(
        self, peer: PeerID | None, addrs: Sequence[Multiaddr] = (), *, timeout: float | None = None
    ) -> Connection:
        """A connection to ``peer``: an existing one, a dial already under way, or a new dial
        of ``addrs`` (or, if empty, the peerstore's addresses).

        Callers asking for the same peer share one dial. It runs while one of them still
        waits; when the last one leaves (cancelled, or its ``timeout`` passed) the dial is
        cancelled, its socket closed, and that caller returns only once it has stopped.
        With ``peer=None`` the addresses are dialed and any identity is accepted.
        Raises :class:`DialError` (:class:`DialTimeoutError` when ``timeout`` ran out,
        also a ``TimeoutError``), :class:`ConnectionLimitError` or :class:`HostClosedError`.
        """
        if not self.is_running:
            raise HostClosedError("host is not running")
        if peer == self.peer_id:
            raise DialError("cannot dial ourselves")
        budget = self.config.dial_timeout if timeout is None else timeout
        if peer is not None:
            existing = self.connmgr.get(peer)
            if existing is not None:
                return existing
        for addr in addrs:
            owner = addr.peer_id()
            if peer is None and owner is not None:
                peer = owner
        if peer is None:
            return await self._dial(None, list(addrs), budget)
        dial = self._dials.get(peer)
        if dial is None:
            # Each caller's wait is bounded by its own budget, and the dial stops when the
            # last one leaves; so a short first caller does not cut it short for the others.
            own_budget = max(budget, self.config.dial_timeout)
            task = asyncio.get_running_loop().create_task(
                self._dial(peer, list(addrs) or self.peerstore.addrs(peer), own_budget),
                name=f"dial-{peer}",
            )
            dial = self._dials[peer] = _Dial(task)
            task.add_done_callback(self._dial_finished)
        return await self._wait_dial(peer, dial, budget)

    async def _wait_dial(self, peer: PeerID, dial: _Dial, budget: float) -> Connection:
        dial.waiters += 1
        try:
            async with asyncio.timeout(budget):
                # wait() leaves the dial alone when this caller is cancelled
                await asyncio.wait((dial.task,))
        except TimeoutError:
            raise DialTimeoutError(f"dial to {peer} timed out after {_seconds(budget)}") from None
        finally:
            dial.waiters -= 1
            if dial.waiters == 0 and not dial.task.done():
                await self._abandon(peer, dial)
        if dial.task.cancelled():  # only close() cancels a dial someone waits for
            raise HostClosedError("host closed during the dial")
        return dial.task.result()

    async def _abandon(self, peer: PeerID, dial: _Dial) -> None:
        """Cancel a dial nobody waits for any more, and wait until it has stopped.

        A caller that arrives meanwhile starts a fresh dial. A dial that already finished
        is never cancelled: its connection was registered in the same step, so it stays
        (unheld, the idle timeout collects it)."""
        if self._dials.get(peer) is dial:
            del self._dials[peer]
        dial.task.cancel()
        await asyncio.wait((dial.task,))

    def _dial_finished(self, task: asyncio.Task[Connection]) -> None:
        for peer, pending in list(self._dials.items()):
            if pending.task is task:
                del self._dials[peer]
        if not task.cancelled():
            task.exception()  # retrieved: the callers saw it, or nobody waits any more

    async def _dial(self, peer: PeerID | None, addrs: list[Multiaddr], budget: float) -> Connection:
        deadline = time.monotonic() + budget
        if peer is not None:  # a /dnsaddr name then yields only this peer's records (dns.py)
            addrs = [_name_peer(a, peer) for a in addrs]
        resolved, failures = await self.resolver.resolve_all(addrs, timeout=budget)
        errors: list[tuple[Multiaddr, Exception]] = list(failures)
        candidates = [
            a
            for a in resolved
            if (a.tcp_endpoint() is not None or a.quic_endpoint() is not None)
            and a.peer_id() in (None, peer)
        ]
        if not candidates:
            detail = "".join(f"; {a}: {describe_dial_error(e)}" for a, e in errors)
            raise DialError(
                f"no dialable TCP address (nor QUIC) for {peer or 'the peer'}{detail}", errors
            )
        await self._make_room(Direction.OUTBOUND)

        async def chain(addrs: list[Multiaddr]) -> Connection | None:
            for addr in addrs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    spent = TimeoutError(f"not tried: {_seconds(budget)} budget spent")
                    errors.append((addr, spent))
                    break
                try:
                    return await self._dial_addr(peer, addr, remaining)
                except Exception as exc:
                    errors.append((addr, exc))
            return None

        quic, other = split(candidates)
        if quic and other:  # QUIC first, TCP joins after a delay; the first to upgrade wins
            conn = await race(
                lambda: chain(quic),
                lambda: chain(other),
                delay=self.config.quic_fallback_delay,
                discard=lambda c: c.close(),
                label=lambda c: c.transport,
            )
        else:
            conn = await chain(quic or other)
        if conn is not None:
            # no await between the upgrade and here: a cancel cannot lose this connection
            await self._add_connection(conn)
            # the peer may have dialed us meanwhile: hand out the connection both keep
            return self.connmgr.get(conn.remote_peer) or conn
        detail = "; ".join(f"{a}: {describe_dial_error(e)}" for a, e in errors)
        raise DialError(f"dial to {peer or 'peer'} failed: {detail}", errors)

    async def _dial_addr(self, peer: PeerID | None, addr: Multiaddr, budget: float) -> Connection:
        quic = addr.quic_endpoint()
        if quic is not None:
            self.dial_guard.check(*quic)
            timeout = max(min(budget, self.config.handshake_timeout), 0.001)
            try:
                return await self._quic.dial(peer, addr, timeout=timeout)
            except TimeoutError:
                raise TimeoutError(f"QUIC handshake timed out after {_seconds(timeout)}") from None
        endpoint = addr.tcp_endpoint()
        assert endpoint is not None
        self.dial_guard.check(*endpoint)  # the last step before a packet leaves
        try:
            async with asyncio.timeout(budget):
                reader, writer = await asyncio.open_connection(
                    endpoint[0], endpoint[1],
                    local_addr=dial_source(self._listen_addrs, endpoint[0]),
                )
        except TimeoutError:
            raise TimeoutError(f"TCP connect timed out after {_seconds(budget)}") from None
        tcp = TcpStream(reader, writer)
        timeout = max(min(budget, self.config.handshake_timeout), 0.001)
        try:
            return await upgrade_outbound(
                tcp, self._key, peer, yamux_config=self._yamux, timeout=timeout
            )
        except TimeoutError:
            raise TimeoutError(f"handshake timed out after {_seconds(timeout)}") from None

    async def new_stream(
        self, peer: PeerID, protocol_ids: Sequence[str], *, timeout: float | None = None
    ) -> Stream:
        """A stream to ``peer`` speaking the first of ``protocol_ids`` it accepts, connecting
        from the peerstore's addresses if needed."""
        budget = self.config.dial_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        conn = await self.connect(peer, timeout=budget)
        remaining = max(deadline - time.monotonic(), 0.001)
        return await conn.open_stream(protocol_ids, timeout=remaining)

    # --- identify and ping -----------------------------------------------------------------

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
