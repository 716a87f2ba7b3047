"""ContentNode: add on one node, cat on another, providers found through our DHT;
the blockstore persists under the repo; get_block / put_block."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from zikade_py import session
from zikade_py.bitswap import BitswapConfig, SessionConfig
from zikade_py.dht import NodeConfig
from zikade_py.files import ContentNode
from zikade_py.p2p.host import HostConfig
from zikade_py.unixfs import HELIA_2025_PROFILE

pytestmark = pytest.mark.timeout(90)

FAST = BitswapConfig(session=SessionConfig(provider_search_delay=0.05))


def config(**kw: object) -> NodeConfig:
    base: dict[str, object] = dict(
        mode="server", listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], republish=False,
        host=HostConfig(inbound_per_ip_rate=1000.0, inbound_per_ip_burst=1000),
    )
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


async def test_add_here_cat_there_through_the_dht(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(700_000)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    async with ContentNode(config(), bitswap=FAST) as seed:
        boot = [str(a.with_peer_id(seed.peer_id)) for a in seed.listen_addrs]
        async with (
            ContentNode(config(bootstrap=boot), bitswap=FAST) as adder,
            ContentNode(config(bootstrap=boot), bitswap=FAST) as reader,
        ):
            await adder.bootstrap()
            await reader.bootstrap()
            added = await adder.add(path)
            assert added.size == len(data) and added.blocks == 4  # 3 leaves + root
            assert added.provided is not None
            async with asyncio.timeout(30):
                got = b"".join([c async for c in reader.cat(added.cid)])
            assert got == data
            assert reader.bitswap.stat().blocks_received == 4
            # now local: a second cat fetches nothing
            async with session():
                again = b"".join([c async for c in reader.cat(added.cid)])
            assert again == data and reader.bitswap.stat().blocks_received == 4


async def test_blocks_and_pins_persist_in_the_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    async with ContentNode(config(repo=repo)) as node:
        added = await node.add(b"hello files", provide=False)
        raw = await node.put_block(b"a raw block")
    async with ContentNode(config(repo=repo)) as node:
        assert b"".join([c async for c in node.cat(added.cid)]) == b"hello files"
        assert await node.get_block(raw) == b"a raw block"
        assert len(node.blockstore.pins()) == 1
        assert (await node.blockstore.gc()).blocks == 1  # the unpinned raw block


async def test_helia_profile_gives_another_cid() -> None:
    data = random.Random(1).randbytes(2 * 1024 * 1024)
    async with ContentNode(config()) as node:
        a = await node.add(data, provide=False)
        b = await node.add(data, profile=HELIA_2025_PROFILE, provide=False)
        assert a.cid != b.cid and a.blocks == 9 and b.blocks == 3
