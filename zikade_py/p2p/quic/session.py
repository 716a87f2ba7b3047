"""One QUIC connection driven on asyncio: the host's ``MuxedSession`` over aioquic.

aioquic's ``QuicConnection`` is a pure object; this class is its driver, the way
``asyncio/protocol.py`` is in aioquic, but sharing its endpoint's socket: the endpoint
hands it datagrams (:meth:`datagram_received`), and after every input it drains
aioquic's events, sends what aioquic wants sent, and re-arms ONE timer at
``get_timer()``. On top it adds what a libp2p connection needs and aioquic does not do:
it becomes *ready* only at handshake confirmation with an authenticated peer, it pings
to keep NATs and the idle timer alive, and it counts and closes streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aioquic.quic import events
from aioquic.quic.connection import NetworkAddress

from zikade_py.p2p.crypto import PublicKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.config import QuicConfig as QuicConfig  # re-exported: its old home
from zikade_py.p2p.quic.hooks import (
    Libp2pQuicConnection,
    handshake_confirmed,
    peer_closed,
    send_buffered,
)
from zikade_py.p2p.quic.stream import RESET_CODE, QuicStream
from zikade_py.p2p.session_base import SessionBase
from zikade_py.p2p.tls import CertificateError
from zikade_py.p2p.yamux_errors import SessionClosedError

log = logging.getLogger(__name__)


class HandshakeError(Exception):
    """The QUIC/TLS handshake failed (refused certificate, wrong peer, closed, timed out)."""


class Transmitter:
    """What a session needs from its endpoint: send a datagram, (un)route connection ids."""

    def sendto(self, data: bytes, addr: NetworkAddress) -> None:
        """Send one UDP datagram from the endpoint's socket."""
        raise NotImplementedError

    def route(self, cid: bytes, session: QuicSession) -> None:
        """Deliver datagrams for ``cid`` to ``session``."""
        raise NotImplementedError

    def unroute(self, cid: bytes) -> None:
        """Forget ``cid``."""
        raise NotImplementedError

    def forget(self, session: QuicSession) -> None:
        """The session ended: drop every route to it."""
        raise NotImplementedError


