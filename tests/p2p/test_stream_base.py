"""The stream rules both transports share (``stream_base``, ``session_base``), checked on a
Yamux and a QUIC stream alike, each driven by hand over a stand-in session (no sockets):
when a stream has ended, what reads and writes raise, and that the memory budget and the
session's table are given back on every path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zikade_py.p2p.quic.stream import QuicStream
from zikade_py.p2p.session_base import SessionBase
from zikade_py.p2p.stream_base import StreamBase
from zikade_py.p2p.yamux_errors import SessionClosedError, StreamClosedError, StreamResetError
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, decode_header
from zikade_py.p2p.yamux_stream import YamuxStream

pytestmark = pytest.mark.timeout(30)

KINDS = ("yamux", "quic")


class Budget:
    """A memory budget that only counts."""

    def __init__(self) -> None:
        self.used = 0

    def reserve_memory(self, size: int) -> bool:
        self.used += size
        return True

    def release_memory(self, size: int) -> None:
        self.used -= size

    def headroom(self) -> int:
        return 1 << 30

    def note_discarded(self, size: int, now: float) -> float:
        return 0.0


class Link:
    """Stand-in for both sessions: records what the stream asked of it."""

    rtt = 0.0
    max_window = 16 << 20
    high_water = 256 * 1024

    def __init__(self) -> None:
        self.memory = Budget()
        self.removed: list[int] = []
        self.flags: list[int] = []  # yamux: flags of the frames queued
        self.sent: list[tuple[bytes, bool]] = []  # quic: (data, end_stream)
        self.aborted: list[tuple[bool, bool]] = []  # quic: (send, receive)
        self.dropped = 0

    # yamux SessionLink
    def _enqueue(self, frame: bytes, *, urgent: bool) -> None:
        self.flags.append(decode_header(frame[:HEADER_SIZE]).flags)

    async def _send_data(self, frame: bytes) -> None:
        self.flags.append(decode_header(frame[:HEADER_SIZE]).flags)

    def _note_dropped(self, size: int) -> None:
        self.dropped += size

    # both
    def _remove_stream(self, stream: Any) -> None:
        self.removed.append(stream.stream_id)

    # quic QuicLink
    def send(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.sent.append((data, end_stream))

    def send_buffered(self, stream_id: int) -> int:
        return 0

    async def wait_progress(self) -> None:
        pass

    def consumed(self, stream_id: int, size: int) -> None:
        pass

    def abort_stream(self, stream_id: int, *, send: bool, receive: bool) -> None:
        self.aborted.append((send, receive))


def make(kind: str) -> tuple[StreamBase[Any], Link]:
    link = Link()
    if kind == "yamux":
        return YamuxStream(link, 3, is_outbound=True), link
    return QuicStream(link, 4), link


def data(stream: StreamBase[Any], body: bytes) -> None:
    if isinstance(stream, YamuxStream):
        stream._on_data(body)
    else:
        assert isinstance(stream, QuicStream)
        stream._on_data(body, False)


def remote_fin(stream: StreamBase[Any]) -> None:
    if isinstance(stream, YamuxStream):
        stream._on_remote_fin()
    else:
        assert isinstance(stream, QuicStream)
        stream._on_data(b"", True)


class Ends:
    """An ``on_end`` callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("local_first", [True, False])
async def test_both_fins_end_the_stream_once(kind: str, local_first: bool) -> None:
    stream, link = make(kind)
    ends = Ends()
    stream.on_end(ends)
    await stream.write(b"request")
    if local_first:
        await stream.close()
        assert not stream.is_fully_closed and ends.calls == 0
    data(stream, b"answer")
    remote_fin(stream)
    if not local_first:
        assert not stream.is_fully_closed and ends.calls == 0
        await stream.close()
    assert stream.is_fully_closed and not stream.is_reset
    assert ends.calls == 1 and link.removed == [stream.stream_id]
    assert await stream.read() == b"answer"
    assert await stream.read() == b""
    await stream.reset()  # after both FINs: nothing to abort
    await stream.close()
    assert not stream.is_reset and ends.calls == 1 and link.removed == [stream.stream_id]
    assert link.memory.used == 0
    with pytest.raises(StreamClosedError):
        await stream.write(b"more")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("remote", [True, False])
async def test_a_reset_drops_what_is_buffered_and_fails_both_directions(
    kind: str, remote: bool
) -> None:
    stream, link = make(kind)
    ends = Ends()
    stream.on_end(ends)
    data(stream, b"x" * 100)
    assert link.memory.used == 100 and stream.buffered == 100
    if remote:
        stream._on_remote_reset()
    else:
        await stream.reset()
    assert stream.is_reset and stream.is_fully_closed and stream.buffered == 0
    assert link.memory.used == 0
    assert ends.calls == 1 and link.removed == [stream.stream_id]
    with pytest.raises(StreamResetError):
        await stream.read()
    with pytest.raises(StreamResetError):
        await stream.write(b"x")
    await stream.reset()
    stream._on_remote_reset()
    assert ends.calls == 1 and link.removed == [stream.stream_id]
    told = link.flags.count(Flag.RST) if kind == "yamux" else len(link.aborted)
    assert told == (0 if remote else 1)  # only a local reset is sent to the peer
    if kind == "yamux":
        assert link.dropped == 100  # received, never read: counted as dropped


