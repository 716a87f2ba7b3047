"""The Notifier (DESIGN.md §4) and find_providers streaming through it."""

from __future__ import annotations

import asyncio
import time

import pytest
from multiformats import CID, multihash

from zikade_py.dht import Node
from zikade_py.dht.messages import Message, PeerInfo, add_provider, provider_peers
from zikade_py.dht.notifier import Notifier, ProviderRecord
from zikade_py.dht.stores import MemoryProviderStore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import start_network, wait_for

pytestmark = pytest.mark.timeout(60)

KEY = b"\x12\x20" + bytes(32)


def peer(port: int = 4001) -> PeerInfo:
    pid = PeerID.from_public_key(PrivateKey.generate().public_key)
    return PeerInfo(pid, (Multiaddr.from_tcp("127.0.0.1", port),))


def drain(sub: object) -> list[ProviderRecord]:
    out: list[ProviderRecord] = []
    while (rec := sub.get_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(rec)
    return out


def test_subscribe_delivers_stored_then_published_each_once() -> None:
    store = MemoryProviderStore()
    notifier = Notifier(store, clock=lambda: 1000.0)
    a, b = peer(), peer()
    notifier.publish(KEY, a)  # stored before anyone listens
    sub = notifier.subscribe([KEY])
    notifier.publish(KEY, a)  # again: a duplicate for the subscriber
    notifier.publish(KEY, b, store=False)  # learned from a lookup: not stored
    notifier.publish(b"other key", peer())  # another key
    got = drain(sub)
    assert [r.provider.peer_id for r in got] == [a.peer_id, b.peer_id]
    assert [p.peer_id for p in store.get(KEY, 1000.0)] == [a.peer_id]
    sub.close()
    notifier.publish(KEY, peer())
    assert sub.get_nowait() is None and notifier.subscribers(KEY) == 0


async def test_subscription_iterates_until_closed() -> None:
    notifier = Notifier(MemoryProviderStore(), clock=lambda: 1000.0)
    sub = notifier.subscribe([KEY])
    a = peer()

    async def later() -> None:
        await asyncio.sleep(0.01)
        notifier.publish(KEY, a)
        sub.close()

    task = asyncio.create_task(later())
    assert [r.provider async for r in sub] == [a]
    await task


def test_a_full_subscription_drops_and_counts() -> None:
    notifier = Notifier(MemoryProviderStore(), clock=lambda: 1000.0)
    sub = notifier.subscribe([KEY], buffer=2)
    for _ in range(4):
        notifier.publish(KEY, peer(), store=False)
    assert len(drain(sub)) == 2 and sub.dropped == 2


async def test_provider_arriving_during_find_providers_is_yielded_exactly_once() -> None:
    """The race, forced: the querier's GET_PROVIDERS answers (which name the provider)
    are held back until the provider's own ADD_PROVIDER has reached the querier; the
    provider must come out once, though it arrives by both ways."""
    async with start_network(4) as net:
        finder, provider = net.nodes[0], net.nodes[1]
        others = [n for n in net.all if n is not finder and n is not provider]
        mh = multihash.digest(b"race", "sha2-256")
        cid = CID("base32", 1, "raw", mh)
        key = bytes(mh)
        announce = add_provider(key, provider.self_info())
        for node in [*others, finder]:
            provider.host.peerstore.add_addrs(node.peer_id, node.listen_addrs, 600)
        for node in others:  # everyone but the finder learns of the provider first
            await provider.router.send_message(node.peer_id, announce)
        await wait_for(lambda: all(n.providers.get(key, time.time()) for n in others))

        arrived = asyncio.Event()
        held: list[bool] = []

        async def hold(frm: PeerID, response: Message) -> None:
            if response.type == Message.GET_PROVIDERS:
                held.append(any(p.peer_id == provider.peer_id for p in provider_peers(response)))
                await arrived.wait()

        finder.router.response_hook = hold
        original = finder.on_provider_added

        def on_added(k: bytes, info: PeerInfo) -> None:
            original(k, info)
            arrived.set()

        finder.on_provider_added = on_added  # type: ignore[method-assign]
        found: list[PeerInfo] = []

        async def run() -> None:
            async for info in finder.find_providers(cid, count=0):
                found.append(info)

        task = asyncio.create_task(run())
        await wait_for(lambda: len(held) >= 1)  # a response is held: the query is running
        assert found == []
        await provider.router.send_message(finder.peer_id, announce)  # the ADD_PROVIDER
        await asyncio.wait_for(task, 20)
        assert [p.peer_id for p in found] == [provider.peer_id]
        assert any(held), "no held response named the provider: the race was not forced"
        assert finder.notifier.subscribers(key) == 0


async def test_find_providers_yields_local_records_first_and_stops_at_count() -> None:
    async with start_network(3) as net:
        node: Node = net.nodes[0]
        cid = CID("base32", 1, "raw", multihash.digest(b"local", "sha2-256"))
        for n in net.all[:3]:
            await n.provide(cid)
        key = bytes(cid.digest)
        # ADD_PROVIDER is never answered: the others' records land a moment later.
        await wait_for(lambda: len(node.providers.get(key, time.time())) == 3)
        local = {p.peer_id for p in node.providers.get(key, time.time())}
        sent = node.router.requests_sent
        got = [p async for p in node.find_providers(cid, count=2)]
        assert len({p.peer_id for p in got}) == 2 and {p.peer_id for p in got} <= local
        assert node.router.requests_sent == sent  # answered locally: no request went out
        assert node.driver.requests_running == 0
