"""One Yamux stream: receive buffer, flow-control windows and the half-close/reset states.

The session's reader task calls the ``_on_*`` methods synchronously (they never block, so
one slow stream cannot stall the connection); applications use the :class:`ByteStream`
methods. Flow control is what keeps memory bounded: the peer may only send what our
receive window allows, and we grant more only as the application reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from zikade_py.p2p.yamux_errors import (
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    YamuxProtocolError,
)
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, encode_header

INITIAL_STREAM_WINDOW = 256 * 1024
"""The window every stream starts with in both directions; fixed by the spec."""

MAX_DATA_PAYLOAD = 64 * 1024 - HEADER_SIZE
"""Largest Data payload we send: go-yamux's 64 KiB message size, header included."""


class MemoryBudget(Protocol):
    """Where received bytes are accounted (a connection's resource scope, rcmgr.py)."""

    def reserve_memory(self, size: int) -> bool:
        """Account ``size`` more bytes; False if over budget (nothing reserved)."""
        ...

    def release_memory(self, size: int) -> None:
        """Give back ``size`` bytes."""
        ...

    def headroom(self) -> int:
        """Bytes that could still be reserved now."""
        ...

    def note_discarded(self, size: int, now: float) -> float:
        """``size`` received bytes were dropped unread; returns the seconds reading from the
        connection should pause (0.0: go on)."""
        ...


class SessionLink(Protocol):
    """What a stream needs from its session (keeps the stream module free of the session)."""

    @property
    def rtt(self) -> float:
        """Last measured round-trip time in seconds, 0.0 if unknown."""
        ...

    @property
    def max_window(self) -> int:
        """Cap for auto-tuning the receive window."""
        ...

    @property
    def memory(self) -> MemoryBudget | None:
        """The budget received bytes draw from, if any."""
        ...

    def _enqueue(self, frame: bytes, *, urgent: bool) -> None: ...

    async def _send_data(self, frame: bytes) -> None: ...

    def _remove_stream(self, stream: YamuxStream) -> None: ...

    def _note_dropped(self, size: int) -> None: ...


