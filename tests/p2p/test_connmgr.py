"""ConnectionManager bookkeeping with explicit time, its asyncio driver, and the rate limiter."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.p2p.connmgr import (
    ConnectionLimitError,
    ConnectionManager,
    InboundRateLimiter,
    ReleaseError,
)
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID


def peer(seed: int) -> PeerID:
    return PeerID.from_public_key(PrivateKey.from_seed(bytes([seed]) * 32).public_key)


class FakeConn:
    def __init__(self, remote: PeerID, last_used: float = 0.0) -> None:
        self.remote_peer = remote
        self.num_streams = 0
        self.last_used = last_used
        self.is_closed = False
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        self.is_closed = True


def manager(**kw: float) -> ConnectionManager[FakeConn]:
    return ConnectionManager(
        max_connections=int(kw.get("max_connections", 10)),
        idle_timeout=kw.get("idle_timeout", 30.0),
        clock=lambda: 0.0,
    )


def test_refcounts_and_len() -> None:
    cm = manager()
    a, b = peer(1), peer(2)
    ca, cb = FakeConn(a), FakeConn(b)
    cm.add(ca, now=0)
    cm.add(cb, now=0)
    assert len(cm) == 2
    assert cm.get(a) is ca
    assert cm.acquire(a) == 1
    assert cm.acquire(a) == 2
    assert cm.holders(a) == 2
    assert cm.release(a, now=1) == 1
    assert cm.release(a, now=2) == 0
    assert cm.total_holds() == 0
    with pytest.raises(ReleaseError):
        cm.release(a)
    assert cm.remove(ca) is True
    assert cm.get(a) is None
    assert len(cm) == 1


def test_idle_expiry_uses_explicit_time() -> None:
    cm = manager(idle_timeout=30)
    a = peer(1)
    conn = FakeConn(a, last_used=5)
    cm.add(conn, now=0)
    assert cm.next_due() == 35
    assert cm.expired(now=34.9) == []
    assert cm.expired(now=35) == [conn]
    # a holder keeps it, however long
    cm.acquire(a)
    assert cm.expired(now=1000) == []
    assert cm.next_due() is None
    # after release the idle clock restarts at the release time
    cm.release(a, now=1000)
    assert cm.expired(now=1029) == []
    assert cm.expired(now=1030) == [conn]
    # open streams keep it too
    conn.num_streams = 1
    assert cm.expired(now=5000) == []


def test_hold_before_connecting_protects_later_connection() -> None:
    cm = manager(idle_timeout=10)
    a = peer(3)
    cm.acquire(a)
    conn = FakeConn(a)
    cm.add(conn, now=0)
    assert cm.expired(now=100) == []
    cm.release(a, now=100)
    assert cm.expired(now=110) == [conn]


async def test_make_room_trims_least_recently_used_idle() -> None:
    cm = manager(max_connections=3)
    conns = [FakeConn(peer(i), last_used=float(i)) for i in range(1, 4)]
    for c in conns:
        cm.add(c, now=0)
    cm.acquire(peer(1))  # the oldest is held
    conns[1].num_streams = 2  # the second is busy
    await cm.make_room()
    assert conns[2].closes == 1
    assert len(cm) == 2
    newcomer = FakeConn(peer(9))
    cm.add(newcomer, now=0)
    await cm.make_room()  # the only unheld idle one left is the newcomer
    assert newcomer.closes == 1
    assert conns[0].closes == conns[1].closes == 0


async def test_make_room_refuses_when_everything_is_held() -> None:
    cm = manager(max_connections=2)
    for i in (1, 2):
        cm.add(FakeConn(peer(i)), now=0)
        cm.acquire(peer(i))
    with pytest.raises(ConnectionLimitError):
        await cm.make_room()
    assert len(cm) == 2


async def test_driver_closes_idle_connections() -> None:
    loop = asyncio.get_running_loop()
    cm: ConnectionManager[FakeConn] = ConnectionManager(idle_timeout=0.05, clock=loop.time)
    idle, held = FakeConn(peer(1), last_used=loop.time()), FakeConn(peer(2), last_used=loop.time())
    cm.add(idle)
    cm.add(held)
    cm.acquire(peer(2))
    task = asyncio.create_task(cm.run(poll_interval=0.02))
    try:
        for _ in range(200):
            if idle.closes:
                break
            await asyncio.sleep(0.01)
        assert idle.closes == 1
        assert held.closes == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_rate_limiter_token_bucket() -> None:
    rl = InboundRateLimiter(rate=2.0, burst=3)
    assert [rl.allow("1.2.3.4", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.allow("5.6.7.8", 0.0)  # other addresses are independent
    assert not rl.allow("1.2.3.4", 0.4)  # 0.8 tokens
    assert rl.allow("1.2.3.4", 0.5)  # 1.0 token
    assert not rl.allow("1.2.3.4", 0.5)


def test_rate_limiter_table_is_bounded() -> None:
    rl = InboundRateLimiter(rate=1.0, burst=1)
    for i in range(InboundRateLimiter.MAX_TRACKED + 100):
        rl.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(rl) <= InboundRateLimiter.MAX_TRACKED
