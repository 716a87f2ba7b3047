"""The default bootstrap list and its commands (issue 10, acceptance 2), and the dial guard
as the ``zikade`` subprocesses see it.

``zikade init`` writes Kubo's default public peers, and ``zikade bootstrap list`` shows
them; nothing here dials them (the suite's dial guard would refuse it and fail the
test: tests/conftest.py). ``init --bootstrap`` replaces the list, ``--no-bootstrap``
empties it, ``bootstrap reset`` / ``add --default`` bring the public peers back,
``rm --all`` removes every one, and an empty list is said out loud.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zikade_py.dht.config import NodeConfig
from zikade_py.p2p.bootstrap_peers import DEFAULT_BOOTSTRAP_PEERS

pytestmark = pytest.mark.timeout(240)

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
SEED = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"
KUBO_FIRST = "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"


def test_the_default_list_is_kubos() -> None:
    assert DEFAULT_BOOTSTRAP_PEERS[0] == KUBO_FIRST
    assert len(DEFAULT_BOOTSTRAP_PEERS) == 7
    assert sum(a.startswith("/dnsaddr/") for a in DEFAULT_BOOTSTRAP_PEERS) == 5
    assert NodeConfig().bootstrap == list(DEFAULT_BOOTSTRAP_PEERS)  # the in-process default
    assert NodeConfig().bootstrap is not NodeConfig().bootstrap  # never one shared list


def test_init_writes_the_default_list(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    res = zikade_run("init", repo=repo).ok()
    assert "bootstrap list is empty" not in res.err
    config = json.loads((repo / "config").read_text())
    assert config["Bootstrap"] == list(DEFAULT_BOOTSTRAP_PEERS)
    assert config["DNS"] == {"Resolvers": {}}
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == list(DEFAULT_BOOTSTRAP_PEERS)


def test_init_bootstrap_replaces_the_default(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    other = SEED.replace("4001", "4002")
    zikade_run("init", "--bootstrap", SEED, "--bootstrap", other, repo=repo).ok()
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == [SEED, other]
    dnsaddr = tmp_path / "dnsaddr"  # a bare /dnsaddr/<name>: every peer its records name
    zikade_run("init", "--bootstrap", "/dnsaddr/bootstrap.example", repo=dnsaddr).ok()
    assert zikade_run("bootstrap", "list", repo=dnsaddr).ok().lines == [
        "/dnsaddr/bootstrap.example"
    ]


def test_init_refuses_an_address_without_a_peer(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    res = zikade_run("init", "--bootstrap", "/ip4/127.0.0.1/tcp/4001", repo=repo)
    res.one_error("has no /p2p/<peer-id> component")
    assert not (repo / "config").exists()
    res = zikade_run("init", "--bootstrap", SEED, "--no-bootstrap", repo=repo)
    res.one_error("exclude each other")


def test_empty_list_is_said_and_reset_brings_the_default_back(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    res = zikade_run("init", "--no-bootstrap", repo=repo).ok()
    assert "bootstrap list is empty" in res.err
    listed = zikade_run("bootstrap", "list", repo=repo).ok()
    assert listed.lines == [] and "bootstrap list is empty" in listed.err
    assert json.loads(zikade_run("bootstrap", "list", "--json", repo=repo).ok().out) == {
        "Peers": []
    }

    assert zikade_run("bootstrap", "reset", repo=repo).ok().lines == list(DEFAULT_BOOTSTRAP_PEERS)
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == list(DEFAULT_BOOTSTRAP_PEERS)
    removed = zikade_run("bootstrap", "rm", "--all", repo=repo).ok().lines
    assert removed == [f"removed {a}" for a in DEFAULT_BOOTSTRAP_PEERS]
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == []
    added = zikade_run("bootstrap", "add", "--default", repo=repo).ok().lines
    assert added == [f"added {a}" for a in DEFAULT_BOOTSTRAP_PEERS]
    zikade_run("bootstrap", "add", repo=repo).one_error("--default")


def test_a_command_on_an_empty_list_says_so(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    zikade_run("init", "--no-bootstrap", repo=repo).ok()
    res = zikade_run("find-peer", PEER, repo=repo)
    res.one_error("no bootstrap peers", "zikade bootstrap reset")


def test_a_daemon_with_an_empty_list_says_so(daemons) -> None:
    d = daemons.start("d")  # tests/cli/conftest.py: init --no-bootstrap
    deadline = time.monotonic() + 30
    while not any("bootstrap: " in line for line in d.err_lines):
        assert time.monotonic() < deadline, d.describe()
        time.sleep(0.1)
    report = next(line for line in d.err_lines if "bootstrap: " in line)
    assert report.startswith("bootstrap: no bootstrap peers configured"), report


@pytest.mark.dial_refusal
def test_a_zikade_subprocess_runs_under_the_guard(zikade_run, tmp_path: Path) -> None:
    """The suite's ``ZIKADE_DIAL_ALLOW`` reaches the commands it spawns: a public seed is
    refused in one line and never dialed."""
    repo = tmp_path / "repo"
    zikade_run("init", "--no-bootstrap", repo=repo).ok()
    seed = f"/ip4/192.0.2.1/tcp/4001/p2p/{PEER}"  # RFC 5737: never routed anyway
    res = zikade_run("find-peer", PEER, "--bootstrap", seed, "--timeout", "10s", repo=repo)
    res.one_error(
        "could not reach any bootstrap peer",
        "refusing to dial 192.0.2.1:4001: outside ZIKADE_DIAL_ALLOW=127.0.0.0/8",
    )
