"""Server and client mode, routing-table admission, spans, events, bootstrap and close."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py.dht import FinishReason, Node, NodeClosedError, NotFoundError, QueryEvent
from zikade_py.dht.messages import Message
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import LOOPBACK_HOST, black_hole, loopback_config, start_network, wait_for

pytestmark = pytest.mark.timeout(60)


def task_kinds() -> Counter[str]:
    me = asyncio.current_task()
    return Counter(
        getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks() if t is not me
    )


async def test_client_mode_queries_but_never_enters_tables() -> None:
    async with start_network(3) as net:
        client = Node(loopback_config(mode="client", bootstrap=[str(net.bootstrap.multiaddrs[0])]))
        async with client:
            assert client.server is None
            assert KAD_PROTOCOL not in client.host.protocols
            result = await client.bootstrap()
            assert result.reason is FinishReason.DONE and result.connected
            info = await client.find_peer(net.nodes[2].peer_id, local_first=False)
            assert info.peer_id == net.nodes[2].peer_id
            assert len(client.routing_table()) >= 3  # clients keep a table of servers
            await asyncio.sleep(0.3)  # identify and include checks had their chance
            for server in net.all:
                assert client.peer_id not in {e.peer.peer_id for e in server.routing_table()}
                assert KAD_PROTOCOL not in server.host.peerstore.protocols(client.peer_id)


async def test_a_peer_without_kad_in_identify_never_enters_the_table() -> None:
    plain = Host(PrivateKey.generate(), LOOPBACK_HOST)  # identify lists no kad
    await plain.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        async with Node(loopback_config()) as node:
            node.host.peerstore.add_addrs(plain.peer_id, plain.listen_addrs, 600)
            await node.host.connect(plain.peer_id)
            await wait_for(lambda: bool(node.host.peerstore.protocols(plain.peer_id)))
            await asyncio.sleep(0.2)
            assert node.routing_table() == []
            assert node.router.requests_sent == 0  # not even an include check
    finally:
        await plain.close()


async def test_bootstrap_reports_failures_and_timeouts_instead_of_raising() -> None:
    hole = await black_hole().start()
    try:
        async with Node(loopback_config()) as node:
            nobody = PeerID.from_public_key(PrivateKey.generate().public_key)
            dead = f"/ip4/127.0.0.1/tcp/1/p2p/{nobody}"
            result = await node.bootstrap([dead], timeout=2)
            assert result.reason is FinishReason.FAILED and result.failed and not result.connected
            result = await node.bootstrap([hole.multiaddr], timeout=0.3)
            assert result.reason is FinishReason.TIMEOUT
            assert result.connected == [hole.peer_id]
    finally:
        await hole.close()


async def test_spans_nest_and_a_bad_callback_breaks_nothing(
    spans: InMemorySpanExporter,
) -> None:
    async with start_network(2) as net:
        finder, target = net.nodes[0], net.nodes[1]
        calls = 0

        def bad(_event: QueryEvent) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("a callback that raises")

        info = await finder.find_peer(target.peer_id, local_first=False, on_event=bad)
        assert info.peer_id == target.peer_id and calls > 0
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "DHT.FindPeer"]
    runs = [s for s in finished if s.name == "Query.Run" and s.parent is not None
            and s.parent.span_id == root.context.span_id]
    assert len(runs) == 1
    run = runs[0]
    assert run.attributes is not None and run.attributes["reason"] in ("cancelled", "done")
    assert any(e.name == "request" for e in run.events)
    assert any(e.name == "finished" for e in run.events)
    requests = [s for s in finished if s.name == "Router.SendMessage" and s.parent is not None
                and s.parent.span_id == run.context.span_id]
    assert requests and all(s.context.trace_id == root.context.trace_id for s in requests)


async def test_find_peer_stops_as_soon_as_the_target_is_named(
    spans: InMemorySpanExporter,
) -> None:
    async with start_network(8) as net:
        finder = net.nodes[0]
        target = net.nodes[7]
        info = await finder.find_peer(target.peer_id, local_first=False)
        assert info.addrs and info.peer_id == target.peer_id
        assert finder.driver.queries_running == 0
        with pytest.raises(NotFoundError):
            await finder.find_peer(PeerID.from_public_key(PrivateKey.generate().public_key))
    found, missing = [s for s in spans.get_finished_spans() if s.name == "DHT.FindPeer"]
    # Stopped by us once the target was named (ErrSkipRemaining), not walked to the end.
    assert found.attributes is not None and found.attributes["reason"] == "cancelled"
    assert found.attributes["found"] is True
    assert missing.attributes is not None and missing.attributes["reason"] == "done"


async def test_close_leaves_no_task_behind() -> None:
    baseline = task_kinds()
    async with start_network(3) as net:
        await net.nodes[0].lookup(b"anything")
        cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        await net.nodes[1].provide(cid)
        assert [p async for p in net.nodes[2].find_providers(cid, count=1)]
        # A query still running when the node closes ends with NodeClosedError.
        stuck = asyncio.Event()

        async def hold(_peer: PeerID, _msg: Message) -> None:
            stuck.set()
            await asyncio.Event().wait()

        net.nodes[0].router.response_hook = hold
        pending = asyncio.create_task(net.nodes[0].lookup(b"more", timeout=30))
        await asyncio.wait_for(stuck.wait(), 5)
    with pytest.raises(NodeClosedError):
        await pending
    await wait_for(lambda: task_kinds() == baseline, timeout=5)
