"""The reprovide sweep on a loopback network of our own nodes (real TCP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from multiformats import CID, multihash

from zikade_py.core.sweep import SweepConfig
from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.keys import content_multihash
from zikade_py.dht.pb.dht_pb2 import Message
from zikade_py.dht.reprovide import SweepReprovider
from zikade_py.dht.reprovide_send import BatchSender
from zikade_py.dht.stores.memory import MemoryProviderStore
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import LOOPBACK_COORDINATOR, loopback_config, start_network, wait_for
from .test_mode_addrs import HOST, fake_at, private_ip, public_ip

pytestmark = pytest.mark.timeout(120)

SWEEP = SweepConfig(burst_delay=0.1)


def cids(n: int, tag: str = "sweep") -> list[CID]:
    """``n`` distinct CIDs."""
    return [
        CID("base32", 1, "raw", multihash.digest(f"{tag}-{i}".encode(), "sha2-256"))
        for i in range(n)
    ]


def provider_config(i: int, **overrides: object) -> NodeConfig:
    """Node 0 reprovides with the sweep; the others only serve."""
    coord = replace(LOOPBACK_COORDINATOR, sweep=SWEEP)
    return loopback_config(republish=i == 0, coordinator=coord, **overrides)


def sweeper(node: Node) -> tuple[SweepReprovider, BatchSender]:
    rep = node.reprovider
    sender = node.driver.batch_sender
    assert rep is not None and isinstance(sender, BatchSender)
    return rep, sender


async def wait_settled(node: Node, timeout: float = 60.0) -> None:
    """Wait (bounded) until the sweep has no burst waiting and no region in progress."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stat = await node.provide_stat()
        if stat["burst_keys"] == 0 and stat["active_regions"] == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the sweep did not settle")
        await asyncio.sleep(0.05)


async def test_provide_many_goes_out_in_batches_and_is_found_by_others() -> None:
    async with start_network(9, config=provider_config, min_table=3) as net:
        a = net.nodes[0]
        keys = cids(300)
        assert await a.provide_many(keys) == 300
        assert await a.provide_many(keys[:50]) == 0, "known keys are not provided again"
        await wait_settled(a)
        rep, sender = sweeper(a)
        assert rep.bursts_done >= 1
        stat = await a.provide_stat()
        assert stat["strategy"] == "sweep" and stat["keys"] == 300
        assert stat["regions"] >= 1 and stat["network_size"] is not None
        # Every server got every key (fewer than k servers), each on one stream per batch.
        assert sender.messages >= 300 * 5
        assert sender.streams * 50 <= sender.messages
        others = net.nodes[1:]
        for i, cid in enumerate(keys[:10]):
            finder = others[i % len(others)]
            found = [p.peer_id async for p in finder.find_providers(cid, count=1, timeout=10)]
            assert a.peer_id in found


