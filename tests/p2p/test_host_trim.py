"""Issue 9, scenario 1b: which connection goes when an inbound connection needs room.

A flood of identities from a few addresses arrives faster than the trim grace period
(a connection that young is protected: it has not opened its first stream yet). Before
the fix, a legitimate newcomer arriving then was admitted by the handshake and closed
right after it ('session ended before stream 3 did' on its first ping), and a flooding
connection evicted a legitimate peer's older idle connection. Now a connection never
evicts one from a less crowded IP group, and the grace period does not shield a crowded
group's connections from a newcomer of a less crowded one.

Clients listen on 127.0.0.2 (the flood) or 127.0.0.3 (legitimate peers) and so dial from
there (``localaddrs.dial_source``); the target runs on 127.0.0.1 with an empty allowlist.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import pytest

from zikade_py.p2p.connmgr import ConnectionManager
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.rcmgr import ResourceLimits

from .host_helpers import FAST, running, until
from .test_connmgr import FakeConn, peer

pytestmark = pytest.mark.timeout(60)

FLOOD = "127.0.0.2"
LEGIT = "127.0.0.3"


def config(max_inbound: int) -> HostConfig:
    """Room for ``max_inbound`` inbound connections, 127.0.0.1 not exempt, and a grace
    period no test outlives (a connection is 'old' only when a test makes it so)."""
    return HostConfig(
        max_connections=50,
        max_inbound_connections=max_inbound,
        trim_grace=600.0,
        limits=ResourceLimits(allowlist=()),
        **FAST,
    )


async def clients(stack: AsyncExitStack, ip: str, n: int) -> list[Host]:
    """``n`` hosts dialing from ``ip``, closed with ``stack``."""
    hosts = []
    for _ in range(n):
        host = Host(PrivateKey.generate(), HostConfig(**FAST))
        await host.start([Multiaddr.parse(f"/ip4/{ip}/tcp/0")])
        stack.push_async_callback(host.close)
        hosts.append(host)
    return hosts


def idle(target: Host, n: int) -> bool:
    """``n`` connections, none carrying a stream (identify done both ways)."""
    conns = list(target.connmgr)
    return len(conns) == n and not any(c.num_streams for c in conns)


async def test_a_newcomer_gets_in_while_a_young_flood_fills_the_inbound_share() -> None:
    async with running(config(max_inbound=6)) as target, AsyncExitStack() as stack:
        flood = await clients(stack, FLOOD, 6)
        (newcomer,) = await clients(stack, LEGIT, 1)
        for h in flood:
            await h.connect(target.peer_id, target.listen_addrs, timeout=10)
        await until(lambda: idle(target, 6))
        await newcomer.connect(target.peer_id, target.listen_addrs, timeout=10)
        assert await newcomer.ping(target.peer_id, timeout=10)
        assert target.connmgr.connections(newcomer.peer_id)
        gone = [h for h in flood if not target.connmgr.connections(h.peer_id)]
        assert len(gone) == 1 and len(target.connmgr) == 6


async def test_a_flood_does_not_evict_a_lone_peers_older_idle_connection() -> None:
    async with running(config(max_inbound=4)) as target, AsyncExitStack() as stack:
        (legit,) = await clients(stack, LEGIT, 1)
        flood = await clients(stack, FLOOD, 4)
        await legit.connect(target.peer_id, target.listen_addrs, timeout=10)
        await until(lambda: idle(target, 1))
        for conn in target.connmgr.connections(legit.peer_id):
            conn.opened_at -= 3600.0  # past the grace period: trimmable if fair
        for h in flood[:3]:
            await h.connect(target.peer_id, target.listen_addrs, timeout=10)
        await until(lambda: idle(target, 4))
        with contextlib.suppress(Exception):  # no fair room: refused after the handshake
            await flood[3].connect(target.peer_id, target.listen_addrs, timeout=10)
            await flood[3].ping(target.peer_id, timeout=10)
        await asyncio.sleep(0.1)
        assert not target.connmgr.connections(flood[3].peer_id)
        assert target.connmgr.connections(legit.peer_id)
        assert await legit.ping(target.peer_id, timeout=10)


def test_trim_candidate_is_fair_to_less_crowded_groups_and_shields_the_young() -> None:
    cm: ConnectionManager[FakeConn] = ConnectionManager(clock=lambda: 100.0)
    lone, old8, young8 = FakeConn(peer(1), 1.0), FakeConn(peer(2), 5.0), FakeConn(peer(3), 6.0)
    for c in (lone, old8, young8):
        cm.add(c, now=0.0)
    size = {lone: 1, old8: 8, young8: 8}
    young = {young8}.__contains__
    # a newcomer from a lone address: the crowded group's old one first, then its young one
    assert cm.trim_candidate(crowd=size.__getitem__, incoming=1, young=young) is old8
    assert (
        cm.trim_candidate(lambda c: c is not old8, size.__getitem__, incoming=1, young=young)
        is young8
    )
    # the crowded group's next connection: only its own group's old one, never the lone peer
    assert cm.trim_candidate(crowd=size.__getitem__, incoming=8, young=young) is old8
    assert cm.trim_candidate(lambda c: c is not old8, size.__getitem__, incoming=8,
                             young=young) is None  # fmt: skip
    # a young connection of a group of one is shielded from everyone (an outbound dial too)
    size[young8] = 1
    assert cm.trim_candidate(lambda c: c is young8, size.__getitem__, incoming=0,
                             young=young) is None  # fmt: skip
