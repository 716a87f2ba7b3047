"""Thirty of our nodes on 127.0.0.1 in one process (acceptance 1 of issue 4).

One bootstrap node and 29 nodes that join through it. From one node every other
is found with a real lookup (``local_first=False``); content provided by one node
is found by others; ``/pk/`` and ``/ipns/`` records put by one node are read by
another; the closest peers a walk returns are the true closest.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from multiformats import CID, multihash

from zikade_py.core.key import Key
from zikade_py.dht import FinishReason, Node, NotFoundError, QueryEvent, QueryEventType
from zikade_py.dht.records import InvalidRecordError, make_ipns_record, make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

from .conftest import Network, start_network

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

N = 29  # + the bootstrap node = 30 nodes


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def net() -> AsyncIterator[Network]:
    async with start_network(N, min_table=5) as network:
        yield network


def cid_of(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def xor_to(target: bytes, peer: PeerID) -> int:
    return Key.from_preimage(target).distance(Key.from_preimage(peer.multihash))


async def test_every_node_has_a_routing_table(net: Network) -> None:
    sizes = [len(node.routing_table()) for node in net.all]
    assert min(sizes) >= 5
    entry = net.nodes[0].routing_table()[0]
    assert entry.peer.addrs and entry.added_at > 0 and entry.last_seen >= entry.added_at


async def test_find_peer_finds_every_other_node_by_lookup(net: Network) -> None:
    finder = net.nodes[0]
    events: list[QueryEvent] = []
    for other in net.all:
        if other is finder:
            continue
        info = await finder.find_peer(other.peer_id, local_first=False, on_event=events.append)
        assert info.peer_id == other.peer_id
        assert set(info.addrs) & set(other.listen_addrs)
    kinds = {e.type for e in events}
    assert {QueryEventType.SENDING_QUERY, QueryEventType.PEER_RESPONSE} <= kinds
    finals = [e for e in events if e.type is QueryEventType.FINAL_PEER]
    assert len(finals) == len(net.all) - 1


async def test_find_peer_of_an_unknown_peer_is_not_found(net: Network) -> None:
    stranger = PeerID.from_public_key(PrivateKey.generate().public_key)
    with pytest.raises(NotFoundError):
        await net.nodes[3].find_peer(stranger, timeout=20)
    assert net.nodes[3].driver.requests_running == 0


async def test_get_closest_peers_returns_the_true_closest(net: Network) -> None:
    node = net.nodes[5]
    target = b"some key preimage"
    result = await node.lookup(target)
    assert result.reason is FinishReason.DONE
    others = [n.peer_id for n in net.all if n is not node]
    truth = sorted(others, key=lambda p: xor_to(target, p))[:20]
    got = [p.peer_id for p in result.peers]
    assert got == truth
    assert all(p.addrs for p in result.peers)


async def test_provide_and_find_providers_across_nodes(net: Network) -> None:
    provider, finder = net.nodes[7], net.nodes[20]
    cid = cid_of(b"loopback content")
    result = await provider.provide(cid)
    assert result.reason is FinishReason.DONE and len(result.contacted) >= 10
    assert not result.errors
    events: list[QueryEvent] = []
    found = [p async for p in finder.find_providers(cid, count=1, on_event=events.append)]
    assert [p.peer_id for p in found] == [provider.peer_id]
    assert set(found[0].addrs) == set(provider.listen_addrs)
    assert [e.type for e in events if e.type is QueryEventType.PROVIDER] == [
        QueryEventType.PROVIDER
    ]
    # A CIDv0 of the same multihash rendezvous on the same provider record.
    v0 = CID("base58btc", 0, "dag-pb", multihash.digest(b"loopback content", "sha2-256"))
    found_v0 = [p async for p in net.nodes[11].find_providers(str(v0), count=1)]
    assert [p.peer_id for p in found_v0] == [provider.peer_id]


async def test_optimistic_provide_and_several_providers(net: Network) -> None:
    cid = cid_of(b"shared content")
    providers = net.nodes[8:11]
    for node in providers:
        result = await node.provide(str(cid), optimistic=True)
        assert result.reason is FinishReason.DONE and result.contacted
    found = [p async for p in net.nodes[25].find_providers(cid, count=0)]
    assert sorted(str(p.peer_id) for p in found) == sorted(str(n.peer_id) for n in providers)


async def test_find_providers_of_unprovided_content_is_empty(net: Network) -> None:
    found = [p async for p in net.nodes[2].find_providers(cid_of(b"nobody has this"))]
    assert found == []


async def test_put_and_get_pk_record_across_nodes(net: Network) -> None:
    writer, reader = net.nodes[12], net.nodes[27]
    key, value = make_pk_record(writer.host.public_key)
    result = await writer.put_value(key, value)
    assert result.reason is FinishReason.DONE and len(result.contacted) >= 10
    events: list[QueryEvent] = []
    assert await reader.get_value(key, on_event=events.append) == value
    assert any(e.type is QueryEventType.VALUE for e in events)
    # The text form of the key works too.
    assert await net.nodes[1].get_value(f"/pk/{writer.peer_id}") == value


async def test_put_and_get_ipns_record_across_nodes(net: Network) -> None:
    key_pair = PrivateKey.generate()
    name = PeerID.from_public_key(key_pair.public_key)
    eol = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    first = make_ipns_record(key_pair, b"/ipfs/bafkqaaa", 1, eol)
    second = make_ipns_record(key_pair, b"/ipfs/bafkqaaa", 2, eol)
    key = b"/ipns/" + name.multihash
    await net.nodes[13].put_value(key, first)
    assert await net.nodes[22].get_value(key) == first
    await net.nodes[14].put_value(key, second)
    # The higher sequence wins everywhere it is compared.
    assert await net.nodes[23].get_value(key) == second
    with pytest.raises(InvalidRecordError):
        await net.nodes[14].put_value(key, first)  # worse than what it stored


async def test_invalid_and_unknown_records_are_refused_locally(net: Network) -> None:
    node = net.nodes[4]
    other = PrivateKey.generate()
    key, _ = make_pk_record(node.host.public_key)
    with pytest.raises(InvalidRecordError):
        await node.put_value(key, other.public_key.to_protobuf())
    with pytest.raises(InvalidRecordError):
        await node.put_value(b"/example/x", b"v")
    with pytest.raises(InvalidRecordError):
        await node.get_value(b"/example/x")


async def test_get_value_of_a_missing_record_is_not_found(net: Network) -> None:
    key, _ = make_pk_record(PrivateKey.generate().public_key)
    with pytest.raises(NotFoundError):
        await net.nodes[6].get_value(key)


async def test_nodes_serve_and_count(net: Network) -> None:
    node: Node = net.nodes[0]
    stats = node.stats()
    assert stats["routing_table_size"] >= 5 and stats["requests_running"] == 0
    assert node.server is not None and node.server.stats.received
    assert node.connected_peers()
