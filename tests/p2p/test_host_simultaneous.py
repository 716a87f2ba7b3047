"""Simultaneous dials: both hosts keep the same one connection, and nothing in flight breaks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from zikade_py.p2p.connection import Connection, Stream
from zikade_py.p2p.connmgr import ConnectionManager
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import Direction
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(90)

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"
CONFIG = replace(HostConfig(), redundant_grace=0.5)  # > the peer needs to see both
ROUNDS = 12


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)


async def round_trip(conn: Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream([ECHO], timeout=5)
    await stream.write(payload)
    await stream.close()
    out = bytearray()
    while data := await stream.read():
        out += data
    return bytes(out)


def open_conns(host: Host, peer: PeerID) -> list[Connection]:
    return [c for c in host.connmgr.connections(peer) if not c.is_closed]


async def converge(a: Host, b: Host, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            len(a.connmgr) == len(b.connmgr) == 1
            and open_conns(a, b.peer_id)
            and open_conns(b, a.peer_id)
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(
        f"no single connection: a has {a.connmgr.connections()}, b has {b.connmgr.connections()}"
    )


async def one_round(i: int) -> tuple[int, int]:
    a, b = Host(PrivateKey.generate(), CONFIG), Host(PrivateKey.generate(), CONFIG)
    for h in (a, b):
        h.set_stream_handler(ECHO, echo)
        await h.start([LOOPBACK])
    try:
        conn_a, conn_b = await asyncio.gather(
            a.connect(b.peer_id, b.listen_addrs), b.connect(a.peer_id, a.listen_addrs)
        )
        # requests made on whatever each dial returned go through, whichever connection wins
        replies = await asyncio.gather(
            round_trip(conn_a, b"from a %d" % i), round_trip(conn_b, b"from b %d" % i)
        )
        assert replies == [b"from a %d" % i, b"from b %d" % i]
        await converge(a, b)
        (left,) = open_conns(a, b.peer_id)
        (right,) = open_conns(b, a.peer_id)
        # the same TCP connection, seen from both ends
        assert left.local_addr == right.remote_addr and left.remote_addr == right.local_addr
        # the one whose dialer has the smaller peer id multihash
        a_dials = a.peer_id.multihash < b.peer_id.multihash
        assert left.direction is (Direction.OUTBOUND if a_dials else Direction.INBOUND)
        assert a.connmgr.get(b.peer_id) is left and b.connmgr.get(a.peer_id) is right
        assert await a.connect(b.peer_id) is left
        assert await round_trip(left, b"after") == b"after"
        assert await round_trip(right, b"after") == b"after"
        return len(a.connmgr), len(b.connmgr)
    finally:
        await a.close()
        await b.close()


async def test_simultaneous_dials_keep_one_connection_on_both_sides() -> None:
    counts = await asyncio.gather(*(one_round(i) for i in range(ROUNDS)))
    assert counts == [(1, 1)] * ROUNDS


async def test_sequential_duplicate_is_retired_on_both_sides() -> None:
    # b dials a after a already dialed b: both sides settle on the same one
    a, b = Host(PrivateKey.generate(), CONFIG), Host(PrivateKey.generate(), CONFIG)
    for h in (a, b):
        h.set_stream_handler(ECHO, echo)
        await h.start([LOOPBACK])
    try:
        first = await a.connect(b.peer_id, b.listen_addrs)
        await asyncio.sleep(0.05)  # b has taken a's connection in
        handed_out = await b._dial(a.peer_id, a.listen_addrs, 5.0)  # connect() would reuse
        assert handed_out is b.connmgr.get(a.peer_id)  # the dial hands out the survivor
        await converge(a, b)
        (kept,) = open_conns(a, b.peer_id)
        assert (kept is first) == (a.peer_id.multihash < b.peer_id.multihash)
        assert await round_trip(kept, b"x") == b"x"
    finally:
        await a.close()
        await b.close()


class FakeConn:
    def __init__(self, remote: PeerID) -> None:
        self.remote_peer = remote
        self.num_streams = 0
        self.last_used = 0.0
        self.is_closed = False

    async def close(self) -> None:
        self.is_closed = True


def test_retired_connection_is_not_handed_out_and_closes_after_grace() -> None:
    peer = PeerID.from_public_key(PrivateKey.from_seed(b"\x01" * 32).public_key)
    cm: ConnectionManager[FakeConn] = ConnectionManager(
        idle_timeout=30.0, redundant_grace=1.0, clock=lambda: 0.0
    )
    keep, extra = FakeConn(peer), FakeConn(peer)
    cm.add(keep, now=0)
    cm.add(extra, now=0)
    cm.acquire(peer)  # holds keep the peer's connection, not its redundant one
    cm.retire(extra, now=0)
    assert cm.get(peer) is keep
    extra.num_streams = 1  # still carrying a request: stays
    assert cm.expired(now=100) == []
    extra.num_streams = 0
    extra.last_used = 100
    assert cm.next_due() == 101
    assert cm.expired(now=100.5) == []
    assert cm.expired(now=101) == [extra]
    # the kept one died first: the retired one is the peer's connection again
    cm.remove(keep)
    assert cm.get(peer) is extra
    assert cm.expired(now=1000) == []  # held again
