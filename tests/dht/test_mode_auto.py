"""Auto mode: a node is a DHT client until AutoNAT finds it publicly reachable, then a server;
peers' routing tables follow each switch (identify push), and it announces only confirmed
public addresses meanwhile.

Loopback stand-ins (docs/autonat.md): every host's address policy names
``127.0.0.0/8`` as public; each node listens on its own 127.0.1.x address (and
dials from it, so peers observe it there). A node with no listener stands in for
one behind a NAT: the servers dial it back at its observed address and fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace

import pytest

from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.autonat import AUTONAT_PROTOCOL
from zikade_py.p2p.autonat_status import AutoNATConfig, Reachability
from zikade_py.p2p.multiaddr import Multiaddr

from .conftest import LOOPBACK_HOST, loopback_config, wait_for

pytestmark = pytest.mark.timeout(90)

PUBLIC_LOOPBACK = replace(LOOPBACK_HOST, address_policy=AddressPolicy(public_nets=("127.0.0.0/8",)))
FAST_AUTONAT = AutoNATConfig(
    boot_delay=0.0, retry_interval=0.5, refresh_interval=30.0, request_timeout=5.0,
    dial_timeout=2.0, pad_failed_dials=False, throttle_peer_period=0.0,
)
_ips = iter(range(20, 250))


def stand_in(mode: str, *, listen: bool = True, host: object = PUBLIC_LOOPBACK) -> NodeConfig:
    addrs: list[str | Multiaddr] = [f"/ip4/127.0.1.{next(_ips)}/tcp/0"] if listen else []
    return loopback_config(
        mode=mode, listen_addrs=addrs, host=host, autonat=FAST_AUTONAT, bootstrap=[]
    )


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def start(stack: AsyncExitStack, config: NodeConfig) -> Node:
    node = Node(config)
    await node.start()
    stack.push_async_callback(node.close)
    return node


async def servers(stack: AsyncExitStack, n: int = 3) -> list[Node]:
    nodes = [await start(stack, stand_in("server")) for _ in range(n)]
    for node in nodes[1:]:
        await node.bootstrap([str(nodes[0].multiaddrs[0])])
    return nodes


def in_table(node: Node, other: Node) -> bool:
    return any(e.peer.peer_id == other.peer_id for e in node.routing_table())


async def test_reachable_node_becomes_server_and_enters_tables(stack: AsyncExitStack) -> None:
    public = await servers(stack)
    node = await start(stack, stand_in("auto"))
    changes: list[tuple[str, str]] = []
    node.mode_listeners.append(lambda r, m: changes.append((r, m)))
    # a client at first: kad neither served nor advertised, public address not announced
    assert node.effective_mode == "client" and node.server is None
    assert KAD_PROTOCOL not in node.host.protocols
    assert AUTONAT_PROTOCOL in node.host.protocols  # it answers others meanwhile
    assert node.self_info().addrs == ()
    result = await node.bootstrap([str(public[0].multiaddrs[0])])
    assert result.connected
    for peer in public:
        await node.host.connect(peer.peer_id, peer.listen_addrs)
    await wait_for(lambda: node.reachability == "public", timeout=30)
    assert node.effective_mode == "server" and KAD_PROTOCOL in node.host.protocols
    assert ("public", "server") in changes
    assert node.self_info().addrs == tuple(node.listen_addrs)  # confirmed by dial-back
    # the identify push reached the servers: they have our address and add us
    await wait_for(lambda: all(in_table(p, node) for p in public), timeout=30)
    for p in public:
        assert p.host.peerstore.addrs(node.peer_id) == node.listen_addrs


async def test_unreachable_node_stays_client(stack: AsyncExitStack) -> None:
    public = await servers(stack)
    node = await start(stack, stand_in("auto", listen=False))
    for peer in public:
        await node.host.connect(peer.peer_id, peer.listen_addrs)
    await wait_for(lambda: node.reachability == "private", timeout=30)
    assert node.effective_mode == "client" and KAD_PROTOCOL not in node.host.protocols
    # it still uses the DHT as a client
    found = await node.find_peer(public[2].peer_id, timeout=10)
    assert found.addrs
    await asyncio.sleep(0.5)
    assert not any(in_table(p, node) for p in public)


async def test_going_private_drops_us_from_peer_tables(stack: AsyncExitStack) -> None:
    public = await servers(stack)
    node = await start(stack, stand_in("auto"))
    for peer in public:
        await node.host.connect(peer.peer_id, peer.listen_addrs)
    await wait_for(lambda: all(in_table(p, node) for p in public), timeout=30)
    # AutoNAT's verdict turns (fed directly: a real NAT appearing cannot be staged on
    # loopback); confidence must be worn down first, as go does
    for _ in range(5):
        node.autonat.record(Reachability.PRIVATE)
        if node.reachability == "private":
            break
    assert node.reachability == "private" and node.effective_mode == "client"
    assert KAD_PROTOCOL not in node.host.protocols
    assert node.self_info().addrs == ()  # nothing public is confirmed any more
    await wait_for(lambda: not any(in_table(p, node) for p in public), timeout=30)


async def test_loopback_is_not_public_without_the_explicit_policy(
    stack: AsyncExitStack,
) -> None:
    """Without ``public_nets`` a loopback network never makes an auto node a server."""
    public = await servers(stack)
    node = await start(stack, stand_in("auto", host=LOOPBACK_HOST))
    for peer in public:
        await node.host.connect(peer.peer_id, peer.listen_addrs)
    await asyncio.sleep(1.5)
    assert node.reachability == "unknown" and node.effective_mode == "client"
    assert node.autonat.history == []  # no peer qualifies: their addresses are not public


async def test_forced_modes_ignore_autonat(stack: AsyncExitStack) -> None:
    public = await servers(stack)
    client = await start(stack, stand_in("client"))
    for peer in public:
        await client.host.connect(peer.peer_id, peer.listen_addrs)
    await wait_for(lambda: client.reachability == "public", timeout=30)
    assert client.effective_mode == "client"
    server = await start(stack, stand_in("server", listen=False))
    for peer in public:
        await server.host.connect(peer.peer_id, peer.listen_addrs)
    await wait_for(lambda: server.reachability == "private", timeout=30)
    assert server.effective_mode == "server"


def test_auto_is_the_default_mode() -> None:
    assert NodeConfig().mode == "auto"
    with pytest.raises(ValueError):
        NodeConfig(mode="bogus").validate()  # type: ignore[arg-type]