async def test_a_settled_sweep_means_its_servers_hold_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ADD_PROVIDER has no answer, and a server stores a batch's records one after the other.
    A batch counts as sent once the server has read it all (it closes its side), so when
    ``provide stat`` shows the sweep settled the records are there: before, it settled when
    the last write left, and a find-providers right after (tests/cli/test_provide.py, on a
    loaded machine) missed records the server was still storing."""
    real = MemoryProviderStore.add_async

    async def slow(self: MemoryProviderStore, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)  # a busy disk: each record waits for its commit
        await real(self, *args, **kwargs)

    monkeypatch.setattr(MemoryProviderStore, "add_async", slow)
    async with start_network(1, config=provider_config) as net:
        provider, server = net.nodes[0], net.bootstrap
        mine = cids(60, "settled")
        await provider.provide_many(mine)
        await wait_settled(provider)
        now = time.time()
        missing = [
            c for c in mine
            if provider.peer_id not in {p.peer_id for p in server.providers.get(
                content_multihash(c), now)}
        ]  # fmt: skip
        assert not missing, f"{len(missing)} of {len(mine)} records not stored when settled"


async def test_reprovide_now_and_clear() -> None:
    async with start_network(6, config=provider_config, min_table=1) as net:
        a = net.nodes[0]
        await a.provide_many(cids(40, "clear"))
        await wait_settled(a)
        rep, sender = sweeper(a)
        before = sender.messages
        await a.reprovide_now()
        await wait_for(lambda: rep.regions_done >= 1, timeout=30)
        assert sender.messages > before
        stat = await a.provide_stat()
        assert stat["regions_done_cycle"] >= 1 and stat["lookups_cycle"] >= 1
        assert await a.provide_clear() == 40
        stat = await a.provide_stat()
        assert stat["keys"] == 0 and stat["regions"] == 0
        sent = sender.messages
        await a.reprovide_now()
        await wait_settled(a)
        assert sender.messages == sent, "a cleared node announced again"


async def test_single_provide_announces_at_once_and_joins_the_schedule() -> None:
    async with start_network(5, config=provider_config, min_table=1) as net:
        a = net.nodes[0]
        cid = cids(1, "single")[0]
        result = await a.provide(cid)
        assert result.contacted, "provide of one CID still announces at once"
        _, sender = sweeper(a)
        await wait_settled(a)
        stat = await a.provide_stat()
        assert stat["keys"] == 1 and stat["regions"] == 1
        assert sender.messages == 0, "no burst for a key provide() just announced"
        next_at = stat["next_region_at"]
        cycle = stat["cycle_start"]
        assert isinstance(next_at, float) and isinstance(cycle, float)
        assert next_at - cycle >= SWEEP.reprovide_interval / 2


async def test_keys_and_schedule_persist_in_the_repo(tmp_path: Path) -> None:
    async with start_network(6, config=provider_config, min_table=1) as net:
        boot = [str(m) for m in net.bootstrap.multiaddrs]
        repo = tmp_path / "repo"
        cfg = replace(provider_config(0), repo=repo, bootstrap=boot)
        a = Node(cfg)
        await a.start()
        try:
            await a.bootstrap()
            await a.provide_many(cids(120, "persist"))
            await wait_settled(a)
            first = await a.provide_stat()
        finally:
            await a.close()
        db = sqlite3.connect(repo / "datastore.sqlite")
        try:
            assert db.execute("SELECT count(*) FROM sweep_keys").fetchone()[0] == 120
            pending = "SELECT count(*) FROM sweep_keys WHERE pending = 1"
            assert db.execute(pending).fetchone()[0] == 0
            regions = db.execute("SELECT count(*) FROM sweep_regions").fetchone()[0]
            assert regions == first["regions"]
        finally:
            db.close()
        again = Node(cfg)
        await again.start()
        try:
            stat = await again.provide_stat()
            assert stat["keys"] == 120 and stat["regions"] == first["regions"]
            assert stat["cycle_start"] == pytest.approx(first["cycle_start"], abs=1.0)
            # Announced a moment ago: nothing is due, nothing goes out again.
            _, sender = sweeper(again)
            await again.bootstrap()
            await wait_settled(again)
            assert sender.messages == 0
        finally:
            await again.close()


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def test_batches_carry_only_addresses_the_receiver_can_use(stack: AsyncExitStack) -> None:
    """As for a single ADD_PROVIDER (dht/router.py): a public server's batch names only our
    public address, a LAN server's names both."""
    received: dict[str, list[list[Multiaddr]]] = {"public": [], "lan": []}

    def recorder(name: str) -> object:
        async def answer(_peer: PeerID, request: Message) -> Message | None:
            if request.type == Message.ADD_PROVIDER:
                addrs = [Multiaddr.from_bytes(a) for a in request.providerPeers[0].addrs]
                received[name].append(addrs)
                return None
            return Message(type=request.type, key=request.key)

        return answer

    public_peer = await fake_at(stack, public_ip(), recorder("public"))
    lan_peer = await fake_at(stack, private_ip(), recorder("lan"))
    coord = replace(LOOPBACK_COORDINATOR, sweep=SWEEP)
    node = Node(loopback_config(
        mode="server", host=HOST, bootstrap=[], republish=True, coordinator=coord,
        listen_addrs=[f"/ip4/{public_ip()}/tcp/0", f"/ip4/{private_ip()}/tcp/0"],
    ))  # fmt: skip
    await node.start()
    stack.push_async_callback(node.close)
    public_addr, private_addr = node.listen_addrs
    for fake in (public_peer, lan_peer):
        node.add_peer(str(fake.host.listen_addrs[0].with_peer_id(fake.peer_id)))
    await wait_for(lambda: len(node.routing_table()) == 2)
    await node.provide_many(cids(30, "scoped"))
    await wait_for(lambda: len(received["public"]) >= 30 and len(received["lan"]) >= 30)
    assert all(addrs == [public_addr] for addrs in received["public"])
    both = sorted([str(public_addr), str(private_addr)])
    assert all(sorted(map(str, addrs)) == both for addrs in received["lan"])


async def test_classic_reprovide_now_announces_everything_and_keeps_the_22h_rhythm() -> None:
    def classic(i: int) -> NodeConfig:
        return loopback_config(republish=i == 0, reprovide="classic")

    async with start_network(4, config=classic, min_table=1) as net:
        a = net.nodes[0]
        assert a.reprovider is None and a.provider_republisher is not None
        assert await a.provide_many(cids(3, "classic")) == 3
        await a.reprovide_now()
        assert a.provider_republisher.announced == 3
        now = time.time()
        interval = SWEEP.reprovide_interval
        assert await a.providers.list_local_due_async(now + interval - 60) == []
        assert len(await a.providers.list_local_due_async(now + interval + 60)) == 3
        stat = await a.provide_stat()
        assert stat["strategy"] == "classic" and stat["keys"] == 3
