"""Bad input and missing peers: every failure is ONE ``Error: …`` line and status 1.

None of these needs a daemon: arguments are checked before anything starts, and
the network failures (no daemon, no or unreachable bootstrap peers) are what is
being tested. They run on an initialised repo (the ``repo`` fixture): without
one every command stops at "no zikade repo found" (tests/cli/test_cli_conventions.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

BAD_INPUT = [
    (["find-peer", "not-a-peer-id"], "invalid peer ID"),
    (["find-peer", "QmNotBase58!!"], "invalid peer ID"),
    (["find-providers", "not-a-cid"], "invalid CID"),
    (["provide", CID, "bafy-broken"], "invalid CID"),
    (["closest-peers", "neither"], "not a peer ID or a CID"),
    (["get", "no-namespace"], "invalid key"),
    (["get", "/ipns/not-a-peer"], "is not a peer ID"),
    (["find-peer", PEER, "--bootstrap", "/ip4/1.2.3/tcp/1"], "invalid multiaddr"),
    (["find-peer", PEER, "--bootstrap", "/ip4/127.0.0.1/tcp/1"], "no /p2p/"),
    (["bootstrap", "add", "/ip4/127.0.0.1/tcp/4001/p2p/nope"], "invalid multiaddr"),
    (["bootstrap", "add", "/ip4/127.0.0.1/tcp/4001"], "no /p2p/"),
    (["ping", "/ip4/127.0.0.1/tcp/1/p2p/bad", "--json"], "invalid multiaddr"),
    (["init", "--bootstrap", "garbage"], "invalid multiaddr"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT, ids=[" ".join(a[:2]) for a, _ in BAD_INPUT]
)
def test_bad_input_is_one_line(zikade_run, repo: Path, args: list[str], message: str) -> None:
    res = zikade_run(*args, repo=repo)
    res.one_error(message)
    assert res.out == ""


@pytest.mark.parametrize(("args", "message"), [BAD_INPUT[0], BAD_INPUT[2], BAD_INPUT[7]])
def test_bad_input_with_json_is_one_line(
    zikade_run, repo: Path, args: list[str], message: str
) -> None:
    res = zikade_run(*args, "--json", repo=repo)
    res.one_error(message)
    assert res.out == ""


def test_put_with_bad_key_is_one_line(zikade_run, repo: Path) -> None:
    res = zikade_run("put", "/pk/xyz", "-", repo=repo, stdin=b"value")
    res.one_error("is not a peer ID")


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_swarm_peers_needs_the_daemon(zikade_run, repo: Path, as_json: bool) -> None:
    extra = ["--json"] if as_json else []
    res = zikade_run("swarm", "peers", *extra, repo=repo)
    res.one_error("needs a running daemon", "zikade daemon")


def test_stale_api_file_counts_as_no_daemon(zikade_run, tmp_path: Path, port: int) -> None:
    repo = tmp_path / "repo"
    zikade_run("init", "--no-bootstrap", repo=repo).ok()
    (repo / "api").write_text(f"/ip4/127.0.0.1/tcp/{port}\n")
    zikade_run("swarm", "peers", repo=repo).one_error("needs a running daemon")
    zikade_run("find-peer", PEER, repo=repo).one_error("no bootstrap peers")


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_no_bootstrap_peers(zikade_run, repo: Path, as_json: bool) -> None:
    extra = ["--json"] if as_json else []
    res = zikade_run("closest-peers", PEER, *extra, repo=repo)
    res.one_error("no bootstrap peers", "--bootstrap")


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_unreachable_bootstrap_node(zikade_run, repo: Path, port: int, as_json: bool) -> None:
    extra = ["--json"] if as_json else []
    seed = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PEER}"
    res = zikade_run("find-peer", PEER, "--bootstrap", seed, *extra, repo=repo)
    res.one_error("could not reach any bootstrap peer", seed)


def test_unreachable_bootstrap_from_the_repo_list(zikade_run, tmp_path: Path, port: int) -> None:
    repo = tmp_path / "repo"
    seed = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PEER}"
    zikade_run("init", "--bootstrap", seed, repo=repo).ok()
    zikade_run("find-providers", CID, repo=repo).one_error("could not reach any bootstrap peer")


def test_init_twice_is_an_error(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = zikade_run("init", "--json", repo=repo).ok()
    assert '"ID"' in first.out
    zikade_run("init", repo=repo).one_error("already exists")


def test_bootstrap_add_needs_an_initialised_repo(zikade_run, tmp_path: Path) -> None:
    res = zikade_run("bootstrap", "add", f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}", repo=tmp_path / "r")
    res.one_error("zikade init")


@pytest.mark.parametrize(
    "args",
    [
        ["find-peer", PEER, "--timeout", "soon"],
        ["find-providers", CID, "-n", "0"],
        ["find-peer"],
        ["no-such-command"],
    ],
    ids=["bad-duration", "zero-providers", "missing-arg", "unknown-command"],
)
def test_usage_errors_exit_2(zikade_run, tmp_path: Path, args: list[str]) -> None:
    res = zikade_run(*args, repo=tmp_path / "repo")
    assert res.status == 2, res.err
    assert "Traceback" not in res.err
