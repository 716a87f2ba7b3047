"""Sessions (DESIGN.md §4): one id for every query inside, one cancel for all of them.

The querying node knows a directory peer that names three black holes, so the
queries started here stay in flight until something stops them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.core.routing.include import IncludeConfig
from zikade_py.dht import Node, SessionCancelledError, current_session, session
from zikade_py.dht.session import Session
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

from .conftest import FakeKadPeer, black_hole, directory, loopback_config, wait_for

pytestmark = pytest.mark.timeout(60)

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


@pytest_asyncio.fixture
async def stuck() -> AsyncIterator[tuple[Node, list[FakeKadPeer]]]:
    holes = [await black_hole().start() for _ in range(2)]
    infos = [h.info for h in holes]
    dirp = await directory(lambda: infos).start()
    routing = RoutingConfig(
        candidates_from_answers=False, enable_probe=False, enable_explore=False,
        include=IncludeConfig(check_timeout=0.3),
    )
    q = Node(loopback_config(coordinator=CoordinatorConfig(routing=routing)))
    await q.start()
    q.add_peer(dirp.multiaddr)
    for hole in holes:  # connected now: their include checks fail before the tests start
        await q.host.connect(hole.peer_id, hole.host.listen_addrs)
    include = q.driver.coordinator.routing.include
    await wait_for(lambda: len(q.routing_table()) == 1)
    await wait_for(lambda: q.router.in_flight == 0 and not include.checking())
    try:
        yield q, holes
    finally:
        await q.close()
        for peer in [dirp, *holes]:
            await peer.close()


async def consume(it: AsyncIterator[object]) -> list[object]:
    return [x async for x in it]


async def test_cancelling_a_session_stops_all_its_queries(
    stuck: tuple[Node, list[FakeKadPeer]], spans: InMemorySpanExporter
) -> None:
    q, _ = stuck
    async with session() as sess:
        assert current_session() is sess
        tasks = [
            asyncio.create_task(q.find_peer(random_peer(), local_first=False)),
            asyncio.create_task(q.get_closest_peers(b"some key")),
            asyncio.create_task(q.get_value(b"/pk/" + random_peer().multihash)),
            asyncio.create_task(consume(q.find_providers(CID))),
        ]
        await wait_for(lambda: sess.active == 4 and q.router.in_flight >= 8)
        sess.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, SessionCancelledError) for r in results), results
        assert q.router.in_flight == 0 and q.driver.requests_running == 0
        assert sess.active == 0
        # A new call in a cancelled session fails at once.
        with pytest.raises(SessionCancelledError):
            await q.lookup(b"another key")
    roots = [s for s in spans.get_finished_spans() if s.name.startswith("DHT.")]
    runs = [s for s in spans.get_finished_spans() if s.name == "Query.Run"]
    assert {s.name for s in roots} == {
        "DHT.FindPeer", "DHT.GetClosestPeers", "DHT.GetValue", "DHT.FindProviders"
    }
    assert len(runs) == 4
    for span in [*roots, *runs]:
        assert span.attributes is not None and span.attributes["session_id"] == sess.id


async def test_leaving_the_block_stops_what_still_runs(
    stuck: tuple[Node, list[FakeKadPeer]],
) -> None:
    q, _ = stuck
    async with session() as sess:
        task = asyncio.create_task(q.find_peer(random_peer(), local_first=False))
        await wait_for(lambda: q.router.in_flight >= 2)
    # The block waited until the query and its requests were gone.
    assert q.router.in_flight == 0 and q.driver.requests_running == 0
    with pytest.raises(SessionCancelledError):
        await task
    assert sess.cancelled


async def test_nested_session_joins_and_separate_sessions_differ(
    stuck: tuple[Node, list[FakeKadPeer]], spans: InMemorySpanExporter
) -> None:
    q, _ = stuck
    async with session() as outer:
        async with session() as inner:
            assert inner is outer
        assert not outer.cancelled  # leaving a joined block does not cancel
        await q.lookup(b"k1", timeout=0.1)
    async with session() as other:
        await q.lookup(b"k2", timeout=0.1)
    await q.lookup(b"k3", timeout=0.1)  # outside any session
    ids = [
        s.attributes.get("session_id") if s.attributes else None
        for s in spans.get_finished_spans()
        if s.name == "DHT.GetClosestPeers"
    ]
    assert ids == [outer.id, other.id, None]
    assert outer.id != other.id


async def test_cancelling_the_caller_inside_a_session_only_stops_its_query(
    stuck: tuple[Node, list[FakeKadPeer]],
) -> None:
    q, _ = stuck
    async with session() as sess:
        a = asyncio.create_task(q.find_peer(random_peer(), local_first=False))
        b = asyncio.create_task(q.find_peer(random_peer(), local_first=False))
        await wait_for(lambda: sess.active == 2 and q.router.in_flight >= 4)
        a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await a
        assert sess.active == 1 and q.router.in_flight >= 2
        assert not b.done()
        sess.cancel()
        with pytest.raises(SessionCancelledError):
            await b


def test_session_object_basics() -> None:
    sess = Session("fixed")
    assert sess.id == "fixed" and not sess.cancelled and sess.active == 0
    sess.cancel()
    assert sess.cancelled
