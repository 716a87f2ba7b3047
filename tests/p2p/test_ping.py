"""libp2p ping (WIRE.md §7): echoes, many pings per stream, wrong echoes, stream limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.ping import (
    MAX_INBOUND_PING_STREAMS,
    PING_PROTOCOL_ID,
    PING_SIZE,
    PingError,
    ping_stream,
)
from zikade_py.p2p.yamux import StreamResetError

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Host, Host]]:
    a, b = Host(PrivateKey.generate()), Host(PrivateKey.generate())
    await a.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    await b.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        await a.connect(b.peer_id, b.listen_addrs)
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_many_pings_on_one_stream() -> None:
    async with pair() as (a, b):
        rtts = await a.ping(b.peer_id, 20)
        assert len(rtts) == 20 and all(r > 0 for r in rtts)
        assert len(await b.ping(a.peer_id, 2)) == 2  # and the other way


async def test_raw_echo_and_half_close() -> None:
    async with pair() as (a, b):
        stream = await a.new_stream(b.peer_id, [PING_PROTOCOL_ID])
        payload = bytes(range(PING_SIZE)) * 3
        await stream.write(payload)  # three pings in one write
        await stream.close()
        got = bytearray()
        while data := await stream.read():
            got += data
        assert bytes(got) == payload  # echoed, then the handler closed its side too


async def test_partial_ping_gets_the_stream_reset() -> None:
    async with pair() as (a, b):
        stream = await a.new_stream(b.peer_id, [PING_PROTOCOL_ID])
        await stream.write(b"short")
        await stream.close()
        with pytest.raises(StreamResetError):
            while await stream.read():
                pass


async def test_wrong_echo_is_a_ping_error() -> None:
    async with pair() as (a, b):

        async def liar(stream: Stream) -> None:
            data = await stream.reader.read_exactly(PING_SIZE)
            await stream.write(bytes(reversed(data)))

        b.set_stream_handler("/test/liar", liar)
        stream = await a.new_stream(b.peer_id, ["/test/liar"])
        with pytest.raises(PingError):
            async for _ in ping_stream(stream, 3):
                pass


async def test_inbound_ping_streams_per_peer_are_limited() -> None:
    async with pair() as (a, b):
        streams = [
            await a.new_stream(b.peer_id, [PING_PROTOCOL_ID])
            for _ in range(MAX_INBOUND_PING_STREAMS)
        ]
        for s in streams:  # make sure the handlers are running
            await s.write(bytes(PING_SIZE))
            assert await s.reader.read_exactly(PING_SIZE) == bytes(PING_SIZE)
        # the reset may overtake the protocol echo (one write carries both): either way it fails
        with pytest.raises(StreamResetError):
            extra = await a.new_stream(b.peer_id, [PING_PROTOCOL_ID])
            await extra.write(bytes(PING_SIZE))
            await extra.reader.read_exactly(PING_SIZE)
        for s in streams:
            await s.close()
            assert await s.read() == b""  # the handler finished (and freed its slot)
        assert len(await a.ping(b.peer_id, 1)) == 1  # slots free again


async def test_count_must_be_positive() -> None:
    async with pair() as (a, b):
        stream = await a.new_stream(b.peer_id, [PING_PROTOCOL_ID])
        with pytest.raises(ValueError):
            async for _ in ping_stream(stream, 0):
                pass
