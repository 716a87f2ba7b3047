"""The connection upgrade pipeline and the upgraded :class:`Connection` with its streams.

WIRE.md §0: TCP → multistream-select ``/noise`` → Noise XX → multistream-select
``/yamux/1.0.0`` → Yamux; every stream then negotiates its own protocol with
multistream-select. The TCP dialer is always the mss initiator, the Noise
initiator and the yamux client (odd stream ids). Bytes read ahead at any step
(a pipelining peer sends its next layer's first bytes with the proposal) are
handed to the next layer, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from zikade_py.p2p.crypto import PrivateKey, PublicKey
from zikade_py.p2p.events import Direction
from zikade_py.p2p.io import BufferedReader, TcpStream
from zikade_py.p2p.mss import (
    LazyNegotiatedReader,
    handle_negotiation,
    lazy_proposal,
    select_protocol,
    select_protocol_lazy,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.noise import NOISE_PROTOCOL_ID, NoiseSession, secure_inbound, secure_outbound
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.pump import can_pump, install_pump
from zikade_py.p2p.rcmgr import ConnectionScope
from zikade_py.p2p.yamux import YAMUX_PROTOCOL_ID, YamuxConfig, YamuxSession
from zikade_py.p2p.yamux_stream import MemoryBudget


class MuxedStream(Protocol):
    """One stream of a muxed connection, as the host and :class:`Stream` use it.

    The seam between the host and its transports: a Yamux stream (TCP) and a native QUIC
    stream both look like this. Errors are the muxer errors of ``yamux_errors``
    (``StreamResetError``, ``SessionClosedError``) whatever the transport, so protocol
    handlers above catch one family.
    """

    @property
    def stream_id(self) -> int:
        """The transport's stream id (for logs; parity tells who opened it)."""
        ...

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` after the peer's FIN; ``StreamResetError`` after a reset."""
        ...

    async def write(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer (or our send buffer) is full."""
        ...

    async def close(self) -> None:
        """Half-close (FIN after queued data); reading goes on."""
        ...

    async def reset(self) -> None:
        """Abort both directions."""
        ...

    def discard_incoming(self) -> None:
        """Nobody reads this stream any more: drop buffered and later data."""
        ...

    @property
    def is_fully_closed(self) -> bool:
        """Both FINs exchanged, or reset, or the connection ended."""
        ...

    async def wait_remote_closed(self) -> None:
        """Return once the peer sent FIN or reset (or the connection ended)."""
        ...

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream has ended (both FINs, a reset or the
        connection's end): what frees a resource reservation held for the stream."""
        ...


class MuxedSession(Protocol):
    """A secured, multiplexed connection: Yamux over Noise over TCP, or QUIC.

    :class:`Connection` wraps one, and everything above (host, connection manager,
    resource manager, identify, protocol handlers) sees only the connection.
    """

    memory: MemoryBudget | None
    """Where buffered received bytes are charged (the host sets its connection scope)."""

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        ...

    @property
    def num_streams(self) -> int:
        """Streams open now, both directions."""
        ...

    async def open_stream(self) -> MuxedStream:
        """A new outbound stream (``SessionClosedError`` once the connection ended)."""
        ...

    async def accept_stream(self) -> MuxedStream:
        """The next stream the peer opened (``SessionClosedError`` at the end)."""
        ...

    async def close(self) -> None:
        """Close the connection and everything under it."""
        ...

    async def wait_closed(self) -> None:
        """Return once the connection has ended."""
        ...


class UpgradeError(Exception):
    """The remote broke the upgrade (bad mss, Noise or muxer negotiation); the socket is closed."""


class ReadAheadStream:
    """A ByteStream that first returns the bytes a :class:`BufferedReader` read ahead.

    Wraps a layer whose negotiation may have consumed the next layer's first bytes.
    """

    __slots__ = ("_abort", "_pause", "_reader")

    def __init__(
        self,
        reader: BufferedReader,
        abort: Callable[[], None],
        pause: Callable[[float], None] | None = None,
    ) -> None:
        self._reader = reader
        self._abort = abort
        self._pause = pause

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Read-ahead bytes first, then the underlying stream."""
        return await self._reader.read_some(max_bytes)

    async def write(self, data: bytes) -> None:
        """Write to the underlying stream."""
        await self._reader.stream.write(data)

    async def close(self) -> None:
        """Close the underlying stream."""
        await self._reader.stream.close()

    def abort(self) -> None:
        """Drop the TCP connection at once (yamux uses it when a close hangs)."""
        self._abort()

    def pause_reading_for(self, seconds: float) -> None:
        """Stop reading the socket for ``seconds`` (yamux, when the peer sends junk)."""
        if self._pause is not None:
            self._pause(seconds)


def socket_multiaddr(address: tuple[str, int] | None) -> Multiaddr | None:
    """``/ip4|ip6/<host>/tcp/<port>`` of a socket address (IPv6 zone dropped)."""
    if address is None:
        return None
    host, port = address
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Multiaddr.from_tcp(str(ip), port)


class Stream:
    """One negotiated stream (yamux or QUIC): its protocol, its peer, and the bytes read during mss.

    ``read`` returns bytes that arrived together with the mss proposal first
    (WIRE.md §3.3). ``close`` half-closes (we send FIN; reading goes on until
    the peer's FIN); ``reset`` aborts both directions.
    """

    __slots__ = ("_closed", "_inner", "_reader", "connection", "protocol")

    def __init__(
        self, inner: MuxedStream, reader: BufferedReader, protocol: str, connection: Connection
    ) -> None:
        self._inner = inner
        self._reader = reader
        self._closed = False
        self.protocol = protocol
        self.connection = connection

    @property
    def remote_peer(self) -> PeerID:
        """The authenticated peer on the other end."""
        return self.connection.remote_peer

    @property
    def stream_id(self) -> int:
        """The muxer's stream id (yamux: odd when opened by the dialer of the connection)."""
        return self._inner.stream_id

    @property
    def reader(self) -> BufferedReader:
        """Buffered access (exact sizes, length-prefixed messages) to the incoming bytes."""
        return self._reader

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` once the peer closed its side."""
        return await self._reader.read_some(max_bytes)

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the peer's flow-control window."""
        await self._inner.write(data)

    async def close(self) -> None:
        """Half-close: no more writes from us; the peer may still send."""
        if self._closed:
            return
        self._closed = True
        self.connection.touch()
        with contextlib.suppress(Exception):
            await self._inner.close()

    async def reset(self) -> None:
        """Abort the stream in both directions (RST)."""
        self._closed = True
        self.connection.touch()
        with contextlib.suppress(Exception):
            await self._inner.reset()

    def __repr__(self) -> str:
        return f"Stream({self.protocol} #{self.stream_id} with {self.remote_peer})"


