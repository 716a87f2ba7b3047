"""One native QUIC stream with the face of a yamux stream (the host's ``MuxedStream`` seam).

QUIC already multiplexes, so this is only an adapter: it buffers what arrived until the
application reads it (charging the connection's memory budget like yamux does), turns
FIN / RESET_STREAM / STOP_SENDING into the same ``b""`` / ``StreamResetError`` /
``SessionClosedError`` the yamux stream gives, and adds what aioquic lacks: write
backpressure (``write`` waits while more than ``high_water`` bytes sit unacknowledged in
aioquic's send buffer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from zikade_py.p2p.yamux_errors import SessionClosedError, StreamClosedError, StreamResetError

if TYPE_CHECKING:
    from zikade_py.p2p.quic.session import QuicSession

RESET_CODE = 0
"""Application error code of our RESET_STREAM / STOP_SENDING (libp2p defines none)."""


class QuicStream:
    """A bidirectional QUIC stream, read and written through its :class:`QuicSession`."""

    __slots__ = (
        "_charged",
        "_discard",
        "_local_fin",
        "_on_end",
        "_readable",
        "_recv_buf",
        "_remote_fin",
        "_reset",
        "_session",
        "_session_closed",
        "_write_lock",
        "stream_id",
    )

    def __init__(self, session: QuicSession, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._recv_buf = bytearray()
        self._charged = 0
        self._readable = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._local_fin = False
        self._remote_fin = False
        self._reset = False
        self._session_closed = False
        self._discard = False
        self._on_end: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<QuicStream id={self.stream_id} buffered={len(self._recv_buf)}>"

    @property
    def is_reset(self) -> bool:
        """Whether either side reset the stream."""
        return self._reset

    @property
    def buffered(self) -> int:
        """Received bytes waiting for the application."""
        return len(self._recv_buf)

    # -- application API (MuxedStream) ------------------------------------------------------

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` after the peer's FIN; :class:`StreamResetError` after a
        reset; :class:`SessionClosedError` when the connection ended first."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        while True:
            if self._reset:
                raise StreamResetError(f"stream {self.stream_id} was reset")
            if self._recv_buf:
                out = bytes(self._recv_buf[:max_bytes])
                del self._recv_buf[:max_bytes]
                self._uncharge(len(out))
                self._session.consumed(self.stream_id, len(out))
                return out
            if self._remote_fin:
                return b""
            if self._session_closed:
                raise SessionClosedError(f"connection ended before stream {self.stream_id} did")
            self._readable.clear()
            await self._readable.wait()

    async def write(self, data: bytes) -> None:
        """Queue ``data`` and send what the peer's flow control allows; wait while the bytes
        not yet acknowledged exceed the session's ``high_water`` (a slow reader slows us)."""
        async with self._write_lock:
            self._check_writable()
            if data:
                self._session.send(self.stream_id, bytes(data), end_stream=False)
            while self._session.send_buffered(self.stream_id) > self._session.high_water:
                await self._session.wait_progress()
                self._check_writable()

    async def close(self) -> None:
        """Half-close: FIN after the queued data; reading goes on."""
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        if self._session_closed:
            return
        self._session.send(self.stream_id, b"", end_stream=True)
        self._maybe_ended()

    async def reset(self) -> None:
        """Abort both directions: RESET_STREAM for our side, STOP_SENDING for theirs."""
        if self._reset or (self._local_fin and self._remote_fin):
            return
        self._mark_reset()
        if not self._session_closed:
            self._session.abort_stream(self.stream_id, send=True, receive=not self._remote_fin)

    def discard_incoming(self) -> None:
        """Nobody will read this stream any more: drop what is buffered and what arrives."""
        self._discard = True
        self._recv_buf.clear()
        self._uncharge(self._charged)

    @property
    def is_fully_closed(self) -> bool:
        """Both FINs, or a reset, or the connection ended."""
        return self._reset or self._session_closed or (self._local_fin and self._remote_fin)

    async def wait_remote_closed(self) -> None:
        """Return once the peer sent FIN or reset (or the connection ended)."""
        while not (self._remote_fin or self._reset or self._session_closed):
            self._readable.clear()
            await self._readable.wait()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream has ended (a resource reservation's end)."""
        self._on_end = callback
        if self.is_fully_closed:
            self._ended()

    # -- called by the session --------------------------------------------------------------

    def _on_data(self, data: bytes, end_stream: bool) -> None:
        if self._reset or self._remote_fin:
            return
        if data and not self._discard:
            memory = self._session.memory
            if memory is not None and not memory.reserve_memory(len(data)):
                # over the connection's budget: this stream goes, the connection stays
                self._mark_reset()
                self._session.abort_stream(self.stream_id, send=True, receive=True)
                return
            if memory is not None:
                self._charged += len(data)
            self._recv_buf += data
        if end_stream:
            self._remote_fin = True
        self._readable.set()
        if end_stream:
            self._maybe_ended()

    def _on_remote_reset(self) -> None:
        if not self._reset:
            self._mark_reset()

    def _on_stop_sending(self) -> None:
        """The peer will not read: our side is reset (RFC 9000 §3.5), reading goes on."""
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        self._session.abort_stream(self.stream_id, send=True, receive=False)
        self._maybe_ended()

    def _on_session_closed(self) -> None:
        self._session_closed = True
        self._uncharge(self._charged)
        self._readable.set()
        self._ended()

    def _mark_reset(self) -> None:
        self._reset = True
        self._recv_buf.clear()
        self._uncharge(self._charged)
        self._readable.set()
        self._session.stream_done(self)
        self._ended()

    def _maybe_ended(self) -> None:
        if self._local_fin and self._remote_fin:
            self._session.stream_done(self)
            self._ended()

    def _ended(self) -> None:
        callback, self._on_end = self._on_end, None
        if callback is not None:
            callback()

    def _uncharge(self, size: int) -> None:
        size = min(size, self._charged)
        if size <= 0:
            return
        self._charged -= size
        memory = self._session.memory
        if memory is not None:
            memory.release_memory(size)

    def _check_writable(self) -> None:
        if self._reset:
            raise StreamResetError(f"stream {self.stream_id} was reset")
        if self._session_closed:
            raise SessionClosedError("connection closed")
        if self._local_fin:
            raise StreamClosedError(f"stream {self.stream_id} is closed for writing")