class YamuxStream:
    """A multiplexed, flow-controlled byte stream; implements :class:`ByteStream`."""

    __slots__ = (
        "_charged",
        "_discard",
        "_epoch_start",
        "_local_fin",
        "_on_end",
        "_readable",
        "_recv_buf",
        "_recv_window",
        "_remote_fin",
        "_reset",
        "_send_window",
        "_session",
        "_session_closed",
        "_window_size",
        "_writable",
        "_write_lock",
        "acked",
        "is_outbound",
        "stream_id",
    )

    def __init__(self, session: SessionLink, stream_id: int, *, is_outbound: bool) -> None:
        self._session = session
        self.stream_id = stream_id
        self.is_outbound = is_outbound
        self.acked = not is_outbound  # outbound: True once the peer's ACK arrived
        self._recv_buf = bytearray()
        self._charged = 0  # bytes of _recv_buf reserved from the session's memory budget
        self._discard = False  # nobody will read: incoming data is dropped as it arrives
        self._recv_window = INITIAL_STREAM_WINDOW  # bytes the peer may still send us
        self._window_size = INITIAL_STREAM_WINDOW  # our target receive window
        self._send_window = INITIAL_STREAM_WINDOW  # bytes we may still send
        self._epoch_start = time.monotonic()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._local_fin = False
        self._remote_fin = False
        self._reset = False
        self._session_closed = False
        self._on_end: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<YamuxStream id={self.stream_id} buffered={len(self._recv_buf)}>"

    # -- introspection ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received but not yet read by the application."""
        return len(self._recv_buf)

    @property
    def receive_window(self) -> int:
        """Our current target receive window (grows by auto-tuning up to ``max_window``)."""
        return self._window_size

    @property
    def send_window(self) -> int:
        """Bytes the peer currently allows us to send."""
        return self._send_window

    @property
    def is_reset(self) -> bool:
        """Whether the stream was reset by either side."""
        return self._reset

    # -- application API --------------------------------------------------------------------

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` after the peer's FIN; :class:`StreamResetError` after RST.

        Reading is what reopens the peer's window, so an unread stream stalls its sender.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        while True:
            if self._reset:
                raise StreamResetError(f"stream {self.stream_id} was reset")
            if self._recv_buf:
                out = bytes(self._recv_buf[:max_bytes])
                del self._recv_buf[:max_bytes]
                self._uncharge(len(out))
                self._grant_window()
                return out
            if self._remote_fin:
                return b""
            if self._session_closed:
                raise SessionClosedError(f"session ended before stream {self.stream_id} did")
            self._readable.clear()
            await self._readable.wait()

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` in frames that fit the peer's window, waiting while it is 0."""
        view = memoryview(data)
        async with self._write_lock:
            offset = 0
            while offset < len(view):
                self._check_writable()
                if self._send_window <= 0:
                    self._writable.clear()
                    await self._writable.wait()
                    continue
                n = min(len(view) - offset, self._send_window, MAX_DATA_PAYLOAD)
                self._send_window -= n
                header = encode_header(FrameType.DATA, 0, self.stream_id, n)
                frame = header + view[offset : offset + n]
                offset += n
                await self._session._send_data(frame)

    async def close(self) -> None:
        """Half-close: send FIN after any data already queued; reading keeps working."""
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        self._writable.set()
        if self._session_closed:
            return
        self._session._enqueue(
            encode_header(FrameType.WINDOW_UPDATE, Flag.FIN, self.stream_id, 0), urgent=False
        )
        if self._remote_fin:
            self._session._remove_stream(self)

    async def reset(self) -> None:
        """Abort both directions: send RST and fail local readers and writers."""
        if self._reset or (self._local_fin and self._remote_fin):
            return
        self._mark_reset()
        if not self._session_closed:
            self._session._enqueue(
                encode_header(FrameType.WINDOW_UPDATE, Flag.RST, self.stream_id, 0), urgent=False
            )

    def discard_incoming(self) -> None:
        """Nobody will read this stream any more: drop what is buffered and whatever still
        arrives (it counts against the window, which is never reopened)."""
        self._discard = True
        self._recv_buf.clear()
        self._uncharge(self._charged)

    @property
    def is_fully_closed(self) -> bool:
        """Both sides sent FIN, or the stream was reset, or the session ended."""
        return self._reset or self._session_closed or (self._local_fin and self._remote_fin)

    async def wait_remote_closed(self) -> None:
        """Return once the peer sent FIN or RST (or the session ended)."""
        while not (self._remote_fin or self._reset or self._session_closed):
            self._readable.clear()
            await self._readable.wait()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream has ended (both FINs, a reset or the
        session's end): what frees a resource reservation held for the stream."""
        self._on_end = callback

    # -- called by the session --------------------------------------------------------------

    def _ended(self) -> None:
        callback, self._on_end = self._on_end, None
        if callback is not None:
            callback()

    def _open_frame(self, flag: Flag, initial_window: int) -> bytes:
        """The SYN or ACK window update, granting the configured window beyond the default."""
        delta = max(0, initial_window - self._window_size)
        self._window_size += delta
        self._recv_window += delta
        return encode_header(FrameType.WINDOW_UPDATE, flag, self.stream_id, delta)

    def _data_limit(self) -> int:
        """Largest Data payload the peer may send right now."""
        return self._recv_window

    def _on_data(self, body: bytes) -> int:
        """Take a Data frame's payload; returns how many of its bytes were dropped unread."""
        if len(body) > self._recv_window:
            raise YamuxProtocolError(
                f"stream {self.stream_id}: {len(body)} bytes exceed the receive window "
                f"of {self._recv_window}"
            )
        self._recv_window -= len(body)
        if self._reset or self._remote_fin or self._discard or not body:
            return len(body)  # data after FIN is dropped; it still counted against the window
        memory = self._session.memory
        if memory is not None:
            if not memory.reserve_memory(len(body)):
                # over the connection's or the host's budget: this stream goes, not the host
                self._mark_reset()
                self._session._enqueue(
                    encode_header(FrameType.WINDOW_UPDATE, Flag.RST, self.stream_id, 0),
                    urgent=True,
                )
                return len(body)
            self._charged += len(body)
        self._recv_buf += body
        self._readable.set()
        return 0

    def _on_window_update(self, delta: int) -> None:
        self._send_window += delta
        if self._send_window > 0:
            self._writable.set()

    def _on_ack(self) -> None:
        self.acked = True

    def _on_remote_fin(self) -> None:
        if self._remote_fin:
            return
        self._remote_fin = True
        self._readable.set()
        if self._local_fin:
            self._session._remove_stream(self)

    def _on_remote_reset(self) -> None:
        if not self._reset:
            self._mark_reset()

    def _on_session_closed(self) -> None:
        self._session_closed = True
        self._ended()
        # what is buffered stays readable, but no longer counts against the connection
        self._uncharge(self._charged)
        self._readable.set()
        self._writable.set()

    # -- internals --------------------------------------------------------------------------

    def _mark_reset(self) -> None:
        self._reset = True
        if self._recv_buf:  # received, never read: work done for nothing
            self._session._note_dropped(len(self._recv_buf))
        self._recv_buf.clear()
        self._uncharge(self._charged)
        self._readable.set()
        self._writable.set()
        self._session._remove_stream(self)

    def _uncharge(self, size: int) -> None:
        size = min(size, self._charged)
        if size:
            self._charged -= size
            memory = self._session.memory
            if memory is not None:
                memory.release_memory(size)

    def _check_writable(self) -> None:
        if self._reset:
            raise StreamResetError(f"stream {self.stream_id} was reset")
        if self._local_fin:
            raise StreamClosedError(f"stream {self.stream_id} is closed for writing")
        if self._session_closed:
            raise SessionClosedError("session is closed")

    def _grant_window(self) -> None:
        """Send a window update once at least half the window has been consumed.

        Like go-yamux, the window doubles (up to ``max_window``) when updates come faster
        than every few round trips, so fast links are not throttled by 256 KiB per RTT.
        """
        if self._remote_fin or self._reset or self._session_closed:
            return
        delta = self._window_size - len(self._recv_buf) - self._recv_window
        if delta < self._window_size // 2:
            return
        now = time.monotonic()
        rtt = self._session.rtt
        memory = self._session.memory
        if rtt > 0 and now - self._epoch_start < 4 * rtt:
            grown = min(self._window_size * 2, self._session.max_window)
            # a bigger window only if the budget could hold it (go: the muxer's reservation)
            if memory is None or memory.headroom() >= grown:
                delta += grown - self._window_size
                self._window_size = grown
        self._epoch_start = now
        self._recv_window += delta
        self._session._enqueue(
            encode_header(FrameType.WINDOW_UPDATE, 0, self.stream_id, delta), urgent=True
        )
