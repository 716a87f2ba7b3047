"""Issue 9, scenario 1c: a connection that makes us work for nothing is slowed, then closed.

* data we drop unread (for reset, closed or unknown streams) draws on a per-connection
  allowance; past it, reading from the socket pauses (TCP slows the sender);
* inbound streams whose negotiation fails (junk, a reset before a protocol) are counted
  per connection; past ``bad_streams_per_connection`` the connection is closed;
* a partial yamux frame waiting in the session's buffer is charged to the memory budget.
"""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import HostConfig
from zikade_py.p2p.identify import IDENTIFY_PROTOCOL_ID
from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.rcmgr import ConnectionScope, ResourceLimits, ResourceManager
from zikade_py.p2p.yamux import YamuxSession
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, encode_header

from .host_helpers import FAST, Sink, running, until

pytestmark = pytest.mark.timeout(60)

KiB = 1024


def scope(**limits: int) -> ConnectionScope:
    mgr = ResourceManager(ResourceLimits(**limits), max_handshakes=8)  # type: ignore[arg-type]
    return mgr.open_connection(PeerID.from_public_key(PrivateKey.generate().public_key), None)


async def test_dropped_data_past_the_allowance_pauses_reading() -> None:
    sink = Sink()
    session = YamuxSession(sink, is_client=True)  # type: ignore[arg-type]
    session.memory = scope(discard_rate=256 * KiB, discard_burst=1024 * KiB)
    await session.start(read_loop=False)
    try:
        session.feed(encode_header(FrameType.DATA, 0, 2, 768 * KiB))  # no such stream
        for _ in range(12):
            session.feed(b"\x00" * (64 * KiB))
        assert sink.pauses == []  # 768 KiB: within the burst
        session.feed(encode_header(FrameType.DATA, 0, 4, 512 * KiB))
        for _ in range(8):
            session.feed(b"\x00" * (64 * KiB))
        assert sink.pauses and 0 < sink.pauses[-1] <= 5.0  # 256 KiB over: about a second
        assert session.read_pauses == len(sink.pauses)
        assert not session.is_closed  # slowed, not dropped
    finally:
        await session.close()


async def test_partial_frame_is_charged_to_the_memory_budget() -> None:
    budget = scope(connection_memory=300 * KiB)
    session = YamuxSession(Sink(), is_client=True)  # type: ignore[arg-type]
    session.memory = budget
    await session.start(read_loop=False)
    try:
        session.feed(encode_header(FrameType.DATA, Flag.SYN, 2, 200 * KiB) + b"x" * (100 * KiB))
        assert budget.memory == HEADER_SIZE + 100 * KiB  # waiting in the session's buffer
        session.feed(b"x" * (100 * KiB))
        assert budget.memory == 200 * KiB  # now in the stream's buffer, charged once
        session.feed(encode_header(FrameType.DATA, Flag.SYN, 4, 200 * KiB) + b"y" * (150 * KiB))
        assert session.is_closed  # 200 + 150 KiB would pass the 300 KiB budget
        assert budget.memory == 0
    finally:
        await session.close()


async def test_pause_reading_for_pauses_then_resumes_the_socket() -> None:
    accepted: asyncio.Queue[TcpStream] = asyncio.Queue()

    async def on_accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put(TcpStream(r, w))

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        tcp = await accepted.get()
        transport = tcp.writer.transport
        tcp.pause_reading_for(0.2)
        assert not transport.is_reading()  # type: ignore[attr-defined]
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(5):
            assert await tcp.read(5) == b"hello"  # readable again after the pause
        writer.close()
        await tcp.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_streams_opened_to_fail_close_the_connection() -> None:
    """Each junk stream is reset by the node; past the allowance the connection goes. Good
    streams (identify) do not count."""
    config = HostConfig(limits=ResourceLimits(bad_streams_per_connection=4), **FAST)
    async with running(config) as target, running(HostConfig(), listen=False) as client:
        conn = await client.connect(target.peer_id, target.listen_addrs)
        for _ in range(6):  # more than the allowance of good streams
            s = await conn.open_stream([IDENTIFY_PROTOCOL_ID])
            await s.read()
            await s.close()
        junk = []
        for _ in range(20):
            if conn.is_closed:
                break
            inner = await conn.session.open_stream()
            junk.append(inner)
            await inner.write(b"\x00" * 1000)  # not a multistream header
            await until(lambda inner=inner: inner.is_reset or conn.is_closed)  # type: ignore[misc]
        await until(lambda: conn.is_closed)
        assert 4 <= len(junk) <= 6  # closed right after the allowance ran out
        await until(lambda: not len(target.connmgr))
