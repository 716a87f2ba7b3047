"""One native QUIC stream with the face of a yamux stream (the host's ``MuxedStream`` seam).

QUIC already multiplexes, so this is only an adapter: the shared stream states of
:mod:`zikade_py.p2p.stream_base` (receive buffer charged to the connection's memory budget,
FIN / reset / connection end as ``b""`` / ``StreamResetError`` / ``SessionClosedError``)
over aioquic's stream events, plus STOP_SENDING and what aioquic lacks: write
backpressure (``write`` waits while more than ``high_water`` bytes sit unacknowledged in
aioquic's send buffer).
"""

from __future__ import annotations

from typing import Protocol

from zikade_py.p2p.stream_base import MemoryBudget, StreamBase

RESET_CODE = 0
"""Application error code of our RESET_STREAM / STOP_SENDING (libp2p defines none)."""


class QuicLink(Protocol):
    """What a stream needs from its :class:`QuicSession` (keeps this module free of it)."""

    @property
    def memory(self) -> MemoryBudget | None:
        """The budget received bytes draw from, if any."""
        ...

    @property
    def high_water(self) -> int:
        """Unacknowledged bytes above which ``write`` waits."""
        ...

    def send(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Queue stream data (and FIN)."""
        ...

    def send_buffered(self, stream_id: int) -> int:
        """Bytes still unsent or unacknowledged."""
        ...

    async def wait_progress(self) -> None:
        """Wait until the peer sent something."""
        ...

    def consumed(self, stream_id: int, size: int) -> None:
        """The application read ``size`` bytes."""
        ...

    def abort_stream(self, stream_id: int, *, send: bool, receive: bool) -> None:
        """RESET_STREAM and/or STOP_SENDING."""
        ...

    def _remove_stream(self, stream: QuicStream) -> None:
        """The stream ended: stop counting it."""
        ...


class QuicStream(StreamBase[QuicLink]):
    """A bidirectional QUIC stream, read and written through its ``QuicSession``."""

    __slots__ = ()

    _SESSION = "connection"

    # -- application API (MuxedStream) ------------------------------------------------------

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

    # -- transport hooks (StreamBase) -------------------------------------------------------

    def _on_read(self, size: int) -> None:
        self._session.consumed(self.stream_id, size)

    def _send_fin(self) -> None:
        self._session.send(self.stream_id, b"", end_stream=True)

    def _send_reset(self) -> None:
        """RESET_STREAM for our side, STOP_SENDING for theirs unless they finished."""
        self._session.abort_stream(self.stream_id, send=True, receive=not self._remote_fin)

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
            self._on_remote_fin()
        else:
            self._wake_readers()

    def _on_stop_sending(self) -> None:
        """The peer will not read: our side is reset (RFC 9000 §3.5), reading goes on."""
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        self._session.abort_stream(self.stream_id, send=True, receive=False)
        if self._remote_fin:
            self._finish()
