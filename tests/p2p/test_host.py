"""Loopback tests between two of our hosts: handshake, streams, flow control, close, reset."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import Direction, HostEvent, PeerConnected, PeerDisconnected
from zikade_py.p2p.host import DialError, Host, HostClosedError, HostConfig
from zikade_py.p2p.mss import ProtocolNotSupportedError
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.noise import PeerIDMismatchError
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.yamux import StreamResetError

pytestmark = pytest.mark.timeout(60)

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"


@asynccontextmanager
async def running(config: HostConfig | None = None, *addrs: Multiaddr) -> AsyncIterator[Host]:
    host = Host(PrivateKey.generate(), config or HostConfig())
    await host.start(list(addrs) or [LOOPBACK])
    try:
        yield host
    finally:
        await host.close()


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)


async def next_event(
    queue: NonBlockingQueue[HostEvent], kind: type, timeout: float = 5.0
) -> object:
    async with asyncio.timeout(timeout):
        while True:
            event = await queue.get()
            if isinstance(event, kind):
                return event


async def read_all(stream: Stream) -> bytes:
    out = bytearray()
    while data := await stream.read():
        out += data
    return bytes(out)


async def test_listen_addrs_are_concrete_and_ipv6_works() -> None:
    async with running(
        None, Multiaddr.parse("/ip4/0.0.0.0/tcp/0"), Multiaddr.parse("/ip6/::1/tcp/0")
    ) as b, running() as a:
        addrs = b.listen_addrs
        assert addrs
        assert all(not x.is_unspecified() and x.tcp_endpoint()[1] != 0 for x in addrs)  # type: ignore[index]
        assert any(str(x).startswith("/ip4/127.0.0.1/tcp/") for x in addrs)
        ip6 = [x for x in addrs if str(x).startswith("/ip6/::1/")]
        assert ip6
        conn = await a.connect(b.peer_id, ip6)
        assert conn.remote_peer == b.peer_id
        assert str(conn.remote_addr).startswith("/ip6/::1/")


async def test_handshake_both_sides_see_each_other() -> None:
    async with running() as a, running() as b:
        events_a, events_b = a.events(), b.events()
        conn = await a.connect(b.peer_id, b.listen_addrs)
        assert conn.remote_peer == b.peer_id
        assert conn.direction is Direction.OUTBOUND
        assert conn.remote_public_key == b.public_key
        ev_a = await next_event(events_a, PeerConnected)
        ev_b = await next_event(events_b, PeerConnected)
        assert isinstance(ev_a, PeerConnected) and isinstance(ev_b, PeerConnected)
        assert ev_a.peer == b.peer_id and ev_b.peer == a.peer_id
        assert ev_b.direction is Direction.INBOUND
        assert b.connmgr.get(a.peer_id) is not None
        assert len(a.connmgr) == len(b.connmgr) == 1


async def test_dial_checks_the_noise_identity() -> None:
    async with running() as a, running() as b:
        impostor = PeerID.from_public_key(PrivateKey.generate().public_key)
        with pytest.raises(DialError) as info:
            await a.connect(impostor, b.listen_addrs)
        assert isinstance(info.value.errors[0][1], PeerIDMismatchError)
        assert a.connmgr.get(impostor) is None
        # /p2p/ in the address names the peer when none is given
        conn = await a.connect(None, [b.listen_addrs[0].with_peer_id(b.peer_id)])
        assert conn.remote_peer == b.peer_id


async def test_unreachable_and_bad_dials_fail_cleanly() -> None:
    async with running() as a, running() as b:
        port = b.listen_addrs[0].tcp_endpoint()[1]  # type: ignore[index]
        await b.close()
        with pytest.raises(DialError):
            await a.connect(b.peer_id, [Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}")])
        with pytest.raises(DialError):
            await a.connect(b.peer_id, [])  # nothing in the peerstore
        with pytest.raises(DialError):
            await a.connect(a.peer_id, a.listen_addrs)
    with pytest.raises(HostClosedError):
        await a.connect(b.peer_id, b.listen_addrs)


async def test_concurrent_dials_coalesce() -> None:
    async with running() as a, running() as b:
        conns = await asyncio.gather(*(a.connect(b.peer_id, b.listen_addrs) for _ in range(10)))
        assert all(c is conns[0] for c in conns)
        assert len(a.connmgr) == 1
        assert await a.connect(b.peer_id) is conns[0]  # reused from then on


async def test_hundred_concurrent_streams() -> None:
    async with running() as a, running() as b:
        b.set_stream_handler(ECHO, echo)
        a.peerstore.add_addrs(b.peer_id, b.listen_addrs, 60)

        async def one(i: int) -> bool:
            stream = await a.new_stream(b.peer_id, [ECHO])
            payload = f"stream {i} ".encode() * (i + 1)
            await stream.write(payload)
            await stream.close()
            return await read_all(stream) == payload

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert all(results)
        assert len(a.connmgr) == 1
        conn = a.connmgr.get(b.peer_id)
        assert conn is not None and conn.streams_opened >= 100


async def test_ten_mib_through_one_stream() -> None:
    async with running() as a, running() as b:
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def sink(stream: Stream) -> None:
            digest, n = hashlib.sha256(), 0
            while data := await stream.read():
                digest.update(data)
                n += len(data)
            await stream.write(n.to_bytes(8, "big") + digest.digest())
            received.set_result(digest.digest())

        b.set_stream_handler("/test/sink", sink)
        payload = os.urandom(10 * 1024 * 1024)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.new_stream(b.peer_id, ["/test/sink"])
        for off in range(0, len(payload), 1 << 20):
            await stream.write(payload[off : off + (1 << 20)])
        await stream.close()
        reply = await read_all(stream)
        assert int.from_bytes(reply[:8], "big") == len(payload)
        assert reply[8:] == hashlib.sha256(payload).digest()
        assert await received == hashlib.sha256(payload).digest()


async def test_half_close_lets_the_peer_answer() -> None:
    async with running() as a, running() as b:
        async def upper(stream: Stream) -> None:
            request = await read_all(stream)  # ends at our FIN
            await stream.write(request.upper())

        b.set_stream_handler("/test/upper", upper)
        await a.connect(b.peer_id, b.listen_addrs)
        stream = await a.new_stream(b.peer_id, ["/test/upper"])
        await stream.write(b"hello ")
        await stream.write(b"world")
        await stream.close()
        assert await read_all(stream) == b"HELLO WORLD"
        assert stream.protocol == "/test/upper"
        assert stream.remote_peer == b.peer_id


async def test_reset_in_both_directions() -> None:
    async with running() as a, running() as b:
        seen: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def resetter(stream: Stream) -> None:
            await stream.read()
            await stream.reset()

        async def victim(stream: Stream) -> None:
            try:
                while await stream.read():
                    pass
            except StreamResetError as exc:
                seen.set_result(exc)
                return
            seen.set_result(None)

        b.set_stream_handler("/test/resetter", resetter)
        b.set_stream_handler("/test/victim", victim)
        await a.connect(b.peer_id, b.listen_addrs)
        s1 = await a.new_stream(b.peer_id, ["/test/resetter"])
        await s1.write(b"x")
        with pytest.raises(StreamResetError):
            async with asyncio.timeout(5):
                while await s1.read():
                    pass
        s2 = await a.new_stream(b.peer_id, ["/test/victim"])
        await s2.write(b"y")
        await s2.reset()
        assert isinstance(await asyncio.wait_for(seen, 5), StreamResetError)
        # the connection survives stream resets
        b.set_stream_handler(ECHO, echo)
        s3 = await a.new_stream(b.peer_id, [ECHO])
        await s3.write(b"ok")
        await s3.close()
        assert await read_all(s3) == b"ok"


async def test_unknown_protocol_is_refused_and_fallback_works() -> None:
    async with running() as a, running() as b:
        b.set_stream_handler(ECHO, echo)
        await a.connect(b.peer_id, b.listen_addrs)
        with pytest.raises(ProtocolNotSupportedError):
            await a.new_stream(b.peer_id, ["/nope/1"])
        stream = await a.new_stream(b.peer_id, ["/nope/1", ECHO])
        assert stream.protocol == ECHO
        b.remove_stream_handler(ECHO)
        with pytest.raises(ProtocolNotSupportedError):
            await a.new_stream(b.peer_id, [ECHO])


async def test_failing_handler_resets_only_its_stream() -> None:
    async with running() as a, running() as b:
        async def broken(stream: Stream) -> None:
            raise RuntimeError("handler bug")

        b.set_stream_handler("/test/broken", broken)
        b.set_stream_handler(ECHO, echo)
        await a.connect(b.peer_id, b.listen_addrs)
        with pytest.raises(StreamResetError):  # the RST may even beat the mss echo
            async with asyncio.timeout(5):
                await read_all(await a.new_stream(b.peer_id, ["/test/broken"]))
        s2 = await a.new_stream(b.peer_id, [ECHO])
        await s2.write(b"still fine")
        await s2.close()
        assert await read_all(s2) == b"still fine"


async def test_lazy_stream_sends_payload_with_the_proposal() -> None:
    async with running() as a, running() as b:
        b.set_stream_handler(ECHO, echo)
        conn = await a.connect(b.peer_id, b.listen_addrs)
        stream = await conn.open_stream_lazy(ECHO, b"early bytes")
        await stream.close()
        assert await read_all(stream) == b"early bytes"
        refused = await conn.open_stream_lazy("/nope/1", b"x")
        with pytest.raises(ProtocolNotSupportedError):
            await refused.read()


async def test_idle_connection_is_closed_by_the_manager() -> None:
    config = HostConfig(idle_timeout=0.3)
    async with running(config) as a, running() as b:
        events = a.events()
        conn = await a.connect(b.peer_id, b.listen_addrs)
        await a.identify.identify(conn)
        ev = await next_event(events, PeerDisconnected, timeout=10)
        assert isinstance(ev, PeerDisconnected) and ev.peer == b.peer_id
        assert conn.is_closed
        assert len(a.connmgr) == 0
        # b notices too
        for _ in range(100):
            if not len(b.connmgr):
                break
            await asyncio.sleep(0.05)
        assert len(b.connmgr) == 0


async def test_held_connection_stays_until_every_holder_released() -> None:
    config = HostConfig(idle_timeout=0.2)
    async with running(config) as a, running() as b:
        b.set_stream_handler(ECHO, echo)
        events = a.events()
        a.peerstore.add_addrs(b.peer_id, b.listen_addrs, 60)

        async def user(i: int) -> None:
            async with a.connmgr.hold(b.peer_id):
                stream = await a.new_stream(b.peer_id, [ECHO])
                await stream.write(bytes([i]))
                await stream.close()
                assert await read_all(stream) == bytes([i])
                await asyncio.sleep(0.01 * (i % 5))

        a.connmgr.acquire(b.peer_id)
        await asyncio.gather(*(user(i) for i in range(20)))
        conn = a.connmgr.get(b.peer_id)
        assert conn is not None
        await asyncio.sleep(0.6)  # three idle timeouts: still held by the outer acquire
        assert not conn.is_closed and a.connmgr.get(b.peer_id) is conn
        assert a.connmgr.holders(b.peer_id) == 1
        a.connmgr.release(b.peer_id)
        assert a.connmgr.total_holds() == 0
        await next_event(events, PeerDisconnected, timeout=10)
        assert conn.is_closed


async def test_connection_limit_refuses_beyond_max() -> None:
    config = HostConfig(max_connections=1)
    async with running(config) as b, running() as a1, running() as a2:
        await a1.connect(b.peer_id, b.listen_addrs)
        for _ in range(100):
            if len(b.connmgr):
                break
            await asyncio.sleep(0.02)
        b.connmgr.acquire(a1.peer_id)  # held: cannot be trimmed
        with pytest.raises(DialError):
            await a2.connect(b.peer_id, b.listen_addrs, timeout=5)
        assert b.connmgr.peers() == [a1.peer_id]


async def test_close_disconnects_peers_and_stops_everything() -> None:
    async with running() as b:
        a = Host(PrivateKey.generate())
        await a.start([LOOPBACK])
        events = b.events()
        await a.connect(b.peer_id, b.listen_addrs)
        await next_event(events, PeerConnected)
        queue = a.events()
        await a.close()
        assert queue.closed
        assert len(a.connmgr) == 0
        ev = await next_event(events, PeerDisconnected)
        assert isinstance(ev, PeerDisconnected) and ev.peer == a.peer_id
        await a.close()  # idempotent
        port = a.listen_addrs[0].tcp_endpoint()[1]  # type: ignore[index]
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
