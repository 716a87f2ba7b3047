"""Issue 9, DHT: what one hostile peer can make a node store, parse, keep and buffer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from multiformats import CID, multihash

from zikade_py.dht import Node
from zikade_py.dht.handlers import KadServer, KadServerConfig
from zikade_py.dht.messages import (
    MAX_CLOSER_PEERS,
    Message,
    MessageType,
    PeerInfo,
    add_provider,
    decode_bounded,
    find_node,
    get_providers,
    make_record,
    put_value,
)
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.records import make_pk_record
from zikade_py.dht.router import CLOSER_PEER_ADDR_TTL, RequestError
from zikade_py.dht.stores import PROVIDER_VALIDITY, MemoryProviderStore
from zikade_py.dht.stores.limits import StoreLimits
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint
from zikade_py.p2p.yamux import StreamResetError

from .conftest import FakeKadPeer, loopback_config, wait_for
from .kad_harness import KadClient, served

pytestmark = pytest.mark.timeout(60)


def fake_entry(i: int) -> Message.Peer:
    """A closer-peer entry with a syntactically valid identity-multihash id (no keygen)."""
    pid = b"\x00\x24\x08\x01\x12\x20" + os.urandom(28) + i.to_bytes(4, "big")
    return Message.Peer(id=pid, addrs=[Multiaddr.from_tcp("127.0.0.1", 1 + i % 60000).to_bytes()])


def mh(i: int) -> bytes:
    return bytes(multihash.digest(b"flood %d" % i, "sha2-256"))


async def test_one_peer_flooding_records_is_capped_and_others_still_store(
    tmp_path: Path,
) -> None:
    limits = StoreLimits(max_providers_per_peer=10, max_values_per_peer=3)
    async with (
        Node(loopback_config(repo=tmp_path / "server", store_limits=limits)) as server,
        Node(loopback_config()) as flooder,
        Node(loopback_config()) as honest,
    ):
        await flooder.host.connect(server.peer_id, server.listen_addrs)
        stream = await flooder.host.new_stream(server.peer_id, [KAD_PROTOCOL], timeout=5)
        client = KadClient(stream)
        for i in range(30):  # one stream, as go sends ADD_PROVIDER
            await client.send(add_provider(mh(i), flooder.self_info()))
        answer = await client.request(find_node(mh(0)))  # refusals did not end the stream
        assert answer.type == Message.FIND_NODE
        assert server.providers.sender_usage(flooder.peer_id).records == 10
        assert server.server is not None and server.server.stats.refused["per_peer"] == 20
        stored = 0
        for _ in range(5):
            key, value = make_pk_record(PrivateKey.generate().public_key)
            msg = put_value(key, make_record(key, value))
            try:
                await flooder.router.send_message(server.peer_id, msg)
                stored += 1
            except (RequestError, StreamResetError):
                pass  # refused: the stream was reset
        assert stored == 3 and server.values.sender_usage(flooder.peer_id).records == 3
        # Someone else's records are still taken.
        await honest.host.connect(server.peer_id, server.listen_addrs)
        await honest.router.send_message(server.peer_id, add_provider(mh(0), honest.self_info()))
        key, value = make_pk_record(honest.host.public_key)
        await honest.router.send_message(server.peer_id, put_value(key, make_record(key, value)))
        await wait_for(lambda: bool(server.providers.get(mh(0), time.time())))
        assert {p.peer_id for p in server.providers.get(mh(0), time.time())} == {
            flooder.peer_id, honest.peer_id
        }
        assert server.values.get(key, time.time()) is not None


async def test_a_huge_find_node_answer_is_parsed_only_up_to_the_cap() -> None:
    entries = [fake_entry(i) for i in range(20_000)]

    async def answer(_peer: PeerID, request: Message) -> Message | None:
        response = Message(type=request.type, key=request.key)
        response.closerPeers.extend(entries)
        return response

    hostile = await FakeKadPeer(answer).start()
    try:
        async with Node(loopback_config()) as node:
            known = len(node.host.peerstore)
            await node.host.connect(hostile.peer_id, hostile.host.listen_addrs)
            found = await node.router.get_closer_nodes(hostile.peer_id, b"target")
            assert len(found) == MAX_CLOSER_PEERS
            assert len(node.host.peerstore) <= known + 1 + MAX_CLOSER_PEERS
            # Third-party addresses are short-lived: gone well before the old hour.
            later = time.monotonic() + CLOSER_PEER_ADDR_TTL + 1
            assert CLOSER_PEER_ADDR_TTL < 3600
            assert all(not node.host.peerstore.addrs(p.peer_id, later) for p in found)
    finally:
        await hostile.close()


def test_bounded_decode_keeps_the_head_of_each_list() -> None:
    msg = Message(type=Message.GET_PROVIDERS, key=b"k")
    msg.closerPeers.extend(fake_entry(i) for i in range(500))
    msg.providerPeers.extend(fake_entry(i) for i in range(500))
    out = decode_bounded(msg.SerializeToString(), 40, 200)
    assert out.key == b"k" and out.type == Message.GET_PROVIDERS
    assert list(out.closerPeers) == list(msg.closerPeers[:40])
    assert list(out.providerPeers) == list(msg.providerPeers[:200])


async def test_provider_addresses_from_answers_are_short_lived() -> None:
    provider = PeerInfo(
        PeerID.from_public_key(PrivateKey.generate().public_key),
        (Multiaddr.parse("/ip4/127.0.0.1/tcp/4999"),),
    )

    async def answer(_peer: PeerID, request: Message) -> Message | None:
        response = Message(type=request.type, key=request.key)
        if request.type == Message.GET_PROVIDERS:
            response.providerPeers.append(provider.to_pb())
        return response

    hostile = await FakeKadPeer(answer).start()
    try:
        async with Node(loopback_config(bootstrap=[hostile.multiaddr])) as node:
            await node.bootstrap(timeout=5)
            cid = CID("base32", 1, "raw", multihash.digest(b"x", "sha2-256"))
            found = [p async for p in node.find_providers(cid, count=1, timeout=5)]
            assert [p.peer_id for p in found] == [provider.peer_id]
            later = time.monotonic() + CLOSER_PEER_ADDR_TTL + 1
            assert node.host.peerstore.addrs(provider.peer_id)
            assert not node.host.peerstore.addrs(provider.peer_id, later)  # was 24 h
    finally:
        await hostile.close()


async def test_request_bodies_draw_from_a_read_budget_per_peer() -> None:
    config = KadServerConfig(max_buffered_per_peer=64 * 1024)
    async with served(config) as s:
        first = await s.open()
        second = await s.open()
        await first.write_raw(encode_uvarint(60_000) + b"\x08")  # announced, never finished
        await wait_for(lambda: s.server.stats.buffered == 60_000)
        await second.write_raw(encode_uvarint(60_000) + b"\x08")
        await second.expect_reset()
        assert s.server.stats.error_reasons["read_budget"] == 1
        async with s.second_client() as other:  # another peer has its own budget
            third = await s.open(other)
            assert (await third.request(find_node(b"k"))).type == Message.FIND_NODE
        await first.stream.reset()
        await wait_for(lambda: s.server.stats.buffered == 0)


class CountingProviders(MemoryProviderStore):
    """Counts full listings of our provided keys."""

    listings = 0

    def list_local(self) -> list[bytes]:
        CountingProviders.listings += 1
        return super().list_local()


async def test_get_providers_never_lists_every_local_key() -> None:
    async with served() as s:
        store = CountingProviders()
        store.add_local(mh(1), time.time())
        server = KadServer(
            host=s.host, view=s.view, providers=store, values=s.values,
            validator=s.server._validator,
        )
        for i in range(3):
            response = server.dispatch(s.client.peer_id, get_providers(mh(i)))
            assert response is not None
            ids = [p.id for p in response.providerPeers]
            assert ids == ([s.host.peer_id.multihash] if i == 1 else [])
        assert CountingProviders.listings == 0
        assert server.stats.received[MessageType.GET_PROVIDERS] == 3


@pytest.mark.parametrize("durable", [False, True])
async def test_the_node_collects_expired_records_periodically(
    tmp_path: Path, durable: bool
) -> None:
    config = loopback_config(
        repo=tmp_path / "repo" if durable else None, gc_interval=0.05, gc_batch=7
    )
    old = time.time() - PROVIDER_VALIDITY - 60
    async with Node(config) as node:
        me = node.self_info()
        for i in range(30):
            await node.providers.add_async(mh(i), me, old)
            await node.values.put_async(b"/pk/old%d" % i, b"v", old)
        await node.providers.add_async(mh(99), me, time.time())
        await wait_for(
            lambda: node.providers.usage().records == 1 and not node.values.usage().records
        )
        assert node.providers.get(mh(99), time.time())
        assert any(t.get_name() == "dht-store-gc" for t in node._tasks)
    assert not node._tasks  # close() stopped the collector
