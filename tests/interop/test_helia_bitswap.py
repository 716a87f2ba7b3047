"""Interop with Helia (issue 13, acceptance 2): a file added in Helia is fetched by our
node, which finds Helia's provider record through the DHT; a file added in our node is
fetched by Helia, which is connected only to a DHT seed that has none of the blocks and
finds us through the DHT.
Bytes are identical both ways, and HAVE / DONT_HAVE go back and forth (the DHT seed has
none of the blocks and says so)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zikade_py.bitswap import BitswapConfig, SessionConfig
from zikade_py.dht import NodeConfig
from zikade_py.files import ContentNode
from zikade_py.p2p.host import HostConfig
from zikade_py.p2p.peer_id import PeerID
from zikade_py.unixfs import HELIA_2025_PROFILE

from .jsnode import INTEROP_DIR, JsNode, node_modules_dir

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

FAST = BitswapConfig(session=SessionConfig(provider_search_delay=0.2))


class HeliaNode(JsNode):
    """A Helia node (helianode.mjs) with the same line protocol as the js-libp2p peer."""

    script = INTEROP_DIR / "helianode.mjs"


def config(**kw: object) -> NodeConfig:
    base: dict[str, object] = dict(
        mode="server", listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], republish=False,
        host=HostConfig(inbound_per_ip_rate=1000.0, inbound_per_ip_burst=1000),
    )
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
async def helia() -> AsyncIterator[HeliaNode]:
    if shutil.which("node") is None or not (node_modules_dir() / "helia").is_dir():
        pytest.skip("needs node and helia in tests/interop (npm ci)")
    async with HeliaNode() as node:
        yield node


def seed_addr(node: ContentNode) -> str:
    return str(node.listen_addrs[0].with_peer_id(node.peer_id))


async def test_zikade_cats_a_file_added_in_helia(helia: HeliaNode, tmp_path: Path) -> None:
    data = random.Random(11).randbytes(3 * 1024 * 1024 + 123)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    async with ContentNode(config(), bitswap=FAST) as seed:
        await helia.call("connect", addr=seed_addr(seed))
        added = await helia.call("add", file=str(src), timeout_ms=60_000)
        cid = added["cid"]
        async with ContentNode(config(bootstrap=[seed_addr(seed)]), bitswap=FAST) as reader:
            await reader.bootstrap()
            helia_id = PeerID.from_string(helia.peer_id)
            async with asyncio.timeout(30):
                found = [p.peer_id async for p in reader.find_providers(cid, count=1)]
            assert found == [helia_id], "Helia's provider record came through the DHT"
            async with asyncio.timeout(60):
                got = b"".join([c async for c in reader.cat(cid)])
            assert got == data
            # Helia's default layout: 1 MiB chunks -> our --profile unixfs-v1-2025 agrees
            assert (await reader.add(got, profile=HELIA_2025_PROFILE, provide=False)).cid == cid
            stat = reader.bitswap.stat()
            assert stat.blocks_received == 5 and stat.duplicate_blocks == 0
            assert stat.dont_haves_received >= 1, "the seed said DONT_HAVE to our want-have"
            assert seed.bitswap.stat().dont_haves_sent >= 1


async def test_helia_cats_a_file_added_in_zikade(helia: HeliaNode, tmp_path: Path) -> None:
    data = random.Random(12).randbytes(2 * 1024 * 1024 + 5)
    out = tmp_path / "out.bin"
    async with ContentNode(config(), bitswap=FAST) as seed:  # noqa: SIM117 (adder needs seed)
        async with ContentNode(config(bootstrap=[seed_addr(seed)]), bitswap=FAST) as adder:
            await adder.bootstrap()
            added = await adder.add(data)
            assert added.provided is not None and added.provided.ok
            await helia.call("connect", addr=seed_addr(seed))
            result = await helia.call("cat", cid=added.cid, file=str(out), timeout_ms=60_000)
            assert result["size"] == len(data)
            assert result["sha256"] == hashlib.sha256(data).hexdigest()
            assert out.read_bytes() == data
            stat = adder.bitswap.stat()
            assert stat.blocks_sent == added.blocks
            assert stat.haves_sent + stat.blocks_sent >= added.blocks
            assert seed.bitswap.stat().dont_haves_sent >= 1, "Helia asked the seed first"


async def test_zikade_cat_command_fetches_a_helia_file(helia: HeliaNode, tmp_path: Path) -> None:
    """The command line, as users run it: ``zikade cat CID --bootstrap <seed> -o FILE``
    with no daemon; Helia is found through the DHT."""
    import os
    import sys

    data = random.Random(13).randbytes(1024 * 1024 + 77)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    zikade = str(Path(sys.executable).parent / "zikade")
    repo = tmp_path / "repo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    init = await asyncio.create_subprocess_exec(
        zikade, "init", "--repo", str(repo), "--no-bootstrap", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    assert await init.wait() == 0
    async with ContentNode(config(), bitswap=FAST) as seed:
        await helia.call("connect", addr=seed_addr(seed))
        cid = (await helia.call("add", file=str(src), timeout_ms=60_000))["cid"]
        out = tmp_path / "out.bin"
        proc = await asyncio.create_subprocess_exec(
            zikade, "cat", cid, "--repo", str(repo), "--bootstrap", seed_addr(seed),
            "-o", str(out), "--timeout", "60s", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        assert out.read_bytes() == data


async def test_helia_answers_our_want_have_with_have_and_dont_have(
    helia: HeliaNode, tmp_path: Path
) -> None:
    """Connected to Helia directly, our session asks it want-have first: HAVE for a block
    it holds (then want-block), DONT_HAVE for one it lacks; Helia asks us the same way."""
    from zikade_py.blocks import cid as cids
    from zikade_py.p2p.multiaddr import Multiaddr

    data = random.Random(14).randbytes(300_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    cid = (await helia.call("add", file=str(src), timeout_ms=60_000))["cid"]
    no_search = BitswapConfig(session=SessionConfig(provider_search_delay=30.0))
    async with ContentNode(config(), bitswap=no_search) as node:
        helia_id = PeerID.from_string(helia.peer_id)
        await node.host.connect(helia_id, [Multiaddr.parse(a) for a in helia.addrs])
        async with asyncio.timeout(30):
            while not node.bitswap.wants.peers:  # identify told us Helia speaks bitswap
                await asyncio.sleep(0.05)
            assert b"".join([c async for c in node.cat(cid)]) == data
        stat = node.bitswap.stat()
        assert stat.haves_received >= 1, "Helia said HAVE to our broadcast want-have"
        missing = cids.make(b"helia does not have this")
        with pytest.raises(TimeoutError):
            await node.get_block(missing, timeout=3.0)
        assert node.bitswap.stat().dont_haves_received >= 1, "and DONT_HAVE for what it lacks"
        # and the other way: Helia asks us for a block we hold
        ours = await node.add(random.Random(15).randbytes(1000), provide=False)
        out = tmp_path / "out.bin"
        await helia.call("connect", addr=seed_addr(node))
        res = await helia.call("cat", cid=ours.cid, file=str(out), timeout_ms=30_000)
        assert res["size"] == 1000
        served = node.bitswap.stat()
        assert served.blocks_sent >= 1 and served.haves_sent + served.blocks_sent >= 1
