"""``zikade add`` / ``cat`` / ``block`` / ``bitswap stat`` as users run them: without a
daemon (the repo's blockstore), and through two daemons (add on one, cat on the other,
the provider found through the DHT)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Daemons, init_repo, zikade
from tests.cli.conftest import daemons as daemons
from zikade_py.blocks import cid as cids
from zikade_py.unixfs import DEFAULT_PROFILE, HELIA_2025_PROFILE, import_bytes

pytestmark = pytest.mark.timeout(180)


def root_of(data: bytes, helia: bool = False) -> str:
    return cids.to_str(import_bytes(data, HELIA_2025_PROFILE if helia else DEFAULT_PROFILE)[-1].cid)


def test_add_and_cat_without_a_daemon(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo)
    data = random.Random(3).randbytes(600_000)
    f = tmp_path / "file.bin"
    f.write_bytes(data)
    res = zikade("add", str(f), repo=repo).ok()
    assert res.lines == [f"added {root_of(data)} file.bin"]
    assert "not announced" in res.err
    assert zikade("add", "-q", "--profile", "unixfs-v1-2025", str(f), repo=repo).ok().lines == [
        root_of(data, helia=True)
    ]
    out = tmp_path / "out.bin"
    zikade("cat", root_of(data), "-o", str(out), repo=repo).ok()
    assert out.read_bytes() == data
    assert zikade("cat", root_of(data), repo=repo).ok().raw_out == data
    key = zikade("block", "put", "-", repo=repo, stdin=b"a block").ok().out.strip()
    assert zikade("block", "get", key, repo=repo).ok().raw_out == b"a block"
    assert zikade("block", "stat", key, repo=repo).ok().lines == [f"Key: {key}", "Size: 7"]
    zikade("cat", "not-a-cid", repo=repo).one_error("CID")
    stat = json.loads(zikade("repo", "stat", "--json", repo=repo).ok().out)
    assert stat["Pins"] == 2 and stat["NumObjects"] == 4 + 1 + 1  # 3 leaves + root, helia, raw
    assert zikade("repo", "gc", repo=repo).ok().lines == ["removed 1 blocks (7 bytes)"]
    assert zikade("cat", root_of(data), repo=repo).ok().raw_out == data, "pinned: kept"


def test_add_on_one_daemon_cat_on_another(tmp_path: Path, daemons: Daemons) -> None:
    a = daemons.start("a", "--mode", "server")
    b = daemons.start("b", "--mode", "server", "--bootstrap", a.swarm_addr)
    deadline = time.monotonic() + 20
    while b.peer_id not in zikade("routing-table", "--json", repo=a.repo).out:
        assert time.monotonic() < deadline, "b never entered a's routing table"
        time.sleep(0.3)
    data = random.Random(4).randbytes(1_500_000)
    f = tmp_path / "shared.bin"
    f.write_bytes(data)
    doc = json.loads(zikade("add", "--json", str(f), repo=a.repo).ok().out)
    assert doc["Hash"] == root_of(data) and doc["Provided"] is True
    got = zikade("cat", doc["Hash"], repo=b.repo).ok().raw_out
    assert got == data
    stat = zikade("bitswap", "stat", "--json", repo=b.repo).ok()
    counters = json.loads(stat.out)
    assert counters["BlocksReceived"] == 7 and counters["DuplicateBlocks"] == 0
    text = zikade("bitswap", "stat", repo=a.repo).ok().out
    assert "blocks sent: 7" in text
    # b's fetched blocks are a cache: gc through b's daemon removes them, a keeps its pins
    total = sum(len(bl.data) for bl in import_bytes(data))
    assert zikade("repo", "gc", repo=b.repo).ok().lines == [f"removed 7 blocks ({total} bytes)"]
    assert zikade("repo", "gc", repo=a.repo).ok().lines == ["removed 0 blocks (0 bytes)"]


def test_offline_id_lists_the_bitswap_protocols() -> None:
    from zikade_cli.p2p_commands import SERVED_PROTOCOLS

    from zikade_py.bitswap.wire import PROTOCOLS

    assert set(PROTOCOLS) <= set(SERVED_PROTOCOLS)
