"""Kademlia over QUIC between our own nodes on 127.0.0.1: a mixed network where some nodes
listen on QUIC only, some on TCP only, some on both; lookups, provider records and value
records cross it, and a node that offers both is reached over QUIC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from multiformats import CID, multihash

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import HostConfig

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
TCP = "/ip4/127.0.0.1/tcp/0"
LISTEN = {"quic": [QUIC], "tcp": [TCP], "both": [QUIC, TCP]}
KINDS = ["quic", "quic", "tcp", "both", "both", "quic", "both"]
"""Node i listens on KINDS[i]; the bootstrap node on both."""

BASE = NodeConfig(
    mode="server",
    bootstrap=[],
    host=HostConfig(inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000),
    republish=False,
    coordinator=CoordinatorConfig(routing=RoutingConfig(enable_explore=False)),
)


async def wait_for(cond: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def net() -> AsyncIterator[list[Node]]:
    boot = Node(replace(BASE, listen_addrs=LISTEN["both"]))
    await boot.start()
    addrs = [str(a) for a in boot.multiaddrs]
    nodes = [Node(replace(BASE, listen_addrs=LISTEN[k], bootstrap=addrs)) for k in KINDS]
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        for node in nodes:  # one after the other: each finds the ones before it
            result = await node.bootstrap()
            assert result.connected, result
        await wait_for(lambda: all(len(n.routing_table()) >= 2 for n in [boot, *nodes]))
        yield [boot, *nodes]
    finally:
        await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)
        await boot.close()


def kind(node: Node) -> str:
    quic = any(a.quic_endpoint() for a in node.listen_addrs)
    tcp = any(a.tcp_endpoint() for a in node.listen_addrs)
    return "both" if quic and tcp else "quic" if quic else "tcp"


async def test_quic_nodes_are_in_routing_tables_with_their_quic_addresses(net: list[Node]) -> None:
    quic_only = [n for n in net if kind(n) == "quic"]
    assert quic_only
    for node in quic_only:
        holders = [
            other
            for other in net
            if any(e.peer.peer_id == node.peer_id for e in other.routing_table())
        ]
        assert holders, f"{node.peer_id} is in nobody's routing table"
        entry = next(e for e in holders[0].routing_table() if e.peer.peer_id == node.peer_id)
        assert all(a.quic_endpoint() for a in entry.peer.addrs)


async def test_find_peer_over_quic_from_a_quic_only_node(net: list[Node]) -> None:
    finder = next(n for n in net if kind(n) == "quic")
    for other in net:
        if other is finder or kind(other) == "tcp":
            continue  # a QUIC-only node cannot dial a TCP-only one
        info = await finder.find_peer(other.peer_id, local_first=False)
        assert info.peer_id == other.peer_id
        assert set(info.addrs) & set(other.listen_addrs)
    assert all(c.transport == "quic" for c in finder.host.connmgr.connections())


async def test_a_node_offering_both_is_dialled_over_quic(net: list[Node]) -> None:
    dialer = next(n for n in net if kind(n) == "both")
    target = [n for n in net if kind(n) == "both" and n is not dialer][-1]
    for conn in list(dialer.host.connmgr.connections(target.peer_id)):
        await conn.close()
    await wait_for(lambda: not dialer.host.connmgr.connections(target.peer_id))
    await dialer.find_peer(target.peer_id, local_first=False)
    conn = await dialer.host.connect(target.peer_id, target.listen_addrs)
    assert conn.transport == "quic"


async def test_provide_and_find_providers_across_transports(net: list[Node]) -> None:
    provider = next(n for n in net if kind(n) == "quic")
    seeker = next(n for n in net if kind(n) == "both" and n is not net[0])
    cid = CID("base32", 1, "raw", multihash.digest(b"quic provider record", "sha2-256"))
    await provider.provide(cid)
    found = [p async for p in seeker.find_providers(cid, count=1)]
    assert [p.peer_id for p in found] == [provider.peer_id]


async def test_put_and_get_value_over_quic(net: list[Node]) -> None:
    writer = next(n for n in net if kind(n) == "quic")
    reader = [n for n in net if kind(n) == "quic"][-1]
    owner = PrivateKey.generate()
    key, value = make_pk_record(owner.public_key)
    await writer.put_value(key, value)
    assert await reader.get_value(key) == value
