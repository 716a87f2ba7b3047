"""Our Node in one DHT with 10 real js-libp2p kad-dht nodes (issue 4, acceptance 2).

One network per module: 10 js nodes (started concurrently, seeded in a line) and
three of our server nodes that bootstrap through different js nodes. Every RPC is
exercised in both directions: FIND_NODE (findPeer / find_peer, get_closest_peers),
ADD_PROVIDER + GET_PROVIDERS (provide / findProviders), PUT_VALUE + GET_VALUE of
``/pk/`` records, and routing-table admission on both sides (js admits a peer once
identify lists /ipfs/kad/1.0.0 and a libp2p ping succeeds; ours after its own check).

The js connection monitor is off in this network. js-libp2p's ping service allows ONE
outbound ping stream per connection (``maxOutboundStreams: 1``), shared by the monitor
(a ping over every connection every 10 s) and kad's new-contact check; when the two
overlap, kad gets ``TooManyOutboundProtocolStreamsError``, drops the candidate and
only retries if a later query response names it. Measured here: with the monitor on,
1–3 (ours, js) pairs per run identified each other yet were never admitted (js–js pairs
lost admissions too); with it off, none in repeated runs. It is a js-internal race, so
it is removed, and the admission test then demands that EVERY js node that identified
one of ours admits it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from zikade_py.dht.config import NodeConfig
from zikade_py.dht.node import Node
from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .dht_network import (
    ADMISSION_WAIT,
    KAD,
    OP_TIMEOUT,
    OP_TIMEOUT_MS,
    Network,
    bare,
    cid_of,
    eventually,
    running_network,
)
from .jsnode import JsNode, JsNodeOptions, js_available, sha256_multihash

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

JS_NODES = 10
OUR_NODES = 3
JS_OPTIONS = JsNodeOptions(monitor=False)  # see the module docstring


def our_addr(node: Node) -> str:
    return str(node.listen_addrs[0].with_peer_id(node.peer_id))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net() -> AsyncIterator[Network]:
    if not js_available():  # the conftest hook skips the tests; never start anything
        pytest.skip("js-libp2p unavailable")
    js = [JsNode(JS_OPTIONS) for _ in range(JS_NODES)]

    def ours() -> list[NodeConfig]:
        # each of ours joins through a different js node
        return [
            NodeConfig(mode="server", bootstrap=[js[(i * JS_NODES) // OUR_NODES].addrs[0]])
            for i in range(OUR_NODES)
        ]

    async with running_network(js, js_addr=lambda addrs: addrs[0], ours=ours) as nodes:
        yield Network(js, nodes)


# ------------------------------------------------------------------------------ routing tables


async def test_our_nodes_appear_in_js_routing_tables(net: Network) -> None:
    """js admits ours only after identify lists kad and a libp2p ping succeeds."""

    def identified_us(js: JsNode) -> set[str]:
        """Ours that this js node identified as kad servers."""
        return {
            e["peer"] for e in js.events("peer:identify") if KAD in e["protocols"]
        } & net.our_ids()

    expected = [identified_us(js) for js in net.js]
    # each of ours was identified at least by the js node it bootstrapped through
    for i, ours in enumerate(net.ours):
        assert str(ours.peer_id) in expected[(i * JS_NODES) // OUR_NODES]

    async def missing() -> list[set[str]]:
        return [
            want - set(await js.routing_table()) for js, want in zip(net.js, expected, strict=True)
        ]

    async def all_admitted() -> bool:
        return not any(await missing())

    assert await eventually(all_admitted, timeout=ADMISSION_WAIT), (
        f"identified by js but not admitted: {await missing()}"
    )


async def test_js_nodes_in_our_routing_tables(net: Network) -> None:
    def js_in_table(node: Node) -> set[str]:
        return {str(e.peer.peer_id) for e in node.routing_table()} & net.js_ids()

    async def all_have_js() -> bool:
        return all(len(js_in_table(node)) >= JS_NODES // 2 for node in net.ours)

    assert await eventually(all_have_js, timeout=ADMISSION_WAIT), [
        len(js_in_table(node)) for node in net.ours
    ]
    for node in net.ours:
        for entry in node.routing_table():
            if str(entry.peer.peer_id) in net.js_ids():
                assert entry.peer.addrs, "a js table entry without addresses"
                assert all(Multiaddr.parse(str(a)).is_loopback() for a in entry.peer.addrs)


# ------------------------------------------------------------------------------ FIND_NODE


async def test_js_find_peer_finds_ours(net: Network) -> None:
    for i, ours in enumerate(net.ours):
        # ask from js nodes that did not serve as its bootstrap seed
        js = net.js[(i * JS_NODES // OUR_NODES + JS_NODES // 2) % JS_NODES]
        found = await js.find_peer(str(ours.peer_id), timeout_ms=OP_TIMEOUT_MS)
        assert found is not None, f"js {js.peer_id} did not find {ours.peer_id}"
        assert found["id"] == str(ours.peer_id)
        assert bare(ours.listen_addrs[0]) in {bare(a) for a in found["addrs"]}


async def test_our_find_peer_finds_every_js_node(net: Network) -> None:
    for j, js in enumerate(net.js):
        ours = net.ours[j % OUR_NODES]
        # local_first=False: a FIND_NODE walk even when we hold a connection to it
        info = await ours.find_peer(js.peer_id, timeout=OP_TIMEOUT, local_first=False)
        assert info.peer_id == PeerID.from_string(js.peer_id)
        assert bare(js.addrs[0]) in {bare(a) for a in info.addrs}


async def test_our_get_closest_peers_returns_js_nodes(net: Network) -> None:
    key = sha256_multihash(b"zikade interop closest peers")
    peers = await net.ours[0].get_closest_peers(key, timeout=OP_TIMEOUT)
    ids = {str(p.peer_id) for p in peers}
    # k = 20 exceeds the 12 other nodes: the closest set is the whole network
    assert net.js_ids() <= ids, f"missing js nodes: {net.js_ids() - ids}"
    assert str(net.ours[0].peer_id) not in ids
    assert len(peers) == len(ids)


# ------------------------------------------------------------------------------ providers


async def test_js_find_providers_finds_what_we_provide(net: Network) -> None:
    mh = sha256_multihash(b"provided by zikade-py")
    ours = net.ours[1]
    result = await ours.provide(cid_of(mh), timeout=OP_TIMEOUT)
    assert set(map(str, result.contacted)) & net.js_ids(), "no js node took ADD_PROVIDER"
    for js in (net.js[0], net.js[JS_NODES - 1]):
        found = await js.find_providers(multihash=mh, count=1, timeout_ms=OP_TIMEOUT_MS)
        assert [p["id"] for p in found] == [str(ours.peer_id)]
        assert bare(ours.listen_addrs[0]) in {bare(a) for a in found[0]["addrs"]}


async def test_our_find_providers_finds_what_js_provides(net: Network) -> None:
    mh = sha256_multihash(b"provided by js-libp2p")
    js = net.js[4]
    res = await js.provide(multihash=mh, timeout_ms=OP_TIMEOUT_MS)
    assert set(res["sentTo"]) & net.our_ids(), f"js sent ADD_PROVIDER to none of ours: {res}"
    for ours in net.ours:
        found = [p async for p in ours.find_providers(cid_of(mh), count=1, timeout=OP_TIMEOUT)]
        assert [p.peer_id for p in found] == [PeerID.from_string(js.peer_id)]


# ------------------------------------------------------------------------------ /pk/ records


async def test_js_reads_the_pk_record_we_put(net: Network) -> None:
    key, value = make_pk_record(PrivateKey.generate().public_key)
    result = await net.ours[2].put_value(key, value, timeout=OP_TIMEOUT)
    assert set(map(str, result.contacted)) & net.js_ids(), "no js node took PUT_VALUE"
    got = await net.js[7].get_value(key, timeout_ms=OP_TIMEOUT_MS)
    assert got is not None and got.value == value
    # js asks the network even with a local copy: our GET_VALUE answers carry the record
    assert set(got.peers_with_record) & net.our_ids()


async def test_we_read_the_pk_record_js_put(net: Network) -> None:
    js = net.js[3]
    kp = await js.keygen()
    key = b"/pk/" + kp.multihash
    res = await js.put_value(key, kp.public_key, timeout_ms=OP_TIMEOUT_MS)
    assert set(res["storedAt"]) & net.our_ids(), f"js PUT_VALUE reached none of ours: {res}"
    for ours in net.ours:
        assert await ours.get_value(key, timeout=OP_TIMEOUT) == kp.public_key
    # a node of ours that joins afterwards has no local copy: it must GET it from js
    async with Node(NodeConfig(mode="server", bootstrap=[net.js[8].addrs[0]])) as late:
        await late.bootstrap(timeout=OP_TIMEOUT)
        assert await late.get_value(key, timeout=OP_TIMEOUT) == kp.public_key