class Connection:
    """An upgraded connection to an authenticated peer: a :class:`MuxedSession` (yamux over
    Noise over TCP, or QUIC) with the identity, direction and addresses the host needs."""

    __slots__ = (
        "_clock",
        "_last_used",
        "direction",
        "lingering",
        "local_addr",
        "opened_at",
        "remote_addr",
        "remote_peer",
        "remote_public_key",
        "scope",
        "session",
        "streams_opened",
        "transport",
    )

    def __init__(
        self,
        *,
        session: MuxedSession,
        remote_peer: PeerID,
        remote_public_key: PublicKey,
        direction: Direction,
        remote_addr: Multiaddr | None,
        local_addr: Multiaddr | None,
        clock: Callable[[], float] = time.monotonic,
        transport: str = "tcp",
    ) -> None:
        self.session = session
        self.transport = transport
        """``tcp`` or ``quic``: which transport carries it (metrics, dial preference)."""
        self.remote_peer = remote_peer
        self.remote_public_key = remote_public_key
        self.direction = direction
        self.remote_addr = remote_addr
        self.local_addr = local_addr
        self._clock = clock
        self.opened_at = clock()
        self._last_used = self.opened_at
        self.streams_opened = 0
        self.lingering = 0
        """Streams whose handler has finished and that only wait for the peer's FIN."""
        self.scope: ConnectionScope | None = None
        """The host's resource scope of this connection (outbound streams reserve in it)."""

    @property
    def num_streams(self) -> int:
        """Streams the session has open now (both directions), not counting lingering
        ones: a connection that only waits for FINs is idle (trimmable) for the manager."""
        return max(self.session.num_streams - self.lingering, 0)

    @property
    def last_used(self) -> float:
        """When a stream last opened or closed (the connection manager's idle clock)."""
        return self._last_used

    @property
    def is_closed(self) -> bool:
        """Whether the session has ended."""
        return self.session.is_closed

    def touch(self) -> None:
        """Record stream activity now."""
        self._last_used = self._clock()

    async def open_stream(self, protocols: Sequence[str], *, timeout: float = 10.0) -> Stream:
        """Open a stream and negotiate the first of ``protocols`` the peer accepts.

        Raises ``ProtocolNotSupportedError`` (the peer refused them all),
        ``NegotiationError``, ``TimeoutError`` or a yamux error; the stream is reset then.
        """
        if not protocols:
            raise ValueError("open_stream needs at least one protocol")
        inner = await self._open_inner()
        try:
            async with asyncio.timeout(timeout):
                protocol, reader = await select_protocol(inner, list(protocols))
        except BaseException:
            with contextlib.suppress(Exception):
                await inner.reset()
            raise
        return Stream(inner, reader, protocol, self)

    async def open_stream_lazy(
        self, protocol: str, first_payload: bytes, *, timeout: float = 10.0
    ) -> Stream:
        """Open a stream for a protocol the peer is known to speak, sending ``first_payload``
        with the proposal (no round trip, WIRE.md §3.3). The first read checks the peer's
        answer and raises ``ProtocolNotSupportedError`` if it refused."""
        inner = await self._open_inner()
        try:
            async with asyncio.timeout(timeout):
                reader = await select_protocol_lazy(inner, protocol, first_payload)
        except BaseException:
            with contextlib.suppress(Exception):
                await inner.reset()
            raise
        return Stream(inner, reader, protocol, self)

    async def _open_inner(self) -> MuxedStream:
        """A new stream, reserved in the scope (``ResourceLimitError`` past the peer's
        outbound stream limit); the reservation ends with the stream."""
        slot = self.scope.open_outbound_stream() if self.scope is not None else None
        try:
            inner = await self.session.open_stream()
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        if slot is not None:
            inner.on_end(slot.release)
        self.touch()
        self.streams_opened += 1
        return inner

    async def accept_stream(self) -> MuxedStream:
        """The next stream the peer opened (raises ``SessionClosedError`` at the end)."""
        inner = await self.session.accept_stream()
        self.touch()
        self.streams_opened += 1
        return inner

    async def close(self) -> None:
        """Close the session and the socket under it."""
        await self.session.close()

    async def wait_closed(self) -> None:
        """Return once the session has ended."""
        await self.session.wait_closed()

    def __repr__(self) -> str:
        return (
            f"Connection({self.direction.value} {self.remote_peer} at {self.remote_addr}, "
            f"{self.num_streams} streams)"
        )


