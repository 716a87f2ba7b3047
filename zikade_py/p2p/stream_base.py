"""What every muxed stream shares, whatever carries it: a receive buffer charged to the
connection's memory budget, and the half-close / reset / session-end bookkeeping.

A Yamux stream (``yamux_stream.py``) and a native QUIC stream (``quic/stream.py``) differ
only in how bytes, FIN and reset reach the wire and in how reading reopens the peer's
window. Their states, the errors those states give and the moment a stream counts as
ended are one set of rules, kept here once:

* four flags: ``_local_fin`` (we half-closed), ``_remote_fin`` (the peer did), ``_reset``
  (either side aborted), ``_session_closed`` (the connection under it ended);
* the stream has *ended* once both FINs went, or it was reset, or the session ended: then
  the session forgets it (``_remove_stream``; not on a session's end: the session drops its
  whole table itself) and the ``on_end`` callback fires, exactly once;
* reading gives buffered bytes first, then ``b""`` after the peer's FIN; a reset fails it
  with :class:`StreamResetError` (buffered bytes are dropped), the session's end with
  :class:`SessionClosedError` (buffered bytes stay readable);
* writing fails with :class:`StreamResetError`, then :class:`StreamClosedError` (our own
  half-close: local misuse), then :class:`SessionClosedError`, in that order.

Subclasses are slotted and fill in the transport hooks (``_on_read``, ``_send_fin``,
``_send_reset``, and where needed ``_wake_writers`` / ``_drop_unread``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from zikade_py.p2p.yamux_errors import SessionClosedError, StreamClosedError, StreamResetError


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


T_contra = TypeVar("T_contra", contravariant=True)


class StreamSession(Protocol[T_contra]):
    """What :class:`StreamBase` itself needs of its session (``T_contra``: its streams)."""

    @property
    def memory(self) -> MemoryBudget | None:
        """The budget received bytes draw from, if any."""
        ...

    def _remove_stream(self, stream: T_contra) -> None:
        """The stream has ended (both FINs or a reset): the session stops counting it."""
        ...


S = TypeVar("S", bound="StreamSession[Any]")


def fresh_event(event: asyncio.Event | None) -> asyncio.Event:
    """``event`` cleared for one more wait, or a new event where there was none yet: a
    stream makes its events only once something waits (most never wait)."""
    if event is None:
        return asyncio.Event()
    event.clear()
    return event


class StreamBase(Generic[S]):
    """The transport-independent half of a muxed stream (the host's ``MuxedStream``)."""

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

    _SESSION: ClassVar[str] = "session"
    """What the transport calls the thing under the stream, for error messages."""

    def __init__(self, session: S, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._recv_buf = bytearray()
        self._charged = 0  # bytes of _recv_buf reserved from the session's memory budget
        self._discard = False  # nobody will read: incoming data is dropped as it arrives
        self._readable: asyncio.Event | None = None  # made by the first reader that waits
        self._write_lock = asyncio.Lock()
        self._local_fin = False
        self._remote_fin = False
        self._reset = False
        self._session_closed = False
        self._on_end: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.stream_id} buffered={len(self._recv_buf)}>"

    # -- introspection ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received but not yet read by the application."""
        return len(self._recv_buf)

    @property
    def is_reset(self) -> bool:
        """Whether the stream was reset by either side."""
        return self._reset

    @property
    def is_fully_closed(self) -> bool:
        """Both sides sent FIN, or the stream was reset, or the session ended."""
        return self._reset or self._session_closed or (self._local_fin and self._remote_fin)

    # -- application API --------------------------------------------------------------------

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` after the peer's FIN; :class:`StreamResetError` after
        a reset; :class:`SessionClosedError` when the session ended first.

        Reading is what reopens the peer's window, so an unread stream stalls its sender.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        while True:
            if self._reset:
                raise StreamResetError(f"stream {self.stream_id} was reset")
            buf = self._recv_buf
            if buf:
                if len(buf) <= max_bytes:  # all of it: one copy, not a slice and a copy
                    out = bytes(buf)
                    buf.clear()
                else:
                    out = bytes(buf[:max_bytes])
                    del buf[:max_bytes]
                self._uncharge(len(out))
                self._on_read(len(out))
                return out
            if self._remote_fin:
                return b""
            if self._session_closed:
                raise SessionClosedError(
                    f"{self._SESSION} ended before stream {self.stream_id} did"
                )
            await self._wait_readable()

    async def write(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer (or our send buffer) is full."""
        raise NotImplementedError

    async def close(self) -> None:
        """Half-close: FIN after any data already queued; reading keeps working."""
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        self._wake_writers()
        if self._session_closed:
            return
        self._send_fin()
        if self._remote_fin:
            self._finish()

    async def reset(self) -> None:
        """Abort both directions: tell the peer, fail local readers and writers."""
        if self._reset or (self._local_fin and self._remote_fin):
            return
        self._mark_reset()
        if not self._session_closed:
            self._send_reset()

    def discard_incoming(self) -> None:
        """Nobody will read this stream any more: drop what is buffered and whatever still
        arrives (it still counts against the receive window, which is never reopened)."""
        self._discard = True
        self._recv_buf.clear()
        self._uncharge(self._charged)

    async def wait_remote_closed(self) -> None:
        """Return once the peer sent FIN or reset (or the session ended)."""
        while not (self._remote_fin or self._reset or self._session_closed):
            await self._wait_readable()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream has ended (both FINs, a reset or the
        session's end), at once if it already has: what frees a resource reservation
        held for the stream."""
        self._on_end = callback
        if self._reset or self._session_closed or (self._local_fin and self._remote_fin):
            self._ended()

    # -- transport hooks ----------------------------------------------------------------------

    def _on_read(self, size: int) -> None:
        """The application took ``size`` bytes: reopen the peer's window as needed."""
        raise NotImplementedError

    def _send_fin(self) -> None:
        """Put our FIN on the wire (the session is still open)."""
        raise NotImplementedError

    def _send_reset(self) -> None:
        """Tell the peer the stream is aborted (the session is still open)."""
        raise NotImplementedError

    def _wake_writers(self) -> None:
        """Wake writers blocked on the transport, so they see the new state."""

    def _drop_unread(self, size: int) -> None:
        """A reset drops ``size`` received bytes nobody read."""

    # -- state changes, called by the stream itself and by its session ------------------------

    def _on_remote_fin(self) -> None:
        if self._remote_fin:
            return
        self._remote_fin = True
        self._wake_readers()
        if self._local_fin:
            self._finish()

    def _on_remote_reset(self) -> None:
        if not self._reset:
            self._mark_reset()

    def _on_session_closed(self) -> None:
        self._session_closed = True
        # what is buffered stays readable, but no longer counts against the connection
        self._uncharge(self._charged)
        self._wake_readers()
        self._wake_writers()
        self._ended()

    def _mark_reset(self) -> None:
        self._reset = True
        if self._recv_buf:  # received, never read: work done for nothing
            self._drop_unread(len(self._recv_buf))
            self._recv_buf.clear()
        self._uncharge(self._charged)
        self._wake_readers()
        self._wake_writers()
        self._finish()

    async def _wait_readable(self) -> None:
        """Sleep until :meth:`_wake_readers`."""
        event = self._readable = fresh_event(self._readable)
        await event.wait()

    def _wake_readers(self) -> None:
        event = self._readable
        if event is not None:
            event.set()

    def _finish(self) -> None:
        """Both FINs or a reset: the session forgets the stream, ``on_end`` fires."""
        self._session._remove_stream(self)
        # _ended, inlined: this runs once for nearly every stream
        callback, self._on_end = self._on_end, None
        if callback is not None:
            callback()

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
        if self._local_fin:
            raise StreamClosedError(f"stream {self.stream_id} is closed for writing")
        if self._session_closed:
            raise SessionClosedError(f"{self._SESSION} is closed")
