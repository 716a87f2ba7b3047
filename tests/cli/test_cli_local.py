"""Commands without a daemon: an ephemeral in-process node joins through a daemon used
only as a bootstrap peer (its own repo is elsewhere), runs the command and leaves.
Also the repo commands (init, bootstrap list/add/rm) on the files alone."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from multiformats import CID

pytestmark = pytest.mark.timeout(240)


def fresh_cid() -> str:
    digest = hashlib.sha256(os.urandom(32)).digest()
    return str(CID("base32", 1, "raw", ("sha2-256", digest)))


def test_init_and_bootstrap_list_add_rm_without_daemon(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    # issue 10: a plain init writes the public default list (tests/cli/test_bootstrap_list.py);
    # a private network starts empty
    res = zikade_run("init", "--no-bootstrap", repo=repo).ok()
    assert res.lines[0] == f"initializing zikade repo at {repo}"
    peer = res.lines[1].removeprefix("peer identity: ")
    config = json.loads((repo / "config").read_text())
    assert config["Identity"]["PeerID"] == peer
    assert config["Bootstrap"] == []  # asked for an empty list: nothing to dial
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == []
    assert zikade_run("bootstrap", "add", addr, repo=repo).ok().lines == [f"added {addr}"]
    assert zikade_run("bootstrap", "add", addr, repo=repo).ok().lines == []  # already there
    listed = json.loads(zikade_run("bootstrap", "list", "--json", repo=repo).ok().out)
    assert listed == {"Peers": [addr]}
    assert zikade_run("bootstrap", "rm", addr, repo=repo).ok().lines == [f"removed {addr}"]
    assert json.loads(zikade_run("bootstrap", "list", "--json", repo=repo).ok().out) == {
        "Peers": []
    }


def test_ephemeral_node_joins_through_bootstrap(daemons, zikade_run, tmp_path: Path) -> None:
    seed = daemons.start("seed")
    other = daemons.start("other", "--bootstrap", seed.swarm_addr)
    repo = tmp_path / "cli"  # no daemon here: every command runs in-process
    zikade_run("init", "--no-bootstrap", repo=repo).ok()
    boot = ["--bootstrap", seed.swarm_addr]

    found = zikade_run("find-peer", other.peer_id, *boot, repo=repo).ok()
    assert other.swarm_addr.split("/p2p/")[0] in found.lines

    closest = zikade_run("closest-peers", other.peer_id, "--json", *boot, repo=repo).ok()
    finals = [json.loads(line) for line in closest.lines]
    assert other.peer_id in {e["ID"] for e in finals if e["Type"] == 2}

    table = json.loads(zikade_run("routing-table", "--json", *boot, repo=repo).ok().out)
    assert seed.peer_id in {p["ID"] for b in table["Buckets"] for p in b["Peers"]}

    cid = fresh_cid()
    zikade_run("provide", cid, repo=other.repo).ok()
    providers = zikade_run("find-providers", cid, *boot, repo=repo).ok()
    assert providers.lines == [other.peer_id]


def test_ephemeral_node_uses_the_repo_bootstrap_list(daemons, zikade_run, tmp_path: Path) -> None:
    seed = daemons.start("seed")
    repo = tmp_path / "cli"
    zikade_run("init", "--bootstrap", seed.swarm_addr, repo=repo).ok()
    res = zikade_run("find-peer", seed.peer_id, "-v", repo=repo).ok()
    assert res.lines == [seed.swarm_addr.split("/p2p/")[0]]


def test_ping_json_without_daemon(daemons, zikade_run, tmp_path: Path) -> None:
    seed = daemons.start("seed")
    zikade_run("init", "--no-bootstrap", repo=tmp_path / "cli").ok()
    res = zikade_run("ping", seed.swarm_addr, "-n", "1", "--json", repo=tmp_path / "cli").ok()
    docs = [json.loads(line) for line in res.lines]
    assert docs[0]["Text"] == f"PING {seed.peer_id}."
    assert docs[1]["Success"] is True and docs[1]["Time"] > 0
