"""What every muxed session shares, whatever carries it: the table of open streams, the
backlog of inbound streams waiting to be accepted, and ending them all with the session.

A Yamux session (``yamux.py``) and a QUIC connection (``quic/session.py``) differ in
everything on the wire; the stream bookkeeping the host sees through them is one set of
rules, kept here once:

* every stream not yet ended is in ``_streams`` (both directions; ``num_streams`` is what
  limits and the connection manager count); an inbound one also waits in ``_backlog``
  until :meth:`SessionBase.accept_stream` takes it, and the transport bounds that backlog;
* a stream that ended (both FINs or a reset) leaves the table through ``_remove_stream``;
* when the session ends, every stream in the table and the backlog learns it
  (``_on_session_closed``: buffered bytes stay readable, ``on_end`` fires), both empty,
  and a blocked ``accept_stream`` raises :class:`SessionClosedError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, ClassVar, Generic, TypeVar

from zikade_py.p2p.stream_base import MemoryBudget, StreamBase
from zikade_py.p2p.yamux_errors import SessionClosedError

T = TypeVar("T", bound="StreamBase[Any]")


class SessionBase(Generic[T]):
    """The transport-independent half of a muxed session (the host's ``MuxedSession``)."""

    __slots__ = ("_accept_event", "_backlog", "_streams", "memory")

    _SESSION: ClassVar[str] = "session"
    """What the transport calls itself, for error messages."""

    def __init__(self) -> None:
        self._streams: dict[int, T] = {}
        self._backlog: deque[T] = deque()
        self._accept_event = asyncio.Event()
        self.memory: MemoryBudget | None = None
        """Where received stream data is accounted (the host sets the connection's scope)."""

    @property
    def is_closed(self) -> bool:
        """Whether the session has ended (or started shutting down): no new streams."""
        raise NotImplementedError

    @property
    def num_streams(self) -> int:
        """Streams currently open in either direction (not fully closed or reset)."""
        return len(self._streams)

    @property
    def num_inbound_backlog(self) -> int:
        """Inbound streams waiting for :meth:`accept_stream`."""
        return len(self._backlog)

    async def accept_stream(self) -> T:
        """The next stream the peer opened; :class:`SessionClosedError` once the session ends."""
        while True:
            if self.is_closed:
                raise SessionClosedError(f"{self._SESSION} is closed")
            if self._backlog:
                stream = self._backlog.popleft()
                self._on_accepted(stream)
                return stream
            self._accept_event.clear()
            await self._accept_event.wait()

    def _on_accepted(self, stream: T) -> None:
        """Transport hook: ``accept_stream`` hands ``stream`` to the application now."""

    def _admit(self, stream: T) -> None:
        """A new inbound stream (its transport checked the limits): counted, and waiting."""
        self._streams[stream.stream_id] = stream
        self._backlog.append(stream)
        self._accept_event.set()

    def _remove_stream(self, stream: T) -> None:
        """The stream has ended (both FINs or a reset): it no longer counts."""
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]

    def _end_streams(self) -> None:
        """The session ended: every stream learns it, the tables empty, accepting stops."""
        streams = [*self._streams.values(), *self._backlog]
        self._streams.clear()
        self._backlog.clear()
        for stream in streams:
            stream._on_session_closed()
        self._accept_event.set()
