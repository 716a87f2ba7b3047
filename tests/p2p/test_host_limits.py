"""Issue 9, host findings: the resource manager's limits hold against hostile peers and
every reservation comes back (counters at zero) on close, reset, error and cancel.

Everything runs on 127.0.0.1; an empty allowlist makes 127.0.0.1 a stranger here.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.connmgr import InboundRateLimiter
from zikade_py.p2p.crypto import (
    InvalidKeyError,
    KeyType,
    PrivateKey,
    PublicKey,
    _encode_key_protobuf,
)
from zikade_py.p2p.events import Direction, PeerDisconnected
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.identify import IDENTIFY_PROTOCOL_ID, filter_listen_addrs
from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import PeerStore
from zikade_py.p2p.rcmgr import ResourceLimitError, ResourceLimits, ResourceManager, ip_group
from zikade_py.p2p.yamux import YamuxSession
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, encode_header

from .host_helpers import FAST, LOOPBACK, Sink, running, until

pytestmark = pytest.mark.timeout(60)

STRANGERS = ResourceLimits(allowlist=())
"""127.0.0.1 counts against its IP group like any other address."""
HOLD = "/test/hold/1.0.0"
ZERO = {
    "handshakes": 0,
    "connections": 0,
    "inbound_streams": 0,
    "outbound_streams": 0,
    "memory": 0,
    "ip_groups": 0,
    "peers": 0,
    "protocols": 0,
}


async def raw_socket(target: Host) -> TcpStream:
    host, port = target.listen_addrs[0].tcp_endpoint()  # type: ignore[misc]
    reader, writer = await asyncio.open_connection(host, port)
    return TcpStream(reader, writer)


# --- pure parts -----------------------------------------------------------------------------


def test_ip_groups_are_slash32_and_slash64_with_loopback_allowlisted() -> None:
    limits = ResourceLimits()
    assert ip_group("127.0.0.1", limits) is None and ip_group("::1", limits) is None
    assert ip_group("127.0.0.2", limits) == "127.0.0.2/32"
    assert ip_group("2001:db8:1:2:aaaa::1", limits) == ip_group("2001:db8:1:2:bbbb::9", limits)
    assert ip_group("2001:db8:1:2::1", limits) != ip_group("2001:db8:1:3::1", limits)
    assert ip_group("::ffff:10.0.0.1", limits) == "10.0.0.1/32"


def test_handshake_share_per_group_is_well_under_half_the_pool() -> None:
    mgr = ResourceManager(ResourceLimits(handshakes_per_ip_group=8), max_handshakes=64)
    held = [mgr.open_handshake("10.0.0.1") for _ in range(8)]
    with pytest.raises(ResourceLimitError):
        mgr.open_handshake("10.0.0.1")
    other = mgr.open_handshake("10.0.0.2")  # another group still gets a slot
    allowed = [mgr.open_handshake("127.0.0.1") for _ in range(20)]
    for h in [*held, other, *allowed, held[0]]:  # releasing twice is harmless
        h.release()
    assert mgr.stats() == ZERO
    assert ResourceLimits().handshakes_per_ip_group * 2 < HostConfig().max_pending_handshakes


def test_connection_scope_releases_everything_on_close() -> None:
    limits = ResourceLimits(connection_memory=100, host_memory=150, connections_per_peer=2)
    mgr = ResourceManager(limits, max_handshakes=64)
    peer = PeerID.from_public_key(PrivateKey.generate().public_key)
    a = mgr.open_connection(peer, "10.0.0.1")
    b = mgr.open_connection(peer, None)
    with pytest.raises(ResourceLimitError):
        mgr.open_connection(peer, None)  # per peer
    assert a.reserve_memory(100) and not a.reserve_memory(1)  # per connection
    assert not b.reserve_memory(51) and b.reserve_memory(50)  # the host's budget
    kad = [a.open_stream() for _ in range(32)]
    for s in kad:
        s.set_protocol("/ipfs/kad/1.0.0")
    extra = a.open_stream()
    with pytest.raises(ResourceLimitError):
        extra.set_protocol("/ipfs/kad/1.0.0")  # js and rust: 32 kad streams per connection
    extra.set_protocol("/other/1.0.0")
    kad[0].release()
    a.close()  # still holding streams and memory: all given back
    kad[1].release()  # late releases after the close change nothing
    b.release_memory(50)
    b.close()
    assert mgr.stats() == ZERO


def test_ip_group_is_parsed_once_per_address_and_the_memo_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each accept asks for the group three times (rate limit, handshake, connection);
    parsing the address and the allowlist was most of the accept's bookkeeping."""
    from zikade_py.p2p import rcmgr

    calls: list[str] = []
    real = rcmgr.ip_group

    def counting(ip: str, limits: ResourceLimits) -> str | None:
        calls.append(ip)
        return real(ip, limits)

    monkeypatch.setattr(rcmgr, "ip_group", counting)
    mgr = ResourceManager(ResourceLimits(), max_handshakes=64)
    assert [mgr.group("10.0.0.1") for _ in range(3)] == ["10.0.0.1/32"] * 3
    assert mgr.group("127.0.0.1") is None and mgr.group("127.0.0.1") is None
    assert calls == ["10.0.0.1", "127.0.0.1"]
    for i in range(10_000):  # rotating addresses: the memo stays bounded
        mgr.group(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(mgr._group_of) <= rcmgr._GROUP_MEMO


async def test_making_room_far_below_the_limits_does_not_walk_the_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(HostConfig(**FAST)) as target:
        walks = 0

        def walk(self: object) -> object:
            nonlocal walks
            walks += 1
            return iter(())

        from zikade_py.p2p.connmgr import ConnectionManager

        monkeypatch.setattr(ConnectionManager, "__iter__", walk)
        await target._make_room(Direction.INBOUND)
        await target._make_room(Direction.OUTBOUND)
        assert walks == 0


def test_rate_limiter_evicts_one_entry_not_the_table() -> None:
    """A full table costs O(1) per accept: the address seen longest ago goes, nothing else
    (the old prune walked all 4096 buckets and dropped every full one)."""
    rl = InboundRateLimiter(rate=1.0, burst=1)
    n = InboundRateLimiter.MAX_TRACKED
    for i in range(n):
        rl.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert rl.allow("10.99.0.1", 100.0)  # every bucket has refilled by now
    assert len(rl) == n
    assert not rl.allow("10.99.0.1", 100.0)  # its own bucket was kept


def test_rsa_public_exponent_is_bounded_like_go() -> None:
    n = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n
    for e, ok in (((1 << 31) - 1, True), ((1 << 31) + 1, False), ((1 << 1000) + 1, False)):
        der = (
            rsa.RSAPublicNumbers(e, n)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        encoded = _encode_key_protobuf(KeyType.RSA, der)
        if ok:
            PublicKey.from_protobuf(encoded)
        else:
            with pytest.raises(InvalidKeyError):
                PublicKey.from_protobuf(encoded)


def test_identify_listen_addresses_are_filtered_by_the_connection_scope() -> None:
    addrs = [
        Multiaddr.parse(a)
        for a in (
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.1.2.3/tcp/2",
            "/ip4/8.8.8.8/tcp/3",
            "/ip4/0.0.0.0/tcp/4",
            "/ip4/224.0.0.1/tcp/5",
            "/ip4/8.8.4.4/udp/6/quic-v1",  # dialable since QUIC (98154ce)
            "/ip4/8.8.4.4/udp/7",  # bare UDP: nothing we dial
        )
    ]
    quic = "/ip4/8.8.4.4/udp/6/quic-v1"
    public = filter_listen_addrs(addrs, Multiaddr.parse("/ip4/1.1.1.1/tcp/9"))
    assert [str(a) for a in public] == ["/ip4/8.8.8.8/tcp/3", quic]
    private = filter_listen_addrs(addrs, Multiaddr.parse("/ip4/192.168.1.1/tcp/9"))
    assert [str(a) for a in private] == ["/ip4/10.1.2.3/tcp/2", "/ip4/8.8.8.8/tcp/3", quic]
    assert len(filter_listen_addrs(addrs, Multiaddr.parse("/ip4/127.0.0.1/tcp/9"))) == 4


def test_peerstore_is_bounded_and_keeps_protected_peers() -> None:
    peers = [PeerID.from_public_key(PrivateKey.generate().public_key) for _ in range(12)]
    store = PeerStore(clock=lambda: 0.0, max_peers=5, protected=lambda p: p == peers[0])
    store.add_addrs(peers[1], [Multiaddr.parse("/ip4/1.2.3.4/tcp/1")], math.inf)
    for peer in peers:
        store.add_addrs(peer, [Multiaddr.parse("/ip4/1.2.3.5/tcp/1")], 60.0)
    assert len(store) == 5
    assert peers[0] in store and peers[1] in store and peers[-1] in store


def test_unknown_stream_data_is_discarded_as_it_arrives() -> None:
    """A Data frame for a stream that does not exist is dropped chunk by chunk, never
    buffered whole (it used to sit in the session's buffer up to 16 MiB)."""

    async def run() -> None:
        session = YamuxSession(Sink(), is_client=True)  # type: ignore[arg-type]
        await session.start(read_loop=False)
        length = 8 * 1024 * 1024
        session.feed(encode_header(FrameType.DATA, 0, 2, length))
        for _ in range(length // 65536):
            session.feed(b"\x00" * 65536)
            assert len(session._rbuf) < HEADER_SIZE
        session.feed(encode_header(FrameType.PING, Flag.SYN, 0, 7))  # framing intact
        assert not session.is_closed and len(session._rbuf) == 0
        await session.close()

    asyncio.run(run())


# --- against a running host -----------------------------------------------------------------


async def test_one_ip_group_gets_a_small_share_of_the_handshake_pool() -> None:
    limits = ResourceLimits(allowlist=(), handshakes_per_ip_group=3)
    config = HostConfig(max_pending_handshakes=16, handshake_timeout=30.0, limits=limits, **FAST)
    async with running(config) as target:
        silent = [await raw_socket(target) for _ in range(10)]
        await until(lambda: target.resources.stats()["handshakes"] == 3)
        await asyncio.sleep(0.2)
        assert target.resources.stats()["handshakes"] == 3
        for tcp in silent:
            tcp.abort()
        await until(lambda: target.resources.stats() == ZERO)


async def test_connections_per_ip_group_and_handshakes_never_overshoot() -> None:
    limits = ResourceLimits(allowlist=(), connections_per_ip_group=3)
    config = HostConfig(max_connections=50, limits=limits, **FAST)
    async with running(config) as target:
        clients = [Host(PrivateKey.generate()) for _ in range(6)]
        for c in clients:
            await c.start([])
        try:
            results = await asyncio.gather(
                *(c.connect(target.peer_id, target.listen_addrs, timeout=5) for c in clients),
                return_exceptions=True,
            )
            assert any(not isinstance(r, Exception) for r in results)
            await asyncio.sleep(0.3)
            assert len(target.connmgr) == 3
            assert target.resources.stats()["connections"] == 3
        finally:
            for c in clients:
                await c.close()
        await until(lambda: target.resources.stats() == ZERO and not len(target.connmgr))


async def test_concurrent_handshakes_never_push_past_max_connections() -> None:
    config = HostConfig(max_connections=2, **FAST)
    async with running(config) as target:
        clients = [Host(PrivateKey.generate()) for _ in range(8)]
        for c in clients:
            await c.start([])
        for c in clients:
            c.connmgr.acquire(target.peer_id)
        try:
            await asyncio.gather(
                *(c.connect(target.peer_id, target.listen_addrs, timeout=5) for c in clients),
                return_exceptions=True,
            )
            await asyncio.sleep(0.3)
            assert len(target.connmgr) <= 2
        finally:
            for c in clients:
                await c.close()


async def test_trimming_happens_after_auth_and_publishes_the_disconnect() -> None:
    config = HostConfig(max_connections=1, trim_grace=0.0, **FAST)
    async with running(config) as target:
        events = target.events()
        first, second = Host(PrivateKey.generate()), Host(PrivateKey.generate())
        await first.start([LOOPBACK])
        await second.start([])
        try:
            await first.connect(target.peer_id, target.listen_addrs)
            await until(lambda: len(target.connmgr) == 1)
            await until(lambda: bool(target.peerstore.addrs(first.peer_id)))  # identify ran
            # an unauthenticated socket evicts nobody
            silent = await raw_socket(target)
            await asyncio.sleep(0.2)
            assert target.connmgr.peers() == [first.peer_id]
            silent.abort()
            await second.connect(target.peer_id, target.listen_addrs)
            gone = None
            async with asyncio.timeout(5):
                while gone is None:
                    event = await events.get()
                    if isinstance(event, PeerDisconnected):
                        gone = event.peer
            assert gone == first.peer_id
            await until(lambda: target.connmgr.peers() == [second.peer_id])
            rec = target.peerstore._peers[first.peer_id]
            assert rec.addrs and all(exp != math.inf for exp in rec.addrs.values())
        finally:
            await first.close()
            await second.close()


async def test_unfinished_stream_is_reset_after_the_close_timeout() -> None:
    """A peer that never sends its FIN after identify no longer keeps the connection busy
    (and thus untrimmable) forever."""
    config = HostConfig(stream_close_timeout=5.0, **FAST)
    async with running(config) as target, running(HostConfig(), listen=False) as client:
        conn = await client.connect(target.peer_id, target.listen_addrs)
        stream = await conn.open_stream([IDENTIFY_PROTOCOL_ID])
        while await stream.read():  # the answer and the server's FIN; we never FIN
            pass
        server_conn = target.connmgr.get(client.peer_id)
        assert server_conn is not None
        await until(lambda: server_conn.num_streams == 0)
        assert server_conn.lingering == 1  # only waits for our FIN: the connection is idle
        await until(lambda: server_conn.session.num_streams == 0)
        await until(lambda: target.resources.stats()["inbound_streams"] == 0)
        # the RST reaches us one frame later than the server forgets the stream
        await until(lambda: conn.num_streams == 0)  # our side is gone too


async def test_inbound_streams_per_connection_wait_unacked_then_are_reset() -> None:
    """``max_unacked_inbound`` applies: beyond the connection's stream slots new streams wait
    in the backlog, beyond that they are reset; slots come back when handlers finish."""
    limits = ResourceLimits(inbound_streams_per_connection=2)
    config = HostConfig(max_unacked_inbound=2, limits=limits, **FAST)
    release = asyncio.Event()
    served = 0

    async def hold(stream: Stream) -> None:
        nonlocal served
        served += 1
        await release.wait()
        await stream.write(b"done")

    async with running(config) as target, running(HostConfig(), listen=False) as client:
        target.set_stream_handler(HOLD, hold)
        conn = await client.connect(target.peer_id, target.listen_addrs)
        await client.identify_peer(target.peer_id)
        await until(lambda: target.resources.stats()["inbound_streams"] == 0)
        proposal = b"\x13/multistream/1.0.0\n\x11" + HOLD.encode() + b"\n"
        inner = [await conn.session.open_stream() for _ in range(2)]
        for s in inner:
            await s.write(proposal)
        await until(lambda: served == 2)  # both slots taken
        inner += [await conn.session.open_stream() for _ in range(4)]
        for s in inner[2:]:
            await s.write(proposal)
        await until(lambda: sum(s.is_reset for s in inner) == 2)  # beyond the backlog
        server_conn = target.connmgr.get(client.peer_id)
        assert server_conn is not None and server_conn.session.num_inbound_backlog == 2
        assert target.resources.stats()["inbound_streams"] == 2
        release.set()
        for s in inner[:2]:
            await s.close()  # our FIN completes the close: the slots come back
        await until(lambda: served == 4)
        for s in inner:
            await s.close()
        await until(lambda: server_conn.session.num_streams == 0)
        await until(lambda: target.resources.stats()["inbound_streams"] == 0)


async def test_connection_memory_budget_resets_the_stream_not_the_host() -> None:
    """Data a handler does not read draws from the connection's budget; past it the stream is
    reset; closing gives every byte back."""
    limits = ResourceLimits(connection_memory=300 * 1024)
    config = HostConfig(limits=limits, **FAST)
    parked = asyncio.Event()

    async def never_reads(stream: Stream) -> None:
        await parked.wait()

    async with running(config) as target, running(HostConfig(), listen=False) as client:
        target.set_stream_handler(HOLD, never_reads)
        conn = await client.connect(target.peer_id, target.listen_addrs)
        streams = [await conn.open_stream([HOLD]) for _ in range(3)]
        for s in streams:
            with pytest.raises(Exception):  # noqa: B017 - reset or window: either stops us
                async with asyncio.timeout(1.0):
                    await s.write(b"x" * (512 * 1024))
        assert 0 < target.resources.stats()["memory"] <= 300 * 1024
        await until(lambda: any(s._inner.is_reset for s in streams))  # the RST may trail
        await conn.close()
        await until(lambda: target.resources.stats() == ZERO)


async def test_outbound_streams_per_peer_are_limited_and_given_back() -> None:
    """go's StreamsOutbound per peer: past the limit opening a stream fails at once (no SYN
    goes out); a stream that ended (reset, both FINs, the connection's end) frees its place."""
    parked = asyncio.Event()

    async def hold(stream: Stream) -> None:
        await parked.wait()

    three = HostConfig(limits=ResourceLimits(outbound_streams_per_peer=3))
    async with running(HostConfig(**FAST)) as target, running(three, listen=False) as client:
        target.set_stream_handler(HOLD, hold)
        conn = await client.connect(target.peer_id, target.listen_addrs)
        await client.identify_peer(target.peer_id)
        await until(lambda: client.resources.stats()["outbound_streams"] == 0)  # identify's
        held = [await conn.open_stream([HOLD]) for _ in range(3)]
        assert client.resources.stats()["outbound_streams"] == 3
        open_before = conn.session.num_streams
        with pytest.raises(ResourceLimitError):
            await conn.open_stream([HOLD])
        with pytest.raises(ResourceLimitError):
            await client.new_stream(target.peer_id, [HOLD])
        assert conn.session.num_streams == open_before  # refused before anything was sent
        await held[0].reset()
        again = await conn.open_stream([HOLD])  # the reset stream's place is free
        assert client.resources.stats()["outbound_streams"] == 3
        parked.set()
        await conn.close()
        await until(lambda: client.resources.stats() == ZERO)
        assert again._inner.is_fully_closed


async def test_counters_return_to_zero_after_streams_errors_and_cancel() -> None:
    async def fails(stream: Stream) -> None:
        await stream.read()
        raise RuntimeError("handler bug")

    async with running(HostConfig(**FAST)) as target:
        target.set_stream_handler("/test/fails/1.0.0", fails)
        target.set_stream_handler(HOLD, lambda s: asyncio.sleep(3600))
        for _ in range(3):
            async with running(HostConfig(), listen=False) as client:
                conn = await client.connect(target.peer_id, target.listen_addrs)
                s1 = await conn.open_stream(["/test/fails/1.0.0"])
                await s1.write(b"x" * 1000)
                s2 = await conn.open_stream([HOLD])
                await s2.write(b"y" * 100_000)
                s3 = await conn.open_stream([IDENTIFY_PROTOCOL_ID])
                await s3.read()
                await until(lambda: target.resources.stats()["inbound_streams"] >= 1)
            # the client closed while a handler held a stream: the handler is cancelled
            await until(lambda: target.resources.stats() == ZERO)
        assert not target._conn_tasks or all(not ts for ts in target._conn_tasks.values())


async def test_failing_maintenance_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("maintenance bug")

    async with running(HostConfig(), listen=False) as host:
        with caplog.at_level(logging.ERROR, logger="zikade_py.p2p.host"):
            task = host._spawn(broken(), name="maintenance")
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)
    assert any("maintenance bug" in r.getMessage() for r in caplog.records)


def test_limits_live_in_the_node_config_and_show_in_help() -> None:
    from zikade_py.dht.config import NodeConfig
    from zikade_py.p2p.host import limits_help

    text = limits_help()
    assert "8 per IP group" in text and "256 MiB in total" in text and "/ipfs/kad/1.0.0 32" in text
    assert "outbound streams: 512 per peer" in text and "16 failed stream negotiations" in text
    bad = NodeConfig(host=HostConfig(limits=ResourceLimits(connection_memory=0)))
    with pytest.raises(ValueError):
        bad.validate()


def test_trimming_prefers_crowded_groups() -> None:
    """Under a flood, a lone legitimate peer's idle connection is not the one trimmed while
    a crowded IP group has idle ones."""
    from zikade_py.p2p.connmgr import ConnectionManager

    from .test_connmgr import FakeConn, peer

    cm: ConnectionManager[FakeConn] = ConnectionManager(clock=lambda: 100.0)
    lone, crowd1, crowd2 = FakeConn(peer(1), 1.0), FakeConn(peer(2), 5.0), FakeConn(peer(3), 6.0)
    for c in (lone, crowd1, crowd2):
        cm.add(c, now=0.0)
    size = {lone: 1, crowd1: 8, crowd2: 8}
    assert cm.trim_candidate() is lone  # least recently used alone
    assert cm.trim_candidate(crowd=lambda c: size[c]) is crowd1
    assert cm.trim_candidate(lambda c: c is not crowd1, lambda c: size[c]) is crowd2


async def test_window_grows_only_within_the_memory_budget() -> None:
    """Auto-tuning draws on the connection's budget: with no headroom the receive window
    stays at 256 KiB, with room it grows (the transfer completes either way)."""
    import os

    from zikade_py.p2p.yamux import YamuxConfig

    from .test_yamux import session_pair

    class Budget:
        def __init__(self, room: int) -> None:
            self.room = room

        def reserve_memory(self, size: int) -> bool:
            return True

        def release_memory(self, size: int) -> None:
            return None

        def headroom(self) -> int:
            return self.room

        def note_discarded(self, size: int, now: float) -> float:
            return 0.0

    for room, grows in ((100 * 1024, False), (64 * 1024 * 1024, True)):
        payload = os.urandom(4 * 1024 * 1024)
        config = YamuxConfig(keepalive_interval=None)
        async with session_pair("memory", config, config) as (client, server):
            server.memory = Budget(room)
            await server.ping()  # an RTT to tune against
            stream = await client.open_stream()
            writer = asyncio.create_task(stream.write(payload))
            inbound = await server.accept_stream()
            received = bytearray()
            biggest = 0
            async with asyncio.timeout(30):
                while len(received) < len(payload):
                    received += await inbound.read()
                    biggest = max(biggest, inbound.receive_window)
                await writer
            assert bytes(received) == payload
            assert (biggest > 256 * 1024) is grows
