"""``add`` provides through the reprovide sweep: the root is announced at once and, under the
default ``pinned`` strategy, every block of the file joins the sweep's keys (reprovided every
cycle) and is found by another node; ``roots`` keeps only the root; a daemon that starts
hands what was pinned offline to the sweep."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from multiformats import CID

from tests.files.test_content_node import FAST, config
from zikade_py.blocks import cid as cids
from zikade_py.files import ContentNode
from zikade_py.unixfs import import_bytes

pytestmark = pytest.mark.timeout(90)


async def _sweep_keys(node: ContentNode) -> set[bytes]:
    assert node.reprovider is not None, "the sweep is the default reprovider"
    return {mh for _, mh in await node.reprovider.store.range(0, 1 << 256)}


async def _found_by(reader: ContentNode, cid: bytes, provider: object) -> bool:
    async for info in reader.find_providers(CID.decode(cid), count=1, timeout=10):
        if info.peer_id == provider:
            return True
    return False


async def test_added_blocks_join_the_sweep_and_are_found(tmp_path: Path) -> None:
    data = random.Random(10).randbytes(700_000)
    blocks = [b.cid for b in import_bytes(data)]  # 3 leaves, then the root
    async with ContentNode(config()) as seed:
        boot = [str(a.with_peer_id(seed.peer_id)) for a in seed.listen_addrs]
        async with (
            ContentNode(config(bootstrap=boot, republish=True), bitswap=FAST) as adder,
            ContentNode(config(bootstrap=boot), bitswap=FAST) as reader,
        ):
            await adder.bootstrap()
            await reader.bootstrap()
            added = await adder.add(data)
            assert added.cid == cids.to_str(blocks[-1]) and added.provided is not None
            stat = await adder.provide_stat()
            assert stat["strategy"] == "sweep" and stat["keys"] == len(blocks)
            assert await _sweep_keys(adder) == {cids.multihash_of(c) for c in blocks}
            assert await _found_by(reader, blocks[-1], adder.peer_id), "the root, at once"
            leaf = blocks[0]
            async with asyncio.timeout(45):  # a leaf goes out in the sweep's first burst
                while not await _found_by(reader, leaf, adder.peer_id):
                    await asyncio.sleep(0.5)


async def test_roots_strategy_and_pins_handed_over_at_start(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(600_000)
    blocks = [b.cid for b in import_bytes(data)]
    roots_only = ContentNode(config(republish=True), provide_strategy="roots")
    async with roots_only:
        await roots_only.add(data)
        assert await _sweep_keys(roots_only) == {cids.multihash_of(blocks[-1])}
    repo = tmp_path / "repo"
    async with ContentNode(config(repo=repo)) as offline:  # like 'zikade add' with no daemon
        await offline.add(data, provide=False)
    async with ContentNode(config(repo=repo, republish=True), announce_pins=True) as daemon:
        async with asyncio.timeout(10):
            while len(await _sweep_keys(daemon)) < len(blocks):
                await asyncio.sleep(0.05)
        assert await _sweep_keys(daemon) == {cids.multihash_of(c) for c in blocks}
    with pytest.raises(ValueError):
        ContentNode(config(), provide_strategy="everything")