class QuicSession(SessionBase[QuicStream]):
    """A libp2p connection over QUIC; implements the host's ``MuxedSession``."""

    _SESSION = "connection"

    def __init__(
        self,
        endpoint: Transmitter,
        quic: Libp2pQuicConnection,
        remote_addr: NetworkAddress,
        *,
        config: QuicConfig,
    ) -> None:
        super().__init__()
        self.quic = quic
        self.remote_addr = remote_addr
        self.config = config
        self.high_water = config.high_water
        self._endpoint = endpoint
        self._loop = asyncio.get_running_loop()
        self._is_client = quic.configuration.is_client
        self._progress = asyncio.Event()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._closed = asyncio.Event()
        self._close_reason: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._ping_uid = 0
        # remote-initiated bidirectional ids below this one were all seen (new or ended);
        # ids at or above it that were seen out of order are kept in _seen_remote
        self._remote_floor = 1 if self._is_client else 0
        self._seen_remote: set[int] = set()
        self._granted: dict[int, int] = {}  # consumed bytes at the last window update
        self._processing = False
        self._transmit_soon: asyncio.Handle | None = None
        # routed when made, not when aioquic reports them after sending (see hooks.py)
        quic.cid_issued = lambda cid: endpoint.route(cid, self)

    # -- state ------------------------------------------------------------------------------

    @property
    def remote_peer(self) -> PeerID | None:
        """The authenticated peer (set once its certificate passed)."""
        return self.quic.remote_peer

    @property
    def remote_public_key(self) -> PublicKey | None:
        """The peer's identity key from its certificate."""
        return self.quic.remote_public_key

    @property
    def is_ready(self) -> bool:
        """Handshake confirmed and the peer authenticated."""
        return self._ready.done() and not self._ready.cancelled() and not self._ready.exception()

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.is_set()

    @property
    def close_reason(self) -> Exception | None:
        """Why it ended, if it has."""
        return self._close_reason

    # -- MuxedSession -----------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Return once the handshake is confirmed with an authenticated peer, or raise
        :class:`HandshakeError` (a :class:`CertificateError` cause tells why it was refused)."""
        await asyncio.shield(self._ready)

    async def open_stream(self) -> QuicStream:
        """A new bidirectional stream (opened on the wire with its first bytes)."""
        if self.is_closed:
            raise SessionClosedError("connection closed")
        stream_id = self.quic.get_next_available_stream_id()
        # create it in aioquic now, or the next open_stream would get the same id
        self.quic.send_stream_data(stream_id, b"", end_stream=False)
        stream = QuicStream(self, stream_id)
        self._streams[stream_id] = stream
        return stream

    async def close(self) -> None:
        """Close with NO_ERROR (CONNECTION_CLOSE goes out now) and end every stream."""
        if self.is_closed:
            return
        if self._transmit_soon is not None:  # stream bytes written this step go first
            self._transmit()
        self.quic.close(error_code=0, reason_phrase="")
        self._transmit()
        self._terminate(SessionClosedError("connection closed"))

    async def wait_closed(self) -> None:
        """Return once the connection has ended."""
        await self._closed.wait()

    def abort(self, reason: str) -> None:
        """Close at once (a failed or abandoned handshake)."""
        if self.is_closed:
            return
        self.quic.close(error_code=0x0C, reason_phrase=reason)  # APPLICATION_ERROR
        self._transmit()
        self._terminate(HandshakeError(reason))

    # -- driving aioquic ---------------------------------------------------------------------

    def start(self) -> None:
        """Send the first flight (client) and arm the timer."""
        self._transmit()

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        """Feed one datagram and act on it at once (:meth:`feed` + :meth:`flush`)."""
        self.feed(data, addr)
        self.flush()

    def feed(self, data: bytes, addr: NetworkAddress) -> None:
        """Hand one datagram to aioquic; nothing is sent until :meth:`flush` (the endpoint
        feeds a whole batch first, so one transmit answers them all)."""
        if self.is_closed:
            return
        self.quic.receive_datagram(data, addr, now=self._loop.time())

    def flush(self) -> None:
        """Handle aioquic's events, send what it wants sent, re-arm the timer."""
        if self.is_closed:
            return
        self._process()
        self._wake_writers()

    def _on_timer(self) -> None:
        self._timer = None
        if self.is_closed:
            return
        self.quic.handle_timer(now=self._loop.time())
        self._process()

    def _process(self) -> None:
        if self._processing:  # re-entered from a callback: the outer loop will see it
            return
        self._processing = True
        try:
            while (event := self.quic.next_event()) is not None:
                self._handle(event)
                if self.is_closed:
                    return
            if (closed := peer_closed(self.quic)) is not None:
                # draining: nothing more will be sent or received, so it ends now
                self._terminate(self._termination_error(closed))
                return
            self._check_ready()
        finally:
            self._processing = False
        self._transmit()

    def _transmit(self) -> None:
        if self._transmit_soon is not None:  # this transmit sends what it would have
            self._transmit_soon.cancel()
            self._transmit_soon = None
        for data, addr in self.quic.datagrams_to_send(now=self._loop.time()):
            self._endpoint.sendto(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.is_closed:
            return
        at = self.quic.get_timer()
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _handle(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            stream = self._stream_for(event.stream_id)
            if stream is not None:
                stream._on_data(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_remote_reset()
        elif isinstance(event, events.StopSendingReceived):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_stop_sending()
        elif isinstance(event, events.ConnectionIdIssued):
            self._endpoint.route(event.connection_id, self)
        elif isinstance(event, events.ConnectionIdRetired):
            self._endpoint.unroute(event.connection_id)
        elif isinstance(event, events.ConnectionTerminated):
            self._terminate(self._termination_error(event))
        # HandshakeCompleted / ProtocolNegotiated / PingAcknowledged: _check_ready and the
        # idle timer cover them

    def _termination_error(self, event: events.ConnectionTerminated) -> Exception:
        cert = self.quic.certificate_error
        text = f"connection closed (code {event.error_code:#x}: {event.reason_phrase or '-'})"
        if cert is not None:
            return cert
        if not self._ready.done():
            return HandshakeError(text)
        return SessionClosedError(text)

    def _check_ready(self) -> None:
        if self._ready.done() or self.remote_peer is None:
            return
        if handshake_confirmed(self.quic):
            self._ready.set_result(None)
            if self.config.keepalive_interval is not None:
                self._keepalive = self._loop.create_task(
                    self._keepalive_loop(self.config.keepalive_interval), name="quic-keepalive"
                )

    def _stream_for(self, stream_id: int) -> QuicStream | None:
        """The stream a frame belongs to; a new inbound stream if the peer just opened it."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        if stream_id & 2:  # unidirectional: libp2p uses none, refuse it
            with contextlib.suppress(Exception):
                self.quic.stop_stream(stream_id, RESET_CODE)
            return None
        if (stream_id & 1) == (0 if self._is_client else 1):
            return None  # one of ours that has ended: late data
        if stream_id < self._remote_floor or stream_id in self._seen_remote:
            return None  # the peer's, ended already
        self._seen_remote.add(stream_id)
        while self._remote_floor in self._seen_remote:
            self._seen_remote.discard(self._remote_floor)
            self._remote_floor += 4
        if len(self._backlog) >= self.config.max_unaccepted_streams:
            self.abort_stream(stream_id, send=True, receive=True)  # beyond the backlog
            return None
        # A stream may come before the connection is ready: the peer's first streams often
        # share a datagram with the handshake's end (its HANDSHAKE_DONE, or our client's
        # Finished), and a server may send before it confirmed us. It waits in the backlog:
        # nothing accepts it before the connection is handed over as ready.
        stream = QuicStream(self, stream_id)
        self._admit(stream)
        return stream

    # -- called by streams ------------------------------------------------------------------

    def send(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Queue stream data; it leaves at the end of this loop iteration, so the writes a
        task makes in one step (multistream header, protocol, message, FIN) share packets
        instead of one datagram, one ACK and one timer re-arm each."""
        self.quic.send_stream_data(stream_id, data, end_stream=end_stream)
        if self._transmit_soon is None:
            self._transmit_soon = self._loop.call_soon(self._deferred_transmit)

    def _deferred_transmit(self) -> None:
        self._transmit_soon = None
        if not self.is_closed:
            self._transmit()

    def send_buffered(self, stream_id: int) -> int:
        """Bytes aioquic still holds for the stream (unsent or unacknowledged)."""
        return send_buffered(self.quic, stream_id)

    def consumed(self, stream_id: int, size: int) -> None:
        """The application read ``size`` bytes of the stream: its receive window moves, and
        a MAX_STREAM_DATA goes out once half a window was read."""
        total = self.quic.consumed.get(stream_id, 0) + size
        self.quic.consumed[stream_id] = total
        granted = self._granted.get(stream_id, 0)
        if total - granted >= self.quic.stream_window // 2 and not self.is_closed:
            self._granted[stream_id] = total
            self._transmit()

    async def wait_progress(self) -> None:
        """Wait until the peer sent something (acknowledgements free send buffers)."""
        if self.is_closed:
            return
        await self._progress.wait()

    def _wake_writers(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    def abort_stream(self, stream_id: int, *, send: bool, receive: bool) -> None:
        """RESET_STREAM our side and/or STOP_SENDING theirs (whichever still makes sense)."""
        if send:
            with contextlib.suppress(Exception):
                self.quic.reset_stream(stream_id, RESET_CODE)
        if receive:
            with contextlib.suppress(Exception):
                self.quic.stop_stream(stream_id, RESET_CODE)
        self._transmit()

    def _remove_stream(self, stream: QuicStream) -> None:
        """The stream ended (both FINs or reset): it no longer counts, nor waits to be
        accepted, and its flow-control bookkeeping goes."""
        super()._remove_stream(stream)
        self.quic.consumed.pop(stream.stream_id, None)
        self._granted.pop(stream.stream_id, None)
        with contextlib.suppress(ValueError):
            self._backlog.remove(stream)

    # -- keep-alive and the end -------------------------------------------------------------

    async def _keepalive_loop(self, interval: float) -> None:
        """PING every ``interval``; an unanswered peer is closed by the idle timeout."""
        while not self.is_closed:
            await asyncio.sleep(interval)
            if self.is_closed:
                return
            self._ping_uid += 1
            self.quic.send_ping(self._ping_uid)
            self._transmit()

    def _terminate(self, reason: Exception) -> None:
        if self._closed.is_set():
            return
        self._close_reason = reason
        self._closed.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        # Neither the cancelled task (its traceback holds this session) nor the routing
        # hook (a closure over self) may keep the ended session in a reference cycle.
        self._keepalive = None
        self.quic.cid_issued = None
        if not self._ready.done():
            exc = reason if isinstance(reason, HandshakeError) else HandshakeError(str(reason))
            if isinstance(reason, CertificateError):
                exc.__cause__ = reason
            self._ready.set_exception(exc)
            self._ready.exception()  # retrieved: a dial that gave up need not see it
        self._end_streams()
        self._wake_writers()
        self._endpoint.forget(self)

    def remote_certificate_error(self) -> CertificateError | None:
        """Why we refused the peer's certificate, if we did."""
        return self.quic.certificate_error

    def __repr__(self) -> str:
        return (
            f"QuicSession({self.remote_peer} at {self.remote_addr}, {len(self._streams)} streams)"
        )
