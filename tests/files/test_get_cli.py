"""``zikade get``: a file for a CID or /ipfs/<cid> (Kubo's ``ipfs get``), a value record for
/<namespace>/ keys (as before, also as ``zikade routing get``), one line for anything else;
the daemon's ``/api/v0/get`` (a tar archive, Kubo's shape) and ``--timeout`` on a fetch."""

from __future__ import annotations

import io
import json
import random
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli.conftest import Daemons, init_repo, zikade
from tests.cli.conftest import daemons as daemons
from zikade_py.blocks import cid as cids
from zikade_py.unixfs import import_bytes

pytestmark = pytest.mark.timeout(180)

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
MISSING = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_get_saves_a_file_without_a_daemon(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo)
    data = random.Random(5).randbytes(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    cid = zikade("add", "-q", str(tmp_path / "in.bin"), repo=repo).ok().out.strip()
    out = tmp_path / "out.bin"
    res = zikade("get", cid, "-o", str(out), repo=repo).ok()
    assert out.read_bytes() == data
    assert res.out == "" and res.err == ""
    res = zikade("get", cid, "-o", str(out), "--progress", repo=repo).ok()
    assert f"Saving file(s) to {out}" in res.err and out.read_bytes() == data
    folder = tmp_path / "dir"
    folder.mkdir()
    zikade("get", f"/ipfs/{cid}", "-o", str(folder), "--no-progress", repo=repo).ok()
    assert (folder / cid).read_bytes() == data, "a directory as -o: saved as <dir>/<cid>"
    assert sorted(p.name for p in folder.iterdir()) == [cid], "no .part left behind"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "neither-a-cid"], "invalid key"),
        (["get", "/ipfs/not-a-cid"], "invalid CID"),
        (["get", f"/ipfs/{MISSING}/inner/path"], "not supported"),
        (["get", f"/pk/{PEER}", "-o", "x"], "-o and --progress are for files"),
        (["routing", "get", "no-namespace"], "invalid key"),
        (["routing", "get", "/ipns/not-a-peer"], "is not a peer ID"),
    ],
    ids=["bare", "ipfs-bad-cid", "subpath", "record-with-o", "routing-bare", "routing-ipns"],
)
def test_get_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = tmp_path / "repo"
    init_repo(repo)
    res = zikade(*args, repo=repo)
    res.one_error(message)
    assert res.out == "" and not (tmp_path / "x").exists()


def test_routing_group_lists_get_and_put() -> None:
    text = zikade("routing", "--help").ok().out
    assert "get" in text and "put" in text
    assert "routing" in zikade("--help").ok().out


def _api_post(api_addr: str, path: str) -> bytes:
    port = api_addr.rstrip("/").split("/")[-1]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v0/{path}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as reply:
        body: bytes = reply.read()
        return body


def test_get_through_daemons_tar_rpc_and_timeout(tmp_path: Path, daemons: Daemons) -> None:
    a = daemons.start("a", "--mode", "server")
    b = daemons.start("b", "--mode", "server", "--bootstrap", a.swarm_addr)
    deadline = time.monotonic() + 20
    while b.peer_id not in zikade("routing-table", "--json", repo=a.repo).out:
        assert time.monotonic() < deadline, "b never entered a's routing table"
        time.sleep(0.3)
    data = random.Random(6).randbytes(700_000)
    (tmp_path / "f.bin").write_bytes(data)
    cid = zikade("add", "-q", str(tmp_path / "f.bin"), repo=a.repo).ok().out.strip()
    assert cid == cids.to_str(import_bytes(data)[-1].cid)
    # add provided through the sweep: the root and its 3 leaves are the daemon's keys
    provide_stat = json.loads(zikade("provide", "stat", "--json", repo=a.repo).ok().out)
    assert provide_stat["strategy"] == "sweep" and provide_stat["keys"] == 4
    out = tmp_path / "got.bin"
    doc = json.loads(zikade("get", f"/ipfs/{cid}", "-o", str(out), "--json", repo=b.repo).ok().out)
    assert out.read_bytes() == data and doc == {"Hash": cid, "Path": str(out), "Size": len(data)}
    # Kubo's /api/v0/get: a tar archive with the file named after the CID
    body = _api_post(b.api_addr, f"get?arg={cid}")
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        member = archive.getmember(cid)
        extracted = archive.extractfile(member)
        assert member.size == len(data) and extracted is not None and extracted.read() == data
    # nobody has this block: --timeout ends it with one line, and no file is left
    late = tmp_path / "never.bin"
    res = zikade("get", MISSING, "-o", str(late), "--timeout", "2s", repo=b.repo)
    res.one_error("timed out")
    assert not late.exists() and not late.with_name("never.bin.part").exists()
