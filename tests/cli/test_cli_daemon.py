"""``zikade daemon`` as a process: the API file, signals, restarts, refusals; and
``zikade devnet`` (the README quick start is ``zikade devnet --demo``)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)


def test_api_file_lifecycle_and_sigterm(daemons, zikade_run) -> None:
    d = daemons.start("a")
    assert (d.repo / "api").read_text().strip() == d.api_addr
    assert d.api_addr.startswith("/ip4/127.0.0.1/tcp/")
    assert d.swarm_addr.endswith(f"/p2p/{d.peer_id}")
    assert json.loads(zikade_run("id", repo=d.repo).ok().out)["Addresses"] == [d.swarm_addr]
    assert d.stop(signal.SIGTERM) == 0
    assert not (d.repo / "api").exists()


def test_sigint_stops_cleanly(daemons) -> None:
    d = daemons.start("a")
    assert d.stop(signal.SIGINT) == 0
    assert not (d.repo / "api").exists()
    assert not any("Traceback" in line for line in d.err_lines)


def test_second_daemon_on_the_same_repo_is_refused(daemons, zikade_run) -> None:
    d = daemons.start("a")
    res = zikade_run(
        "daemon",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
        repo=d.repo,
        timeout=60,
    )
    res.one_error("another daemon is running")
    assert (d.repo / "api").exists()  # the running daemon's file is left alone


def test_api_port_in_use_is_one_line(daemons, zikade_run, tmp_path: Path) -> None:
    d = daemons.start("a")
    port = d.api_addr.rsplit("/", 1)[-1]
    zikade_run("init", "--no-bootstrap", repo=tmp_path / "b").ok()
    res = zikade_run(
        "daemon",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        f"127.0.0.1:{port}",
        repo=tmp_path / "b",
        timeout=60,
    )
    res.one_error("cannot serve the RPC API")
    assert not (tmp_path / "b" / "api").exists()


def test_daemon_reports_an_unreachable_bootstrap_peer_and_keeps_running(
    daemons, zikade_run, port: int
) -> None:
    seed = f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
    d = daemons.start("a", "--bootstrap", seed)
    deadline = time.monotonic() + 30
    while not any("unreachable" in line for line in d.err_lines):
        assert time.monotonic() < deadline, d.describe()
        time.sleep(0.2)
    zikade_run("id", repo=d.repo).ok()


def test_restart_keeps_identity_table_and_records(daemons, zikade_run) -> None:
    a = daemons.start("a")
    b = daemons.start("b", "--bootstrap", a.swarm_addr)
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    zikade_run("provide", cid, repo=b.repo).ok()
    assert a.stop() == 0
    again = daemons.start("a")  # no --bootstrap: it rejoins through the peers it saved
    assert again.peer_id == a.peer_id
    assert zikade_run("find-providers", cid, "-n", "1", repo=again.repo).ok().lines == [b.peer_id]
    deadline = time.monotonic() + 30
    while True:
        table = json.loads(zikade_run("routing-table", "--json", repo=again.repo).ok().out)
        if b.peer_id in {p["ID"] for bucket in table["Buckets"] for p in bucket["Peers"]}:
            break
        assert time.monotonic() < deadline, table
        time.sleep(0.5)


def test_devnet_demo(zikade_run, tmp_path: Path) -> None:
    res = zikade_run("devnet", "--demo", "-n", "5", timeout=120).ok()
    for word in ("find-peer", "provide", "find-providers", "demo ok"):
        assert word in res.out, res.out
    assert "1 provider(s)" in res.out


def test_devnet_serves_other_commands_until_ctrl_c(daemons, zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "devnet"
    child = daemons.spawn(["devnet", "-n", "4", "--repo", str(repo)], repo)
    nodes = []
    for i in range(4):
        line = child.wait_line(f"  node {i}")
        nodes.append(line.split()[2])
    child.wait_line("devnet is ready")
    assert any(f"export ZIKADE_PATH={repo}" in line for line in child.lines)
    last = nodes[-1]
    res = zikade_run("find-peer", last.rsplit("/p2p/", 1)[1], repo=repo).ok()
    assert res.lines == [last.rsplit("/p2p/", 1)[0]]
    assert child.stop(signal.SIGINT) == 0
    assert not (repo / "api").exists()
