"""The dialer pipelines its connection upgrade (WIRE.md §3.3): ``/noise`` goes out with Noise
message 1, and ``/yamux/1.0.0`` is not waited for. Two round trips less per dial."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.p2p.connection import upgrade_outbound
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import BufferedReader, TcpStream
from zikade_py.p2p.mss import encode_message, handle_negotiation, read_message
from zikade_py.p2p.noise import NOISE_PROTOCOL_ID, secure_inbound
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.yamux import YamuxConfig

pytestmark = pytest.mark.timeout(30)

HEADER = encode_message("/multistream/1.0.0")
NO_KEEPALIVE = YamuxConfig(keepalive_interval=None)


async def test_noise_message_one_goes_with_the_proposal() -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # never answers: whatever arrives was sent without waiting for us
        want = len(HEADER) + len(encode_message(NOISE_PROTOCOL_ID)) + 2 + 32
        data = b""
        while len(data) < want and (chunk := await reader.read(want - len(data))):
            data += chunk
        got.set_result(data)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    dial = asyncio.create_task(
        upgrade_outbound(
            TcpStream(r, w), PrivateKey.generate(), None, yamux_config=NO_KEEPALIVE, timeout=5
        )
    )
    try:
        data = await asyncio.wait_for(got, 5)
        proposal = HEADER + encode_message(NOISE_PROTOCOL_ID)
        assert data.startswith(proposal)
        assert data[len(proposal) : len(proposal) + 2] == (32).to_bytes(2, "big")  # XX msg 1: e
    finally:
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_dialer_does_not_wait_for_the_muxer_echo() -> None:
    listener_key = PrivateKey.generate()
    proposal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def slow_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp = TcpStream(reader, writer)
        _, buffered = await handle_negotiation(
            tcp, lambda p: p == NOISE_PROTOCOL_ID, reader=BufferedReader(tcp)
        )
        noise = await secure_inbound(buffered, listener_key)
        inner = BufferedReader(noise)
        assert await read_message(inner) == "/multistream/1.0.0"
        proposal.set_result(await read_message(inner))
        await release.wait()  # the echo would come only now
        await tcp.close()

    server = await asyncio.start_server(slow_listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        conn = await asyncio.wait_for(
            upgrade_outbound(
                TcpStream(r, w),
                PrivateKey.generate(),
                PeerID.from_public_key(listener_key.public_key),
                yamux_config=NO_KEEPALIVE,
                timeout=5,
            ),
            5,
        )
        assert await asyncio.wait_for(proposal, 5) == "/yamux/1.0.0"
        assert not proposal.cancelled() and not release.is_set()  # done before any echo
        await conn.close()
    finally:
        release.set()
        server.close()
        await server.wait_closed()
