"""Identities in the wild: js-libp2p nodes whose keys are secp256k1, RSA 2048 or ECDSA P-256
(public Amino peers use all of them, not only Ed25519). For each: Noise authenticates the
key both ways, identify carries it, and FIND_NODE finds the peer both ways (RSA and ECDSA
peer ids are SHA-256 multihashes, not identity ones, so the key travels only in Noise and
identify). ECDSA: js-libp2p can make the key but not a peer id of it (below)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from dht.conftest import loopback_config

from zikade_py.dht import Node
from zikade_py.p2p.crypto import KeyType
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .jsnode import JsNode, JsNodeExitedError, JsNodeOptions

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

KEY_TYPES = {
    "secp256k1": KeyType.SECP256K1,
    "RSA": KeyType.RSA,
}


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def our_node(stack: AsyncExitStack) -> Node:
    node = Node(loopback_config(mode="server"))
    await node.start()
    stack.push_async_callback(node.close)
    return node


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
async def test_js_identity_of_each_key_type(stack: AsyncExitStack, key_type: str) -> None:
    js = JsNode(JsNodeOptions(key_type=key_type))
    stack.push_async_callback(js.close)
    await js.start()
    js_id = PeerID.from_string(js.peer_id)
    hub = await our_node(stack)  # both sides find each other through it
    seeker = await our_node(stack)
    # connect and identify, we dial js: the Noise handshake proved the js key
    await hub.host.connect(js_id, [Multiaddr.parse(a) for a in js.addrs])
    info = await hub.host.identify_peer(js_id)
    assert info.public_key is not None and info.public_key.key_type is KEY_TYPES[key_type]
    assert js_id.matches(info.public_key)
    # js dials us: it identifies our Ed25519 key
    await js.dial(str(seeker.multiaddrs[0]))
    js_view = await js.peer_info(str(seeker.peer_id))
    assert js_view is not None and "/ipfs/kad/1.0.0" in js_view["protocols"]
    await js.add_peer(str(hub.multiaddrs[0]))
    await seeker.bootstrap([str(hub.multiaddrs[0])])
    async with asyncio.timeout(20):
        while js_id not in {e.peer.peer_id for e in hub.routing_table()}:
            await asyncio.sleep(0.05)
    # find-peer both ways through the hub: we look js up, js looks us up
    found = await seeker.find_peer(js_id, timeout=20, local_first=False)
    assert {str(a) for a in found.addrs} & {str(Multiaddr.parse(a).without_peer_id())
                                           for a in js.addrs}
    other = await our_node(stack)
    await other.bootstrap([str(hub.multiaddrs[0])])
    js_found = await js.find_peer(str(other.peer_id))
    assert js_found is not None and js_found["id"] == str(other.peer_id)


async def test_js_libp2p_cannot_run_an_ecdsa_identity() -> None:
    """@libp2p/peer-id refuses ECDSA keys ("Unsupported key type"), so no js node has one;
    when a js release lifts that, this fails and ECDSA joins KEY_TYPES above. (Our side
    accepts ECDSA P-256/384/521 identities: tests/p2p/test_crypto.py.)"""
    js = JsNode(JsNodeOptions(key_type="ECDSA"))
    with pytest.raises(JsNodeExitedError, match="Unsupported key type"):
        await js.start()
    await js.close()
