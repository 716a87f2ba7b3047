"""The blockstore's cap and GC watermark (Kubo's Datastore.StorageMax / StorageGCWatermark):
sizes parsed as Kubo writes them, the repo config entry, collection of unpinned blocks once
the store passes the watermark (pins kept), and the daemon's flags shown in ``repo stat``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.cli.conftest import Daemons, init_repo, zikade
from tests.cli.conftest import daemons as daemons
from tests.files.test_content_node import config
from zikade_py.blocks.limits import StorageLimits, parse_size
from zikade_py.files import ContentNode
from zikade_py.http.repo import RepoConfig, RepoError, load_config, save_config

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("text", "size"),
    [("10GB", 10 * 1000**3), ("512MiB", 512 * 1024**2), ("1048576", 1048576),
     ("1.5kB", 1500), (" 2 GiB ", 2 * 1024**3), (7, 7)],
)
def test_sizes_parse_as_kubo_writes_them(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "ten", "10XB", "-1GB", -1])
def test_bad_sizes_are_refused(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_limits_trigger_and_target() -> None:
    limits = StorageLimits(max_bytes=1_000_000, gc_watermark=50)
    assert (limits.trigger_bytes, limits.target_bytes) == (500_000, 400_000)
    assert StorageLimits(max_bytes=None).trigger_bytes is None
    with pytest.raises(ValueError):
        StorageLimits(gc_watermark=0)


def test_the_repo_config_carries_the_datastore_entry(tmp_path: Path) -> None:
    doc = RepoConfig().to_json()
    assert doc["Datastore"] == {"StorageMax": "10GB", "StorageGCWatermark": 90}
    cfg = RepoConfig.from_json({**doc, "Datastore": {"StorageMax": "1MB",
                                                     "StorageGCWatermark": 60}})
    assert cfg.storage_limits() == StorageLimits(max_bytes=1_000_000, gc_watermark=60)
    assert RepoConfig.from_json({}).storage_limits().max_bytes == 10 * 1000**3, "old repos"
    with pytest.raises(RepoError):
        RepoConfig.from_json({"Datastore": {"StorageGCWatermark": "lots"}})


async def test_unpinned_blocks_are_collected_past_the_watermark() -> None:
    rng = random.Random(8)
    limits = StorageLimits(max_bytes=1_000_000, gc_watermark=50)
    async with ContentNode(config(), storage=limits) as node:
        pinned = await node.add(rng.randbytes(300_000), provide=False)
        dag_bytes = node.blockstore.stat().bytes  # the leaves and the root node
        cached = [await node.put_block(rng.randbytes(60_000)) for _ in range(3)]
        assert node.blockstore.stat().bytes == dag_bytes + 3 * 60_000, "under 500 kB: kept"
        await node.put_block(rng.randbytes(60_000))  # 540 kB > 500 kB: collect to 400 kB
        st = node.blockstore.stat()
        assert st.bytes <= 400_000 and st.pinned_blocks == pinned.blocks
        assert not any(node.blockstore.has(_raw(c)) for c in cached[:2]), "oldest go first"
        got = b"".join([c async for c in node.cat(pinned.cid)])
        assert len(got) == 300_000, "pinned blocks are never collected"


def _raw(cid: str) -> bytes:
    from zikade_py.blocks import cid as cids

    return cids.to_bytes(cid)


def test_daemon_flags_and_config_show_in_repo_stat(tmp_path: Path, daemons: Daemons) -> None:
    repo = tmp_path / "offline"
    init_repo(repo)
    cfg = load_config(repo)
    cfg.storage_max, cfg.storage_gc_watermark = "2MB", 70
    save_config(repo, cfg)
    text = zikade("repo", "stat", repo=repo).ok().lines
    assert "StorageMax: 2000000" in text and "StorageGCWatermark: 70%" in text
    d = daemons.start("d", "--storage-max", "1MB", "--storage-gc-watermark", "50")
    stat = json.loads(zikade("repo", "stat", "--json", repo=d.repo).ok().out)
    assert (stat["StorageMax"], stat["StorageGCWatermark"]) == (1_000_000, 50)
    rng = random.Random(9)
    for _ in range(6):  # 6 x 100 kB unpinned: past 500 kB the daemon collects to 400 kB
        zikade("block", "put", "-", repo=d.repo, stdin=rng.randbytes(100_000)).ok()
    stat = json.loads(zikade("repo", "stat", "--json", repo=d.repo).ok().out)
    assert stat["RepoSize"] <= 400_000 and stat["NumObjects"] == 4
    bad = zikade("daemon", "--storage-max", "lots", repo=repo)
    bad.one_error("storage limit")
