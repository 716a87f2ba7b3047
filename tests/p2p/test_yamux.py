"""Yamux sessions end to end: over real TCP on 127.0.0.1 and over an in-memory pipe.

Two kinds of peer: a second :class:`YamuxSession`, and a scripted "raw" peer that writes
and reads frames by hand, so wire-level rules (windows, ACKs, pings, GoAway, flags on
window updates, protocol errors) are checked byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from zikade_py.p2p.io import BufferedReader, ByteStream, IncompleteReadError, TcpStream
from zikade_py.p2p.yamux import (
    GoAwayError,
    SessionClosedError,
    StreamClosedError,
    StreamLimitError,
    StreamResetError,
    YamuxConfig,
    YamuxError,
    YamuxProtocolError,
    YamuxSession,
    YamuxStream,
)
from zikade_py.p2p.yamux_frame import (
    HEADER_SIZE,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    decode_header,
    encode_header,
)

from .tcp_pair import tcp_pair

WINDOW = 256 * 1024
NO_KEEPALIVE = YamuxConfig(keepalive_interval=None)

pytestmark = pytest.mark.timeout(60)


# -- transports ---------------------------------------------------------------------------


class _Direction:
    """Bytes in flight one way, with a capacity so writers feel backpressure like on TCP."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False
        self.changed = asyncio.Event()

    def notify(self) -> None:
        self.changed.set()

    async def wait(self) -> None:
        self.changed.clear()
        await self.changed.wait()


class PipeEnd:
    """One end of an in-memory :class:`ByteStream` pair."""

    def __init__(self, rx: _Direction, tx: _Direction, capacity: int) -> None:
        self._rx = rx
        self._tx = tx
        self._capacity = capacity

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._rx.buf:
            if self._rx.closed:
                return b""
            await self._rx.wait()
        out = bytes(self._rx.buf[:max_bytes])
        del self._rx.buf[:max_bytes]
        self._rx.notify()
        return out

    async def write(self, data: bytes) -> None:
        while True:
            if self._tx.closed:
                raise ConnectionResetError("pipe closed")
            if len(self._tx.buf) < self._capacity:
                break
            await self._tx.wait()
        self._tx.buf += data
        self._tx.notify()

    async def close(self) -> None:
        for direction in (self._rx, self._tx):
            direction.closed = True
            direction.notify()


def memory_pipe(capacity: int = 1 << 20) -> tuple[PipeEnd, PipeEnd]:
    a_to_b, b_to_a = _Direction(), _Direction()
    return PipeEnd(b_to_a, a_to_b, capacity), PipeEnd(a_to_b, b_to_a, capacity)


@contextlib.asynccontextmanager
async def conn_pair(kind: str) -> AsyncIterator[tuple[ByteStream, ByteStream]]:
    if kind == "tcp":
        async with tcp_pair() as pair:
            yield pair
    else:
        yield memory_pipe()


def yamux_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("yamux") and not t.done()]


@contextlib.asynccontextmanager
async def session_pair(
    kind: str = "tcp",
    client_config: YamuxConfig = NO_KEEPALIVE,
    server_config: YamuxConfig = NO_KEEPALIVE,
) -> AsyncIterator[tuple[YamuxSession, YamuxSession]]:
    async with conn_pair(kind) as (dialer, listener):
        client = YamuxSession(dialer, is_client=True, config=client_config)
        server = YamuxSession(listener, is_client=False, config=server_config)
        await client.start()
        await server.start()
        try:
            yield client, server
        finally:
            await client.close()
            await server.close()
    assert yamux_tasks() == []


Handler = Callable[[YamuxStream], Coroutine[Any, Any, None]]


async def serve(session: YamuxSession, handler: Handler) -> None:
    """Accept streams until the session ends, one handler task each; cancel them on exit."""
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                stream = await session.accept_stream()
            except SessionClosedError:
                return
            task = asyncio.create_task(handler(stream))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def echo(stream: YamuxStream) -> None:
    with contextlib.suppress(YamuxError):
        while chunk := await stream.read():
            await stream.write(chunk)
        await stream.close()