async def _muxer(
    noise: NoiseSession, tcp: TcpStream, *, is_client: bool, config: YamuxConfig
) -> YamuxSession:
    """Negotiate ``/yamux/1.0.0`` on the secure channel and start the session.

    The dialer does not wait for the echo (WIRE.md §3.3): its first yamux frames follow the
    proposal, and the session's first read checks the answer.
    """
    reader: BufferedReader
    if is_client:
        await noise.write(lazy_proposal(YAMUX_PROTOCOL_ID))
        reader = LazyNegotiatedReader(noise, YAMUX_PROTOCOL_ID)
    else:
        reader = BufferedReader(noise)
        _, reader = await handle_negotiation(noise, lambda p: p == YAMUX_PROTOCOL_ID, reader=reader)
    session = YamuxSession(
        ReadAheadStream(reader, tcp.abort, tcp.pause_reading_for),
        is_client=is_client,
        config=config,
    )
    if not can_pump(tcp):
        await session.start()
        return session
    # received bytes go straight from the transport callback to the streams (pump.py)
    plaintext = b"" if is_client else reader.take_buffer()
    expect = lazy_proposal(YAMUX_PROTOCOL_ID) if is_client else b""
    await session.start(read_loop=False)
    install_pump(tcp, noise, session, plaintext + noise.take_plaintext(), expect)
    return session


async def upgrade_outbound(
    tcp: TcpStream,
    local_key: PrivateKey,
    expected_peer: PeerID | None,
    *,
    yamux_config: YamuxConfig,
    timeout: float,
) -> Connection:
    """Upgrade a socket we dialed; the Noise identity must be ``expected_peer`` if given.

    ``/noise`` is proposed together with Noise message 1 (one round trip less, as go and
    rust dialers pipeline too); Noise's first read checks the listener's echo. Raises
    ``PeerIDMismatchError``, ``NoiseHandshakeError``, mss errors or ``TimeoutError``;
    the socket is closed on any failure.
    """
    try:
        async with asyncio.timeout(timeout):
            reader = LazyNegotiatedReader(tcp, NOISE_PROTOCOL_ID)
            noise = await secure_outbound(
                reader,
                local_key,
                expected_peer,
                timeout=timeout,
                preamble=lazy_proposal(NOISE_PROTOCOL_ID),
            )
            session = await _muxer(noise, tcp, is_client=True, config=yamux_config)
    except BaseException:
        tcp.abort()
        raise
    return Connection(
        session=session,
        remote_peer=noise.remote_peer,
        remote_public_key=noise.remote_public_key,
        direction=Direction.OUTBOUND,
        remote_addr=socket_multiaddr(tcp.remote_address),
        local_addr=socket_multiaddr(tcp.local_address),
    )


async def upgrade_inbound(
    tcp: TcpStream, local_key: PrivateKey, *, yamux_config: YamuxConfig, timeout: float
) -> Connection:
    """Upgrade a socket a peer dialed to us. ``/tls/1.0.0`` and others are refused with ``na``
    so go dialers fall back to ``/noise`` (WIRE.md §0). The socket is closed on failure."""
    try:
        async with asyncio.timeout(timeout):
            reader = BufferedReader(tcp)
            _, reader = await handle_negotiation(
                tcp, lambda p: p == NOISE_PROTOCOL_ID, reader=reader
            )
            noise = await secure_inbound(reader, local_key, timeout=timeout)
            session = await _muxer(noise, tcp, is_client=False, config=yamux_config)
    except BaseException:
        tcp.abort()
        raise
    return Connection(
        session=session,
        remote_peer=noise.remote_peer,
        remote_public_key=noise.remote_public_key,
        direction=Direction.INBOUND,
        remote_addr=socket_multiaddr(tcp.remote_address),
        local_addr=socket_multiaddr(tcp.local_address),
    )