@pytest.mark.parametrize("kind", KINDS)
async def test_the_session_end_leaves_buffered_bytes_readable(kind: str) -> None:
    stream, link = make(kind)
    ends = Ends()
    stream.on_end(ends)
    data(stream, b"late answer")
    stream._on_session_closed()
    assert stream.is_fully_closed and ends.calls == 1
    assert link.memory.used == 0  # no longer counts against the connection
    assert link.removed == []  # the session empties its table itself
    assert await stream.read(4) == b"late"
    assert await stream.read() == b" answer"
    with pytest.raises(SessionClosedError):
        await stream.read()
    with pytest.raises(SessionClosedError):
        await stream.write(b"x")
    await stream.close()
    await stream.reset()
    assert link.flags == [] and link.sent == [] and link.aborted == []  # nothing on the wire


@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_after_the_stream_ended_fires_at_once(kind: str) -> None:
    """A reservation tied to a stream that already ended is given back (a yamux stream
    kept such a callback for ever)."""
    stream, _ = make(kind)
    stream._on_remote_reset()
    ends = Ends()
    stream.on_end(ends)
    assert ends.calls == 1
    stream._on_session_closed()
    assert ends.calls == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_writing_after_our_close_is_misuse_even_once_the_session_ended(kind: str) -> None:
    stream, _ = make(kind)
    await stream.close()
    stream._on_session_closed()
    with pytest.raises(StreamClosedError):
        await stream.write(b"x")


@pytest.mark.parametrize("kind", KINDS)
async def test_discarded_streams_keep_nothing(kind: str) -> None:
    stream, link = make(kind)
    data(stream, b"a" * 50)
    stream.discard_incoming()
    data(stream, b"b" * 50)
    assert stream.buffered == 0 and link.memory.used == 0
    remote_fin(stream)
    assert await stream.read() == b""


@pytest.mark.parametrize("kind", KINDS)
async def test_a_waiting_reader_wakes_for_data_fin_reset_and_the_session_end(kind: str) -> None:
    for ending in ("data", "fin", "reset", "session"):
        stream, _ = make(kind)
        reader = asyncio.create_task(stream.read())
        closed = asyncio.create_task(stream.wait_remote_closed())
        await asyncio.sleep(0)
        assert not reader.done() and not closed.done()
        if ending == "data":
            data(stream, b"hi")
            assert await asyncio.wait_for(reader, 5) == b"hi"
            remote_fin(stream)
        elif ending == "fin":
            remote_fin(stream)
            assert await asyncio.wait_for(reader, 5) == b""
        elif ending == "reset":
            stream._on_remote_reset()
            with pytest.raises(StreamResetError):
                await asyncio.wait_for(reader, 5)
        else:
            stream._on_session_closed()
            with pytest.raises(SessionClosedError):
                await asyncio.wait_for(reader, 5)
        await asyncio.wait_for(closed, 5)


@pytest.mark.parametrize("kind", KINDS)
async def test_reads_take_at_most_max_bytes_in_order(kind: str) -> None:
    stream, link = make(kind)
    data(stream, b"0123456789")
    data(stream, b"abc")
    assert await stream.read(4) == b"0123"
    assert link.memory.used == 9
    assert await stream.read(9) == b"456789abc"
    assert link.memory.used == 0 and stream.buffered == 0
    with pytest.raises(ValueError):
        await stream.read(0)


async def test_a_yamux_writer_waiting_for_window_fails_when_the_stream_is_reset() -> None:
    stream, _ = make("yamux")
    assert isinstance(stream, YamuxStream)
    writer = asyncio.create_task(stream.write(bytes(stream.send_window + 1)))
    await asyncio.sleep(0)
    assert not writer.done()  # the window is spent: waiting for an update
    stream._on_remote_reset()
    with pytest.raises(StreamResetError):
        await asyncio.wait_for(writer, 5)


class Plain(StreamBase["Table"]):
    """A stream with nothing on the wire."""

    __slots__ = ()

    def _on_read(self, size: int) -> None:
        pass

    def _send_fin(self) -> None:
        pass

    def _send_reset(self) -> None:
        pass


class Table(SessionBase[Plain]):
    """The smallest session: open until :meth:`end`; records accepted streams."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.accepted: list[int] = []

    @property
    def is_closed(self) -> bool:
        return self.closed

    def _on_accepted(self, stream: Plain) -> None:
        self.accepted.append(stream.stream_id)

    def end(self) -> None:
        self.closed = True
        self._end_streams()


async def test_session_table_backlog_and_end() -> None:
    table = Table()
    streams = [Plain(table, i) for i in (2, 4, 6)]
    ends = Ends()
    for stream in streams:
        stream.on_end(ends)
        table._admit(stream)
    assert table.num_streams == 3 and table.num_inbound_backlog == 3
    assert await table.accept_stream() is streams[0]
    assert table.accepted == [2] and table.num_inbound_backlog == 2
    streams[0]._on_remote_reset()  # ended: leaves the table
    assert table.num_streams == 2 and ends.calls == 1
    table._remove_stream(streams[0])  # twice: nothing more
    assert table.num_streams == 2
    table.end()
    assert table.num_streams == 0 and table.num_inbound_backlog == 0
    assert ends.calls == 3 and all(s.is_fully_closed for s in streams)
    with pytest.raises(SessionClosedError):
        await table.accept_stream()


async def test_a_waiting_accept_raises_when_the_session_ends() -> None:
    table = Table()
    waiting = asyncio.create_task(table.accept_stream())
    await asyncio.sleep(0)
    assert not waiting.done()
    table.end()
    with pytest.raises(SessionClosedError):
        await asyncio.wait_for(waiting, 5)
