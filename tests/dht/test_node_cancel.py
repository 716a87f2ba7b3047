"""Cancellation and deadlines against peers that accept streams and never answer.

The querying node ``q`` knows one peer, a *directory* that answers every request
by naming three *black holes*; those read the requests and never reply. Any
lookup from ``q`` therefore has requests in flight to the black holes until it
is cancelled or its deadline passes (acceptance 3 and 4 of issue 4).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.pool import PoolConfig
from zikade_py.core.query import QueryConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.core.routing.include import IncludeConfig
from zikade_py.dht import FinishReason, Node, NotFoundError
from zikade_py.dht.messages import PeerInfo
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

from .conftest import (
    FakeKadPeer,
    black_hole,
    directory,
    loopback_config,
    stream_count,
    wait_for,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

QUIET_ROUTING = RoutingConfig(
    candidates_from_answers=False,
    enable_probe=False,
    enable_explore=False,
    include=IncludeConfig(check_timeout=0.5),
)
"""Little background routing work: once the include checks of the black holes (they
identify as kad servers) have failed, every request ``q`` sends belongs to a test query."""


@dataclass
class Rig:
    q: Node
    dir: FakeKadPeer
    holes: list[FakeKadPeer]


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Rig]:
    holes = [await black_hole().start() for _ in range(3)]
    infos: list[PeerInfo] = [h.info for h in holes]
    dirp = await directory(lambda: infos).start()
    q = Node(loopback_config(coordinator=CoordinatorConfig(routing=QUIET_ROUTING)))
    await q.start()
    q.add_peer(dirp.multiaddr)
    for hole in holes:
        await q.host.connect(hole.peer_id, hole.host.listen_addrs)
    await wait_for(lambda: len(q.routing_table()) == 1)
    include = q.driver.coordinator.routing.include
    await wait_for(
        lambda: q.router.in_flight == 0
        and not (include.checking() or include.queued() or include.retrying())
    )
    # the holes have seen the resets of the failed include checks (tests count resets)
    await wait_for(lambda: all(stream_count_of(h) == 0 for h in holes))
    try:
        yield Rig(q, dirp, holes)
    finally:
        await q.close()
        for peer in [dirp, *holes]:
            await peer.close()


def received(rig: Rig) -> int:
    return sum(len(h.requests) for h in rig.holes)


async def start_stuck_find_peer(rig: Rig) -> asyncio.Task[PeerInfo]:
    """A find_peer whose three requests have reached the black holes (truly in flight)."""
    before = received(rig)
    task = asyncio.create_task(rig.q.find_peer(random_peer(), local_first=False))
    await wait_for(lambda: received(rig) >= before + 3, timeout=10)
    assert rig.q.router.in_flight == 3
    return task


async def test_cancelled_find_peer_returns_after_its_requests_are_gone(rig: Rig) -> None:
    q = rig.q
    resets = sum(h.resets for h in rig.holes)
    task = await start_stuck_find_peer(rig)
    assert q.driver.requests_running == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The call returned: every request it had is already cancelled and reaped.
    assert q.router.in_flight == 0
    assert q.driver.requests_running == 0
    assert q.driver.queries_running == 0
    assert q.driver.coordinator.requests_in_flight == 0
    assert q.router.open_streams == 0
    await wait_for(lambda: sum(h.resets for h in rig.holes) == resets + 3)


async def test_200_cancelled_queries_leave_nothing_behind(rig: Rig) -> None:
    q = rig.q
    # Warm up: connections to the black holes exist from now on (their tasks are not leaks).
    warm = await start_stuck_find_peer(rig)
    warm.cancel()
    with pytest.raises(asyncio.CancelledError):
        await warm
    await wait_for(lambda: all(stream_count_of(h) == 0 for h in rig.holes))
    await wait_for(lambda: stream_count(q) == 0)  # the directory's stream closes too
    resets = sum(h.resets for h in rig.holes)
    baseline = task_kinds()
    cancelled_before = q.router.requests_cancelled
    for _ in range(200):
        task = await start_stuck_find_peer(rig)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert q.router.in_flight == 0
        assert q.router.open_streams == 0
        assert q.driver.requests_running == 0
    assert q.router.requests_cancelled - cancelled_before == 600
    assert q.driver.queries_running == 0
    assert q.driver.coordinator.running_queries == 0
    # Streams and tasks are back to the baseline; the black holes (same event loop)
    # and the directory close their ends a moment after our resets and FINs.
    await wait_for(lambda: sum(h.resets for h in rig.holes) == resets + 600)
    await wait_for(lambda: all(stream_count_of(h) == 0 for h in rig.holes))
    await wait_for(lambda: stream_count(q) == 0)
    # Tasks are compared by what they run: the connection managers' timers re-create
    # their short ``Event.wait`` tasks all the time, so identities change, kinds do not.
    await wait_for(lambda: task_kinds() == baseline)


async def test_lookup_deadline_ends_with_timeout_and_partial_results(rig: Rig) -> None:
    q = rig.q
    result = await q.lookup(random_peer(), timeout=0.2)
    assert result.reason is FinishReason.TIMEOUT
    assert [p.peer_id for p in result.peers] == [rig.dir.peer_id]  # the one that answered
    assert result.peers[0].addrs
    assert result.stats.success == 1
    assert result.stats.requests == 4
    assert q.router.in_flight == 0 and q.driver.requests_running == 0


async def test_find_peer_deadline_raises_timeout_error(rig: Rig) -> None:
    with pytest.raises(TimeoutError):
        await rig.q.find_peer(random_peer(), timeout=0.2, local_first=False)
    assert rig.q.driver.requests_running == 0


async def test_get_value_deadline_raises_timeout_error_when_nothing_found(rig: Rig) -> None:
    key = b"/pk/" + random_peer().multihash
    with pytest.raises(TimeoutError):
        await rig.q.get_value(key, timeout=0.2)
    assert rig.q.driver.requests_running == 0


async def test_find_providers_deadline_ends_the_iteration(rig: Rig) -> None:
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    found = [p async for p in rig.q.find_providers(cid, timeout=0.2)]
    assert found == []
    assert rig.q.driver.requests_running == 0


async def test_request_timeout_fails_silent_peers_and_the_walk_goes_on(rig: Rig) -> None:
    """With a 0.3 s per-request timeout the black holes count as failures and the walk
    ends DONE on its own, long before the query deadline."""
    fast = CoordinatorConfig(
        routing=QUIET_ROUTING, pool=PoolConfig(query=QueryConfig(request_timeout=0.3))
    )
    node = Node(loopback_config(coordinator=fast))
    async with node:
        node.add_peer(rig.dir.multiaddr)
        await wait_for(lambda: len(node.routing_table()) == 1)
        result = await node.lookup(random_peer(), timeout=30)
        assert result.reason is FinishReason.DONE
        assert [p.peer_id for p in result.peers] == [rig.dir.peer_id]
        assert result.stats.failure == 3
        with pytest.raises(NotFoundError):
            await node.find_peer(random_peer(), timeout=30, local_first=False)
        assert node.driver.requests_running == 0


def stream_count_of(peer: FakeKadPeer) -> int:
    return sum(conn.num_streams for conn in peer.host.connmgr.connections())


def task_kinds() -> Counter[str]:
    """The running tasks by coroutine name (the test's own task left out)."""
    me = asyncio.current_task()
    return Counter(
        getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks() if t is not me
    )
