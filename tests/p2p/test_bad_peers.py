"""Peers that break the protocol are disconnected; everyone else keeps being served.

Each case talks to the host over a raw socket, doing by hand as much of the
real upgrade (mss, Noise, mss, yamux) as it needs to reach the layer it breaks.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.io import BufferedReader, ByteStream, TcpStream
from zikade_py.p2p.mss import select_protocol
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.noise import NoiseSession, secure_outbound
from zikade_py.p2p.yamux import YAMUX_PROTOCOL_ID

pytestmark = pytest.mark.timeout(60)

CONFIG = HostConfig(handshake_timeout=1.0, inbound_per_ip_burst=1000, inbound_per_ip_rate=1000)


@asynccontextmanager
async def served() -> AsyncIterator[tuple[Host, Host]]:
    """The host under attack, with a well-behaved peer connected to it."""
    target, good = Host(PrivateKey.generate(), CONFIG), Host(PrivateKey.generate())
    await target.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    await good.start([])
    try:
        await good.connect(target.peer_id, target.listen_addrs)
        yield target, good
    finally:
        await good.close()
        await target.close()


async def raw_connect(target: Host) -> TcpStream:
    host, port = target.listen_addrs[0].tcp_endpoint()  # type: ignore[misc]
    reader, writer = await asyncio.open_connection(host, port)
    return TcpStream(reader, writer)


async def assert_disconnected(stream: ByteStream, timeout: float = 10.0) -> None:
    """Read until the host hangs up (EOF or an error); fail if it keeps talking to us."""
    async with asyncio.timeout(timeout):
        for _ in range(10_000):
            try:
                if not await stream.read():
                    return
            except Exception:
                return
    raise AssertionError("host kept the connection open")


async def assert_still_serving(target: Host, good: Host) -> None:
    assert len(await good.ping(target.peer_id, 2)) == 2
    fresh = Host(PrivateKey.generate())
    await fresh.start([])
    try:
        await fresh.connect(target.peer_id, target.listen_addrs, timeout=5)
        assert len(await fresh.ping(target.peer_id, 1, timeout=5)) == 1
    finally:
        await fresh.close()
    assert len(target.connmgr) >= 1


async def secured(target: Host) -> NoiseSession:
    """A real, authenticated Noise session with mss ``/yamux/1.0.0`` agreed: raw yamux next."""
    tcp = await raw_connect(target)
    _, reader = await select_protocol(tcp, ["/noise"])
    noise = await secure_outbound(reader, PrivateKey.generate(), target.peer_id)
    await select_protocol(noise, [YAMUX_PROTOCOL_ID])
    return noise


def yamux_header(kind: int, flags: int, stream_id: int, length: int) -> bytes:
    return struct.pack(">BBHII", 0, kind, flags, stream_id, length)


async def test_plain_garbage_is_disconnected() -> None:
    async with served() as (target, good):
        tcp = await raw_connect(target)
        await tcp.write(os.urandom(64) + b"\n" * 10)
        await assert_disconnected(tcp)
        await assert_still_serving(target, good)


async def test_oversize_mss_message_is_disconnected() -> None:
    async with served() as (target, good):
        tcp = await raw_connect(target)
        await tcp.write(b"\x13/multistream/1.0.0\n" + b"\xd0\x0f" + b"a" * 2000)
        await assert_disconnected(tcp)
        await assert_still_serving(target, good)


async def test_silent_peer_is_dropped_after_the_handshake_timeout() -> None:
    async with served() as (target, good):
        tcp = await raw_connect(target)
        await assert_disconnected(tcp, timeout=10)
        await assert_still_serving(target, good)


async def test_tls_proposal_gets_na_then_noise_is_accepted() -> None:
    async with served() as (target, good):
        tcp = await raw_connect(target)
        proto, _ = await select_protocol(tcp, ["/tls/1.0.0", "/noise"])
        assert proto == "/noise"
        await tcp.close()
        await assert_still_serving(target, good)


async def test_broken_noise_handshakes_are_disconnected() -> None:
    async with served() as (target, good):
        # message 1 of the wrong size
        tcp = await raw_connect(target)
        await select_protocol(tcp, ["/noise"])
        await tcp.write(b"\x00\x05hello")
        await assert_disconnected(tcp)
        # a real message 1, then garbage for message 3 (fails authentication)
        tcp = await raw_connect(target)
        _, reader = await select_protocol(tcp, ["/noise"])
        await tcp.write(b"\x00\x20" + os.urandom(32))
        size = int.from_bytes(await reader.read_exactly(2), "big")
        await reader.read_exactly(size)
        await tcp.write(b"\x00\xa8" + os.urandom(168))
        await assert_disconnected(tcp)
        # a frame length announcing more than is ever sent, then stalling (handshake timeout)
        tcp = await raw_connect(target)
        await select_protocol(tcp, ["/noise"])
        await tcp.write(b"\xff\xff" + os.urandom(100))
        await assert_disconnected(tcp)
        await assert_still_serving(target, good)


async def test_yamux_garbage_after_a_real_handshake() -> None:
    async with served() as (target, good):
        noise = await secured(target)
        for _ in range(50):
            if len(target.connmgr) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(target.connmgr) == 2
        await noise.write(b"\x07" + os.urandom(23))  # bad version
        await assert_disconnected(noise)
        for _ in range(100):
            if len(target.connmgr) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(target.connmgr) == 1
        await assert_still_serving(target, good)


async def test_yamux_window_violation_is_disconnected() -> None:
    async with served() as (target, good):
        noise = await secured(target)
        too_much = 256 * 1024 + 1
        await noise.write(yamux_header(0, 0x1, 1, too_much) + bytes(too_much))
        await assert_disconnected(noise)
        await assert_still_serving(target, good)


async def test_yamux_wrong_parity_is_disconnected() -> None:
    async with served() as (target, good):
        noise = await secured(target)
        await noise.write(yamux_header(1, 0x1, 2, 0))  # a dialer must use odd ids
        await assert_disconnected(noise)
        await assert_still_serving(target, good)


async def test_stream_flood_is_capped_not_fatal() -> None:
    config = HostConfig(max_streams_per_connection=8)
    target, good = Host(PrivateKey.generate(), config), Host(PrivateKey.generate())
    await target.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    await good.start([])
    try:
        noise = await secured(target)
        # 64 SYNs and no mss at all: the target resets what exceeds its limit
        await noise.write(b"".join(yamux_header(1, 0x1, 2 * i + 1, 0) for i in range(64)))
        reader = BufferedReader(noise)
        resets = 0
        async with asyncio.timeout(10):
            while resets < 64 - 8:
                header = await reader.read_exactly(12)
                _, kind, flags, _sid, length = struct.unpack(">BBHII", header)
                if kind == 0 and length:
                    await reader.read_exactly(length)
                if flags & 0x8:
                    resets += 1
        assert resets >= 64 - 8
        await good.connect(target.peer_id, target.listen_addrs)
        assert len(await good.ping(target.peer_id, 1)) == 1
    finally:
        await good.close()
        await target.close()


async def test_inbound_rate_limit_per_ip() -> None:
    config = HostConfig(inbound_per_ip_burst=3, inbound_per_ip_rate=0.001)
    target = Host(PrivateKey.generate(), config)
    await target.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        greeted = 0
        for _ in range(6):
            tcp = await raw_connect(target)
            try:
                async with asyncio.timeout(5):
                    data = await tcp.read()
            except TimeoutError:
                data = b""
            greeted += data.startswith(b"\x13/multistream/1.0.0\n")
            await tcp.close()
        assert greeted == 3
    finally:
        await target.close()
