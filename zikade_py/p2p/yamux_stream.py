"""One Yamux stream: flow-control windows on top of the shared stream states.

The session's reader task calls the ``_on_*`` methods synchronously (they never block, so
one slow stream cannot stall the connection); applications use the :class:`ByteStream`
methods. Flow control is what keeps memory bounded: the peer may only send what our
receive window allows, and we grant more only as the application reads. The receive
buffer and the half-close/reset states are :mod:`zikade_py.p2p.stream_base`'s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from zikade_py.p2p.stream_base import MemoryBudget, StreamBase, fresh_event
from zikade_py.p2p.yamux_errors import YamuxProtocolError
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, encode_header

__all__ = [
    "INITIAL_STREAM_WINDOW",
    "MAX_DATA_PAYLOAD",
    "MemoryBudget",
    "SessionLink",
    "YamuxStream",
]

INITIAL_STREAM_WINDOW = 256 * 1024
"""The window every stream starts with in both directions; fixed by the spec."""

MAX_DATA_PAYLOAD = 64 * 1024 - HEADER_SIZE
"""Largest Data payload we send: go-yamux's 64 KiB message size, header included."""


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


class YamuxStream(StreamBase[SessionLink]):
    """A multiplexed, flow-controlled byte stream; implements :class:`ByteStream`."""

    __slots__ = (
        "_epoch_start",
        "_recv_window",
        "_send_window",
        "_window_size",
        "_writable",
        "acked",
        "is_outbound",
    )

    def __init__(self, session: SessionLink, stream_id: int, *, is_outbound: bool) -> None:
        super().__init__(session, stream_id)
        self.is_outbound = is_outbound
        self.acked = not is_outbound  # outbound: True once the peer's ACK arrived
        self._recv_window = INITIAL_STREAM_WINDOW  # bytes the peer may still send us
        self._window_size = INITIAL_STREAM_WINDOW  # our target receive window
        self._send_window = INITIAL_STREAM_WINDOW  # bytes we may still send
        self._epoch_start = time.monotonic()
        self._writable: asyncio.Event | None = None  # made by the first writer that waits

    # -- introspection ----------------------------------------------------------------------

    @property
    def receive_window(self) -> int:
        """Our current target receive window (grows by auto-tuning up to ``max_window``)."""
        return self._window_size

    @property
    def send_window(self) -> int:
        """Bytes the peer currently allows us to send."""
        return self._send_window

    # -- application API --------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` in frames that fit the peer's window, waiting while it is 0."""
        view = memoryview(data)
        async with self._write_lock:
            offset = 0
            while offset < len(view):
                self._check_writable()
                if self._send_window <= 0:
                    writable = self._writable = fresh_event(self._writable)
                    await writable.wait()
                    continue
                n = min(len(view) - offset, self._send_window, MAX_DATA_PAYLOAD)
                self._send_window -= n
                header = encode_header(FrameType.DATA, 0, self.stream_id, n)
                frame = header + view[offset : offset + n]
                offset += n
                await self._session._send_data(frame)

    # -- transport hooks (StreamBase) ---------------------------------------------------------

    def _on_read(self, size: int) -> None:
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

    def _send_fin(self) -> None:
        self._session._enqueue(
            encode_header(FrameType.WINDOW_UPDATE, Flag.FIN, self.stream_id, 0), urgent=False
        )

    def _send_reset(self) -> None:
        self._session._enqueue(
            encode_header(FrameType.WINDOW_UPDATE, Flag.RST, self.stream_id, 0), urgent=False
        )

    def _wake_writers(self) -> None:
        writable = self._writable
        if writable is not None:
            writable.set()

    def _drop_unread(self, size: int) -> None:
        self._session._note_dropped(size)

    # -- called by the session --------------------------------------------------------------

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
        readable = self._readable
        if readable is not None:
            readable.set()
        return 0

    def _on_window_update(self, delta: int) -> None:
        self._send_window += delta
        if self._send_window > 0:
            self._wake_writers()

    def _on_ack(self) -> None:
        self.acked = True
