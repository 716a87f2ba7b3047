"""Address hygiene in the DHT (go's WAN filter, and what we hand out or announce).

Stand-ins (docs/autonat.md): the address policy of every host here names
127.0.1.0/24 as public and 127.0.2.0/24 as private; the rest of 127.0.0.0/8 stays
loopback. Hosts listen on one address each and dial from it, so peers see them
where they listen.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace

import pytest

from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.messages import (
    Message,
    PeerInfo,
    add_provider,
    encode_message,
    find_node,
    read_message,
)
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.autonat_status import AutoNATConfig
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import LOOPBACK_HOST, FakeKadPeer, loopback_config, wait_for

pytestmark = pytest.mark.timeout(60)

M = Multiaddr.parse
POLICY = AddressPolicy(public_nets=("127.0.1.0/24",), private_nets=("127.0.2.0/24",))
HOST = replace(LOOPBACK_HOST, address_policy=POLICY)
_last = iter(range(30, 250))


def public_ip() -> str:
    return f"127.0.1.{next(_last)}"


def private_ip() -> str:
    return f"127.0.2.{next(_last)}"


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


def config(ip: str, mode: str = "server", **kw: object) -> NodeConfig:
    return loopback_config(
        mode=mode, listen_addrs=[f"/ip4/{ip}/tcp/0"], host=HOST, bootstrap=[], **kw
    )


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def node_at(stack: AsyncExitStack, ip: str, mode: str = "server", **kw: object) -> Node:
    node = Node(config(ip, mode, **kw))
    await node.start()
    stack.push_async_callback(node.close)
    return node


async def host_at(stack: AsyncExitStack, *ips: str) -> Host:
    host = Host(PrivateKey.generate(), HOST)
    await host.start([M(f"/ip4/{ip}/tcp/0") for ip in ips])
    stack.push_async_callback(host.close)
    return host


async def fake_at(stack: AsyncExitStack, ip: str, answer: object) -> FakeKadPeer:
    """A hand-written kad server (like py-libp2p's, it may send anything) on ``ip``."""
    fake = FakeKadPeer(answer)  # type: ignore[arg-type]
    fake.host = Host(PrivateKey.generate(), HOST)
    fake.host.set_stream_handler(KAD_PROTOCOL, fake._handle)
    await fake.host.start([M(f"/ip4/{ip}/tcp/0")])
    stack.push_async_callback(fake.close)
    return fake


async def ask(host: Host, node: Node, request: Message) -> Message:
    await host.connect(node.peer_id, node.listen_addrs)
    stream = await host.new_stream(node.peer_id, [KAD_PROTOCOL])
    await stream.write(encode_message(request))
    response = await read_message(stream.reader)
    await stream.close()
    assert response is not None
    return response


async def test_public_peer_cannot_plant_private_or_suffixed_addresses(
    stack: AsyncExitStack,
) -> None:
    """A public peer's answer names a peer with loopback, private, public and /p2p-suffixed
    duplicate addresses: only the public one, bare, is kept and returned."""
    target, provider = random_peer(), random_peer()
    good = M("/ip4/127.0.1.77/tcp/4001")
    good_provider = M("/ip4/127.0.1.78/tcp/4001")
    target_addrs = (
        M("/ip4/127.0.0.1/tcp/4001"), M("/ip4/127.0.2.77/tcp/4001"), good,
        good.with_peer_id(target), M("/ip4/127.0.1.79/tcp/1").with_peer_id(random_peer()),
    )

    async def answer(_peer: PeerID, request: Message) -> Message | None:
        response = Message(type=request.type, key=request.key)
        response.closerPeers.append(PeerInfo(target, target_addrs).to_pb())
        if request.type == Message.GET_PROVIDERS:
            response.providerPeers.append(
                PeerInfo(provider, (M("/ip4/127.0.2.78/tcp/4001"),
                                    good_provider.with_peer_id(provider))).to_pb()
            )
        return response

    fake = await fake_at(stack, public_ip(), answer)
    node = await node_at(stack, public_ip())
    node.add_peer(str(fake.host.listen_addrs[0].with_peer_id(fake.peer_id)))
    await wait_for(lambda: len(node.routing_table()) == 1)
    info = await node.find_peer(target, timeout=10)
    assert info.addrs == (good,)  # no duplicate, no /p2p, nothing narrower than public
    assert node.host.peerstore.addrs(target) == [good]
    found = [p async for p in node.find_providers(
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", count=1, timeout=10,
    )]
    assert [(p.peer_id, p.addrs) for p in found] == [(provider, (good_provider,))]
    assert node.host.peerstore.addrs(provider) == [good_provider]


async def test_identify_from_a_public_peer_keeps_only_its_public_addresses(
    stack: AsyncExitStack,
) -> None:
    peer = await host_at(stack, public_ip(), private_ip())
    node = await node_at(stack, public_ip())
    public = [a for a in peer.listen_addrs if str(a).startswith("/ip4/127.0.1.")]
    await node.host.connect(peer.peer_id, public)
    await node.host.identify_peer(peer.peer_id)
    assert node.host.peerstore.addrs(peer.peer_id) == public


async def test_private_addresses_are_not_handed_to_public_peers(stack: AsyncExitStack) -> None:
    """We sit on a LAN (behind a NAT that forwards our port); a LAN server in our table is
    named to a LAN requester with its address, never to a public one; an ADD_PROVIDER
    from a public peer keeps only its public address."""
    node = await node_at(stack, private_ip())
    lan = await node_at(stack, private_ip())
    await lan.bootstrap([str(node.multiaddrs[0])])
    await wait_for(lambda: any(e.peer.peer_id == lan.peer_id for e in node.routing_table()))
    public_requester = await host_at(stack, public_ip())
    lan_requester = await host_at(stack, private_ip())
    to_public = await ask(public_requester, node, find_node(lan.peer_id.multihash))
    named = {p.id: list(p.addrs) for p in to_public.closerPeers}
    assert named.get(lan.peer_id.multihash, []) == []
    to_lan = await ask(lan_requester, node, find_node(lan.peer_id.multihash))
    lan_entry = [p for p in to_lan.closerPeers if p.id == lan.peer_id.multihash]
    assert [Multiaddr.from_bytes(a) for a in lan_entry[0].addrs] == lan.listen_addrs
    # ADD_PROVIDER from the public peer naming a private and a public address
    mh = bytes.fromhex("1220" + "ab" * 32)
    private_addr = M(f"/ip4/{private_ip()}/tcp/4001")
    stream = await public_requester.new_stream(node.peer_id, [KAD_PROTOCOL])
    await stream.write(encode_message(add_provider(
        mh, PeerInfo(public_requester.peer_id, (private_addr, *public_requester.listen_addrs))
    )))
    await stream.close()
    await wait_for(lambda: bool(node.providers.get(mh, time.time())))
    stored = node.providers.get(mh, time.time())
    assert [p.addrs for p in stored] == [tuple(public_requester.listen_addrs)]


async def test_auto_mode_announces_only_confirmed_public_addresses(
    stack: AsyncExitStack,
) -> None:
    """Before AutoNAT confirms anything, an auto node tells a public peer no address and
    gives none in its own FIND_NODE answer; a forced server announces its address."""
    silent = AutoNATConfig(server=False)  # nobody dials back: nothing is confirmed
    auto = await node_at(stack, public_ip(), mode="auto", autonat=silent)
    server = await node_at(stack, public_ip(), mode="server", autonat=silent)
    peer = await node_at(stack, public_ip(), autonat=silent)
    for n in (auto, server):
        await n.host.connect(peer.peer_id, peer.listen_addrs)
        await n.host.identify_peer(peer.peer_id)
    await wait_for(lambda: peer.host.peerstore.addrs(server.peer_id) == server.listen_addrs)
    await peer.host.identify_peer(auto.peer_id)
    assert peer.host.peerstore.addrs(auto.peer_id) == []
    assert auto.self_info().addrs == ()
    assert server.self_info().addrs == tuple(server.listen_addrs)
    assert auto.reachability == "unknown" and auto.effective_mode == "client"


async def test_suffixed_addresses_from_a_py_libp2p_like_peer_are_normalized(
    stack: AsyncExitStack,
) -> None:
    """py-libp2p sends each address with /p2p/<id>, often beside the bare form: find_peer
    returned both forms as duplicates and find_providers yielded the suffixed one."""
    target, provider = random_peer(), random_peer()
    bare = M("/ip4/127.0.0.1/tcp/4101")
    provider_addr = M("/ip4/127.0.0.1/tcp/4102")

    async def answer(_peer: PeerID, request: Message) -> Message | None:
        response = Message(type=request.type, key=request.key)
        response.closerPeers.append(
            PeerInfo(target, (bare.with_peer_id(target), bare)).to_pb()
        )
        if request.type == Message.GET_PROVIDERS:
            response.providerPeers.append(
                PeerInfo(provider, (provider_addr.with_peer_id(provider),)).to_pb()
            )
        return response

    fake = FakeKadPeer(answer)  # type: ignore[arg-type]
    await fake.start()
    stack.push_async_callback(fake.close)
    node = Node(loopback_config(mode="server"))
    await node.start()
    stack.push_async_callback(node.close)
    node.add_peer(fake.multiaddr)
    await wait_for(lambda: len(node.routing_table()) == 1)
    info = await node.find_peer(target, timeout=10)
    assert info.addrs == (bare,)
    found = [p async for p in node.find_providers(
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", count=1, timeout=10,
    )]
    assert [(p.peer_id, p.addrs) for p in found] == [(provider, (provider_addr,))]


async def test_provider_records_carry_only_addresses_the_receiver_can_use(
    stack: AsyncExitStack,
) -> None:
    """We listen on a public and a private address: the ADD_PROVIDER a public peer gets
    names only the public one, the one a LAN peer gets names both."""
    received: dict[str, list[Multiaddr]] = {}

    def recorder(name: str) -> object:
        async def answer(_peer: PeerID, request: Message) -> Message | None:
            if request.type == Message.ADD_PROVIDER:
                received[name] = [Multiaddr.from_bytes(a) for a in request.providerPeers[0].addrs]
                return None
            return Message(type=request.type, key=request.key)
        return answer

    public_peer = await fake_at(stack, public_ip(), recorder("public"))
    lan_peer = await fake_at(stack, private_ip(), recorder("lan"))
    node = Node(loopback_config(
        mode="server", host=HOST, bootstrap=[],
        listen_addrs=[f"/ip4/{public_ip()}/tcp/0", f"/ip4/{private_ip()}/tcp/0"],
    ))
    await node.start()
    stack.push_async_callback(node.close)
    public_addr, private_addr = node.listen_addrs
    for fake in (public_peer, lan_peer):
        node.add_peer(str(fake.host.listen_addrs[0].with_peer_id(fake.peer_id)))
    await wait_for(lambda: len(node.routing_table()) == 2)
    result = await node.provide(
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", timeout=10
    )
    assert result.ok
    await wait_for(lambda: len(received) == 2)
    assert received["public"] == [public_addr]
    assert sorted(map(str, received["lan"])) == sorted([str(public_addr), str(private_addr)])