async def read_all(stream: YamuxStream, limit: int = 64 << 20) -> bytes:
    out = bytearray()
    while chunk := await stream.read():
        out += chunk
        assert len(out) <= limit
    return bytes(out)


async def until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Yield to the loop until ``predicate`` holds; bounded in time and iterations."""
    async with asyncio.timeout(limit):
        for _ in range(100_000):
            if predicate():
                return
            await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


# -- a hand-driven peer -------------------------------------------------------------------


class RawPeer:
    """Writes and reads yamux frames directly, to check our session on the wire."""

    def __init__(self, conn: ByteStream) -> None:
        self.conn = conn
        self.reader = BufferedReader(conn)

    async def send(
        self, frame_type: FrameType, flags: int, stream_id: int, length: int, body: bytes = b""
    ) -> None:
        await self.conn.write(encode_header(frame_type, flags, stream_id, length) + body)

    async def data(self, stream_id: int, body: bytes, flags: int = 0) -> None:
        await self.send(FrameType.DATA, flags, stream_id, len(body), body)

    async def recv(self, limit: float = 10.0) -> tuple[FrameHeader, bytes]:
        async with asyncio.timeout(limit):
            header = decode_header(await self.reader.read_exactly(HEADER_SIZE))
            body = b""
            if header.type is FrameType.DATA and header.length:
                body = await self.reader.read_exactly(header.length)
            return header, body

    async def recv_until(
        self, predicate: Callable[[FrameHeader], bool], max_frames: int = 1000
    ) -> tuple[FrameHeader, bytes]:
        for _ in range(max_frames):
            header, body = await self.recv()
            if predicate(header):
                return header, body
        raise AssertionError("expected frame never arrived")

    async def frames_until_eof(self, max_frames: int = 10_000) -> list[FrameHeader]:
        frames = []
        with contextlib.suppress(IncompleteReadError):
            for _ in range(max_frames):
                frames.append((await self.recv())[0])
        return frames


@contextlib.asynccontextmanager
async def raw_pair(
    *, session_is_client: bool = False, config: YamuxConfig = NO_KEEPALIVE, kind: str = "memory"
) -> AsyncIterator[tuple[YamuxSession, RawPeer]]:
    async with conn_pair(kind) as (dialer, listener):
        ours, theirs = (dialer, listener) if session_is_client else (listener, dialer)
        session = YamuxSession(ours, is_client=session_is_client, config=config)
        await session.start()
        try:
            yield session, RawPeer(theirs)
        finally:
            await session.close()
            await theirs.close()
    assert yamux_tasks() == []


# -- streams between two sessions ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "memory"])
async def test_100_concurrent_echo_streams(kind: str) -> None:
    async with session_pair(kind) as (client, server):
        server_task = asyncio.create_task(serve(server, echo))

        async def one_then_close(i: int) -> None:
            stream = await client.open_stream()
            payload = os.urandom(1000 + 997 * i)
            await stream.write(payload)
            await stream.close()
            assert await read_all(stream) == payload

        async with asyncio.timeout(30):
            await asyncio.gather(*(one_then_close(i) for i in range(100)))
        await until(lambda: client.num_streams == 0 and server.num_streams == 0, "streams freed")
        server_task.cancel()
        await asyncio.gather(server_task, return_exceptions=True)


async def test_server_opens_streams_with_even_ids() -> None:
    async with session_pair("tcp") as (client, server):
        client_task = asyncio.create_task(serve(client, echo))
        ids = []
        for _ in range(3):
            stream = await server.open_stream()
            ids.append(stream.stream_id)
            await stream.write(b"ping")
            await stream.close()
            assert await read_all(stream) == b"ping"
        assert ids == [2, 4, 6]
        client_task.cancel()
        await asyncio.gather(client_task, return_exceptions=True)


async def test_10_mib_with_slow_reader_stays_within_window() -> None:
    total = 10 * 1024 * 1024
    payload = os.urandom(total)
    async with session_pair("tcp") as (client, server):
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(payload))
        inbound = await server.accept_stream()

        # The reader does not read at all: the sender must stop at exactly one window.
        await until(lambda: inbound.buffered == WINDOW, "receiver buffered a full window")
        await until(lambda: stream.send_window == 0, "sender ran out of window")
        for _ in range(20):
            await asyncio.sleep(0.001)
        assert not writer.done()
        assert inbound.buffered == WINDOW

        received = bytearray()
        max_buffered = 0
        reads = 0
        async with asyncio.timeout(40):
            while len(received) < total:
                max_buffered = max(max_buffered, inbound.buffered)
                assert inbound.buffered <= inbound.receive_window <= YamuxConfig().max_window
                chunk = await inbound.read(16 * 1024)
                assert chunk
                received += chunk
                reads += 1
                if reads % 8 == 0:
                    await asyncio.sleep(0.0005)  # slow consumer
            await writer
        assert bytes(received) == payload
        assert max_buffered <= WINDOW  # no RTT measured, so no auto-tuning
        await stream.close()
        assert await inbound.read() == b""


async def test_window_auto_tuning_respects_max_window() -> None:
    total = 4 * 1024 * 1024
    payload = os.urandom(total)
    config = YamuxConfig(keepalive_interval=None, max_window=1024 * 1024)
    async with session_pair("memory", config, config) as (client, server):
        await server.ping()  # gives the receiver an RTT to tune against
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(payload))
        inbound = await server.accept_stream()
        received = bytearray()
        async with asyncio.timeout(30):
            while len(received) < total:
                assert inbound.buffered <= inbound.receive_window <= 1024 * 1024
                received += await inbound.read()
            await writer
        assert bytes(received) == payload


async def test_larger_initial_window_is_granted_on_syn_and_ack() -> None:
    config = YamuxConfig(keepalive_interval=None, initial_window=WINDOW * 4)
    async with raw_pair(session_is_client=True, config=config) as (session, raw):
        stream = await session.open_stream()
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.WINDOW_UPDATE, Flag.SYN, 1, WINDOW * 3)
        # The peer may now send 1 MiB without an update; one byte more is a violation.
        await raw.data(1, bytes(WINDOW * 4))
        assert len(await stream.read(WINDOW * 4)) > 0


async def test_half_close_keeps_the_other_direction_open() -> None:
    async with session_pair("tcp") as (client, server):
        stream = await client.open_stream()
        await stream.write(b"hello")
        await stream.close()
        with pytest.raises(StreamClosedError):
            await stream.write(b"more")
        inbound = await server.accept_stream()
        assert await read_all(inbound) == b"hello"
        assert await inbound.read() == b""  # stays at EOF
        for i in range(5):
            await inbound.write(b"world %d " % i)
        first = await stream.read()  # before the FIN: the direction is still open
        assert first.startswith(b"world 0")
        await inbound.close()
        assert first + await read_all(stream) == b"".join(b"world %d " % i for i in range(5))
        await until(lambda: client.num_streams == 0 and server.num_streams == 0, "freed")


@pytest.mark.parametrize("resetter", ["opener", "acceptor"])
async def test_reset_from_either_side_fails_both_ends(resetter: str) -> None:
    async with session_pair("tcp") as (client, server):
        stream = await client.open_stream()
        await stream.write(b"x")
        inbound = await server.accept_stream()
        assert await inbound.read() == b"x"
        local, remote = (stream, inbound) if resetter == "opener" else (inbound, stream)

        blocked_read = asyncio.create_task(remote.read())
        await asyncio.sleep(0)
        await local.reset()
        with pytest.raises(StreamResetError):
            await local.read()
        with pytest.raises(StreamResetError):
            await local.write(b"y")
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(blocked_read, 10)
        with pytest.raises(StreamResetError):
            await remote.write(b"y")
        await until(lambda: client.num_streams == 0 and server.num_streams == 0, "freed")
        await local.reset()  # idempotent
        # The session itself is unaffected.
        again = await client.open_stream()
        await again.write(b"still fine")
        assert await (await server.accept_stream()).read() == b"still fine"


async def test_reset_wakes_a_writer_blocked_on_the_window() -> None:
    async with session_pair("memory") as (client, server):
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(bytes(WINDOW * 3)))
        inbound = await server.accept_stream()
        await until(lambda: stream.send_window == 0, "window exhausted")
        await inbound.reset()
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(writer, 10)


async def test_ping_measures_rtt() -> None:
    async with session_pair("tcp") as (client, server):
        rtts = await asyncio.gather(*(client.ping() for _ in range(5)), server.ping())
        assert all(isinstance(r, float) and r > 0 for r in rtts)
        assert client.rtt > 0 and server.rtt > 0


async def test_keepalive_between_live_sessions_keeps_them_open() -> None:
    config = YamuxConfig(keepalive_interval=0.02, ping_timeout=5.0)
    async with session_pair("tcp", config, config) as (client, server):
        await until(lambda: client.rtt > 0 and server.rtt > 0, "keep-alive pings answered")
        stamp = client.last_activity
        await until(lambda: client.last_activity > stamp, "more keep-alive traffic")
        assert not client.is_closed and not server.is_closed


async def test_keepalive_detects_a_dead_peer() -> None:
    config = YamuxConfig(keepalive_interval=0.05, ping_timeout=0.2)
    async with raw_pair(session_is_client=True, config=config, kind="tcp") as (session, raw):
        header, _ = await raw.recv()  # the first keep-alive ping; never answered
        assert header.type is FrameType.PING and header.flags == Flag.SYN
        async with asyncio.timeout(10):
            await session.wait_closed()
        assert session.is_closed
        assert isinstance(session.close_reason, SessionClosedError)
        assert "keep-alive" in str(session.close_reason)


async def test_max_streams_enforced_on_both_sides() -> None:
    small = YamuxConfig(keepalive_interval=None, max_streams=5)
    async with session_pair("memory", NO_KEEPALIVE, small) as (client, server):
        streams = [await client.open_stream() for _ in range(8)]
        await client.ping()  # the RSTs were sent before the ping answer
        reset = [s for s in streams if s.is_reset]
        assert [s.stream_id for s in reset] == [11, 13, 15]
        for s in reset:
            with pytest.raises(StreamResetError):
                await s.read()
        assert server.num_streams == 5
        accepted = [await server.accept_stream() for _ in range(5)]
        assert [s.stream_id for s in accepted] == [1, 3, 5, 7, 9]

    async with session_pair("memory", small, NO_KEEPALIVE) as (client, _server):
        opened = [await client.open_stream() for _ in range(5)]
        with pytest.raises(StreamLimitError):
            await client.open_stream()
        await opened[0].reset()
        assert (await client.open_stream()).stream_id == 11


async def test_accept_backlog_limit_resets_excess_syns_and_acks_on_accept() -> None:
    config = YamuxConfig(keepalive_interval=None, max_unacked_inbound=4)
    async with session_pair("memory", NO_KEEPALIVE, config) as (client, server):
        streams = [await client.open_stream() for _ in range(10)]
        await client.ping()
        assert [s.is_reset for s in streams] == [False] * 4 + [True] * 6
        assert not any(s.acked for s in streams)  # nobody accepted yet
        accepted = [await server.accept_stream() for _ in range(4)]
        await client.ping()
        assert [s.acked for s in streams[:4]] == [True] * 4
        # The backlog is free again.
        late = await client.open_stream()
        await late.write(b"late")
        assert await (await server.accept_stream()).read() == b"late"
        assert len(accepted) == 4


async def test_goaway_from_peer_blocks_new_streams_but_not_old_ones() -> None:
    async with raw_pair(session_is_client=True) as (session, raw):
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0)
        inbound = await session.accept_stream()
        ack, _ = await raw.recv()
        assert ack == FrameHeader(FrameType.WINDOW_UPDATE, Flag.ACK, 2, 0)
        outbound = await session.open_stream()
        await raw.recv()  # its SYN
        await raw.send(FrameType.GO_AWAY, 0, 0, GoAwayCode.NORMAL)
        await raw.data(2, b"after goaway")
        assert await inbound.read() == b"after goaway"
        assert session.remote_goaway == GoAwayCode.NORMAL
        with pytest.raises(GoAwayError):
            await session.open_stream()
        await outbound.write(b"old stream")
        header, body = await raw.recv()
        assert (header.type, header.stream_id, body) == (FrameType.DATA, 1, b"old stream")
        assert not session.is_closed


async def test_close_sends_goaway_and_peer_session_ends() -> None:
    async with session_pair("tcp") as (client, server):
        stream = await client.open_stream()
        await stream.write(b"a")
        inbound = await server.accept_stream()
        assert await inbound.read() == b"a"
        blocked_read = asyncio.create_task(inbound.read())
        blocked_accept = asyncio.create_task(server.accept_stream())
        await client.close()
        assert client.is_closed
        async with asyncio.timeout(10):
            await server.wait_closed()
        with pytest.raises(SessionClosedError):
            await blocked_read
        with pytest.raises(SessionClosedError):
            await blocked_accept
        with pytest.raises(SessionClosedError):
            await server.open_stream()
        with pytest.raises(SessionClosedError):
            await stream.write(b"b")


async def test_close_sends_goaway_with_the_error_code() -> None:
    async with raw_pair() as (session, raw):
        await session.close(error_code=GoAwayCode.INTERNAL_ERROR)
        frames = await raw.frames_until_eof()
        assert frames == [FrameHeader(FrameType.GO_AWAY, 0, 0, GoAwayCode.INTERNAL_ERROR)]


async def test_close_wakes_every_blocked_party_and_leaves_no_task() -> None:
    async with raw_pair(session_is_client=True) as (session, raw):
        stream = await session.open_stream()
        writer = asyncio.create_task(stream.write(bytes(WINDOW + 1)))  # blocks at the window
        reader = asyncio.create_task(stream.read())
        acceptor = asyncio.create_task(session.accept_stream())
        pinger = asyncio.create_task(session.ping())  # the raw peer never answers
        await until(lambda: stream.send_window == 0, "window exhausted")
        await session.close()
        for task in (writer, reader, acceptor, pinger):
            with pytest.raises(SessionClosedError):
                await asyncio.wait_for(task, 10)
        assert yamux_tasks() == []
        await session.close()  # idempotent
        assert raw is not None


async def test_peer_eof_ends_session_after_buffered_data() -> None:
    async with raw_pair() as (session, raw):
        await raw.data(1, b"first", Flag.SYN)
        await raw.data(3, b"second", Flag.SYN | Flag.FIN)
        s1 = await session.accept_stream()
        s3 = await session.accept_stream()
        await until(lambda: s3.buffered == 6, "data arrived")
        await raw.conn.close()
        async with asyncio.timeout(10):
            await session.wait_closed()
        assert await s1.read() == b"first"
        with pytest.raises(SessionClosedError):
            await s1.read()  # no FIN: truncated, not a clean end
        assert await s3.read() == b"second"
        assert await s3.read() == b""


# -- wire-level behaviour against the raw peer ----------------------------------------------


async def test_never_sends_beyond_the_peer_window() -> None:
    total = 3 * WINDOW + 12345
    payload = os.urandom(total)
    async with raw_pair() as (session, raw):
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        stream = await session.accept_stream()

        async def write_then_close() -> None:
            await stream.write(payload)
            await stream.close()

        writer = asyncio.create_task(write_then_close())
        window = WINDOW
        received = bytearray()
        saw_ack = False
        async with asyncio.timeout(30):
            while True:
                header, body = await raw.recv()
                assert header.stream_id == 1
                saw_ack |= header.has(Flag.ACK)
                if header.type is FrameType.DATA:
                    assert len(body) <= window, "sent beyond the peer's window"
                    window -= len(body)
                    received += body
                if header.has(Flag.FIN):
                    break
                if window == 0:  # grant a little at a time, like a slow peer
                    await raw.send(FrameType.WINDOW_UPDATE, 0, 1, 100_000)
                    window += 100_000
        await writer
        assert saw_ack
        assert bytes(received) == payload


async def test_syn_with_data_is_acked_on_accept() -> None:
    async with raw_pair() as (session, raw):
        await raw.data(1, b"hi", Flag.SYN)
        stream = await session.accept_stream()
        assert await stream.read() == b"hi"
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0)
        await stream.write(b"yo")
        header, body = await raw.recv()
        assert (header.type, header.flags, body) == (FrameType.DATA, 0, b"yo")


async def test_window_updates_are_sent_as_the_reader_consumes() -> None:
    async with raw_pair() as (session, raw):
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        stream = await session.accept_stream()
        await raw.recv()  # ACK
        await raw.data(1, bytes(WINDOW))  # exactly the window: allowed
        consumed = 0
        while consumed < WINDOW // 2 - 1000:
            consumed += len(await stream.read(1000))
        await stream.write(b"marker")  # data goes behind any queued update
        header, _ = await raw.recv()
        assert header.type is FrameType.DATA, "no update before half the window is read"
        while consumed < WINDOW // 2:
            consumed += len(await stream.read(WINDOW // 2 - consumed))
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.WINDOW_UPDATE, 0, 1, WINDOW // 2)


async def test_ping_syn_is_answered_with_ack_echoing_the_value() -> None:
    async with raw_pair() as (session, raw):
        for opaque in (7, 0, 2**32 - 1):
            await raw.send(FrameType.PING, Flag.SYN, 0, opaque)
            header, _ = await raw.recv()
            assert header == FrameHeader(FrameType.PING, Flag.ACK, 0, opaque)
        # An unsolicited ACK is ignored and never answered.
        await raw.send(FrameType.PING, Flag.ACK, 0, 99)
        await raw.send(FrameType.PING, Flag.SYN, 0, 100)
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.PING, Flag.ACK, 0, 100)
        assert not session.is_closed


async def test_our_ping_uses_syn_and_accepts_the_echo() -> None:
    async with raw_pair() as (session, raw):
        pinger = asyncio.create_task(session.ping())
        header, _ = await raw.recv()
        assert header.type is FrameType.PING and header.flags == Flag.SYN
        await raw.send(FrameType.PING, Flag.ACK, 0, header.length)
        assert await asyncio.wait_for(pinger, 10) > 0


async def test_fin_and_rst_on_window_update_frames() -> None:
    async with raw_pair() as (session, raw):
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        await raw.data(1, b"abc")
        await raw.send(FrameType.WINDOW_UPDATE, Flag.FIN, 1, 0)
        s1 = await session.accept_stream()
        assert await s1.read() == b"abc"
        assert await s1.read() == b""

        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 3, 0)
        s3 = await session.accept_stream()
        blocked = asyncio.create_task(s3.read())
        await raw.send(FrameType.WINDOW_UPDATE, Flag.RST, 3, 5)  # go-yamux v5: error code
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(blocked, 10)
        assert s3.send_window == WINDOW  # the code was not taken as a window delta
        # Late frames for the reset stream are dropped without harm.
        await raw.data(3, b"late")
        await raw.send(FrameType.WINDOW_UPDATE, Flag.RST, 3, 0)
        await raw.send(FrameType.PING, Flag.SYN, 0, 1)
        await raw.recv_until(lambda h: h.type is FrameType.PING)
        assert not session.is_closed


async def test_local_reset_and_fin_go_out_as_frames() -> None:
    async with raw_pair() as (session, raw):
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        await raw.send(FrameType.WINDOW_UPDATE, Flag.SYN, 3, 0)
        s1 = await session.accept_stream()
        s3 = await session.accept_stream()
        await s1.write(b"data")
        await s1.close()
        await s3.reset()
        frames = [(await raw.recv())[0] for _ in range(5)]
        assert frames == [
            FrameHeader(FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0),
            FrameHeader(FrameType.WINDOW_UPDATE, Flag.ACK, 3, 0),
            FrameHeader(FrameType.DATA, 0, 1, 4),
            FrameHeader(FrameType.WINDOW_UPDATE, Flag.FIN, 1, 0),
            FrameHeader(FrameType.WINDOW_UPDATE, Flag.RST, 3, 0),
        ]


async def test_our_outbound_stream_opens_with_window_update_syn() -> None:
    async with raw_pair(session_is_client=True) as (session, raw):
        stream = await session.open_stream()
        await stream.write(b"early data")  # no waiting for the ACK
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        header, body = await raw.recv()
        assert (header.type, header.stream_id, body) == (FrameType.DATA, 1, b"early data")
        assert not stream.acked
        await raw.send(FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0)
        await until(lambda: stream.acked, "ACK processed")


# -- protocol violations --------------------------------------------------------------------

VIOLATIONS: dict[str, bytes] = {
    "bad version": bytes.fromhex("010100010000000100000000"),
    "unknown type": bytes.fromhex("000400000000000100000000"),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "window overflow": encode_header(FrameType.DATA, Flag.SYN, 1, WINDOW + 1) + bytes(1000),
    "wrong-parity SYN": encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0),
    "duplicate SYN": encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0) * 2,
    "data on stream 0": encode_header(FrameType.DATA, 0, 0, 3) + b"abc",
    "window update on stream 0": encode_header(FrameType.WINDOW_UPDATE, 0, 0, 3),
    "overflow announced, body never sent": (
        encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        + encode_header(FrameType.DATA, 0, 1, WINDOW + 1)
    ),
    "overflow after updates": (
        encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
        + encode_header(FrameType.DATA, 0, 1, WINDOW)
        + bytes(WINDOW)
        + encode_header(FrameType.DATA, 0, 1, 1)
        + b"x"
    ),
}


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
async def test_protocol_violation_closes_only_that_session(violation: str) -> None:
    sessions: list[YamuxSession] = []
    serving: list[asyncio.Task[None]] = []

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        session = YamuxSession(TcpStream(r, w), is_client=False, config=NO_KEEPALIVE)
        sessions.append(session)
        await session.start()
        serving.append(asyncio.create_task(serve(session, echo)))

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    good = YamuxSession(
        TcpStream(*await asyncio.open_connection("127.0.0.1", port)),
        is_client=True,
        config=NO_KEEPALIVE,
    )
    await good.start()
    try:
        stream = await good.open_stream()
        await stream.write(b"before")
        assert await stream.read() == b"before"

        bad_conn = TcpStream(*await asyncio.open_connection("127.0.0.1", port))
        await until(lambda: len(sessions) == 2, "second session")
        with contextlib.suppress(ConnectionError):
            await bad_conn.write(VIOLATIONS[violation])
        frames = await RawPeer(bad_conn).frames_until_eof()
        await bad_conn.close()
        assert frames[-1] == FrameHeader(FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR)
        async with asyncio.timeout(10):
            await sessions[1].wait_closed()
        assert isinstance(sessions[1].close_reason, YamuxProtocolError)

        await stream.write(b"after")
        assert await stream.read() == b"after"
        assert not sessions[0].is_closed and not good.is_closed
    finally:
        await good.close()
        for session in sessions:
            await session.close()
        await asyncio.gather(*serving, return_exceptions=True)
        listener.close()
        await listener.wait_closed()
    assert yamux_tasks() == []


async def test_frames_for_unknown_streams_are_ignored() -> None:
    async with raw_pair() as (session, raw):
        await raw.data(5, b"nobody listens")
        await raw.send(FrameType.WINDOW_UPDATE, 0, 7, 1000)
        await raw.send(FrameType.WINDOW_UPDATE, Flag.FIN, 9, 0)
        await raw.send(FrameType.PING, Flag.SYN, 0, 42)
        header, _ = await raw.recv()
        assert header == FrameHeader(FrameType.PING, Flag.ACK, 0, 42)
        assert session.num_streams == 0 and not session.is_closed


def test_config_validation() -> None:
    YamuxConfig().validate()
    bad = [
        YamuxConfig(initial_window=1024),
        YamuxConfig(initial_window=32 << 20),
        YamuxConfig(max_window=1 << 33, max_frame_data=1 << 33),
        YamuxConfig(max_streams=0),
        YamuxConfig(max_unacked_inbound=0),
        YamuxConfig(keepalive_interval=0),
        YamuxConfig(ping_timeout=0),
        YamuxConfig(max_frame_data=1024),
    ]
    for config in bad:
        with pytest.raises(ValueError):
            config.validate()


async def test_session_cannot_start_twice_or_after_close() -> None:
    a, b = memory_pipe()
    session = YamuxSession(a, is_client=True, config=NO_KEEPALIVE)
    await session.start()
    with pytest.raises(YamuxError):
        await session.start()
    await session.close()
    with pytest.raises(SessionClosedError):
        await session.start()
    with pytest.raises(SessionClosedError):
        await session.ping()
    never_started = YamuxSession(b, is_client=False)
    await never_started.close()
    assert never_started.is_closed
    assert yamux_tasks() == []
