"""The receive path without a reader task (pump.py): frames reach streams from the transport
callback, pipelined bytes are kept, and bad bytes still close the session."""

from __future__ import annotations

import asyncio
import os

import pytest

from zikade_py.p2p.connection import Connection, Stream, upgrade_outbound
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.io import BufferedReader, TcpStream
from zikade_py.p2p.mss import encode_message, handle_negotiation, read_message
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.noise import NOISE_PROTOCOL_ID, NoiseSession, secure_inbound
from zikade_py.p2p.pump import NoisePump
from zikade_py.p2p.yamux import YamuxConfig

pytestmark = pytest.mark.timeout(30)

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"
NO_KEEPALIVE = YamuxConfig(keepalive_interval=None)


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)


def raw_tcp(conn: Connection) -> TcpStream:
    noise = conn.session._conn._reader.stream  # type: ignore[attr-defined]
    assert isinstance(noise, NoiseSession)
    tcp = noise.raw_stream
    assert isinstance(tcp, TcpStream)
    return tcp


async def test_host_connections_are_pumped_without_reader_tasks() -> None:
    a, b = Host(PrivateKey.generate()), Host(PrivateKey.generate())
    b.set_stream_handler(ECHO, echo)
    await a.start([LOOPBACK])
    await b.start([LOOPBACK])
    try:
        conn = await a.connect(b.peer_id, b.listen_addrs)
        # pipelined right behind the handshake: must survive the hand-over to the pump
        streams = [await conn.open_stream_lazy(ECHO, b"%d" % i) for i in range(20)]
        for i, stream in enumerate(streams):
            await stream.close()
            assert await stream.reader.read_exactly(len(b"%d" % i)) == b"%d" % i
        async with asyncio.timeout(5):
            while (inbound := b.connmgr.get(a.peer_id)) is None:
                await asyncio.sleep(0.01)
        for c in (conn, inbound):
            assert isinstance(raw_tcp(c).writer.transport.get_protocol(), NoisePump)
        readers = [t for t in asyncio.all_tasks() if t.get_name() == "yamux-reader"]
        assert readers == []
        payload = os.urandom(3 << 20)  # flow control and window updates through the pump
        stream = await a.new_stream(b.peer_id, [ECHO])

        async def send() -> None:
            await stream.write(payload)
            await stream.close()

        sender = asyncio.create_task(send())
        got = await stream.reader.read_exactly(len(payload))
        await sender
        assert got == payload
    finally:
        await a.close()
        await b.close()


async def test_tampered_frame_closes_the_session() -> None:
    a, b = Host(PrivateKey.generate()), Host(PrivateKey.generate())
    await a.start([LOOPBACK])
    await b.start([LOOPBACK])
    try:
        conn = await a.connect(b.peer_id, b.listen_addrs)
        await a.identify.identify(conn)
        inbound = b.connmgr.get(a.peer_id)
        assert inbound is not None
        raw_tcp(inbound).writer.write(b"\x00\x20" + os.urandom(32))  # not sealed by b's key
        async with asyncio.timeout(5):
            await conn.wait_closed()
        assert conn.is_closed
    finally:
        await a.close()
        await b.close()


async def test_refused_muxer_closes_the_dialers_session() -> None:
    listener_key = PrivateKey.generate()

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp = TcpStream(reader, writer)
        _, buffered = await handle_negotiation(
            tcp, lambda p: p == NOISE_PROTOCOL_ID, reader=BufferedReader(tcp)
        )
        noise = await secure_inbound(buffered, listener_key)
        inner = BufferedReader(noise)
        await noise.write(encode_message("/multistream/1.0.0"))
        assert await read_message(inner) == "/multistream/1.0.0"
        assert await read_message(inner) == "/yamux/1.0.0"
        await noise.write(encode_message("na"))
        await asyncio.sleep(5)

    server = await asyncio.start_server(refusing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        conn = await upgrade_outbound(
            TcpStream(r, w), PrivateKey.generate(), None, yamux_config=NO_KEEPALIVE, timeout=5
        )
        async with asyncio.timeout(5):
            await conn.wait_closed()
        assert conn.is_closed
    finally:
        server.close()
        await server.wait_closed()
