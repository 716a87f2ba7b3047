"""Kubo's conventions where zikade used to differ (issue 11), each through the console script.

- a command on a directory without a repo fails with "no zikade repo found …
  run 'zikade init'" instead of creating an identity;
- ``provide`` refuses to run without a daemon unless ``--ephemeral`` (and then
  says what that means); on a daemon without peers it fails before storing
  anything locally;
- ``closest-peers`` with an empty routing table is an error;
- Prometheus metrics also at ``/debug/metrics/prometheus``;
- ``ping -i`` takes Go durations; ``id`` and ``ping`` take a bare peer ID;
- ``devnet --demo`` shows a find-providers that asks the network;
- a dial that fails says why;
- scripting: ``--json`` and ``--timeout`` everywhere peers are printed, exit 1
  when nothing was found, ``-v`` only on stderr;
- start-up: ``--help`` and the daemon-backed path load neither the node, aiohttp
  nor protobuf.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ZIKADE, DaemonChild, Daemons, Net, clean_env, init_repo

pytestmark = pytest.mark.timeout(240)

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def fresh_cid(tag: str) -> str:
    """A CIDv1 (raw, sha2-256) nobody provides yet."""
    import base64

    digest = hashlib.sha256(f"{tag} {os.getpid()} {os.urandom(8).hex()}".encode()).digest()
    return "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + digest).decode().lower().rstrip(
        "="
    )


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonChild]:
    """A daemon with no peers at all (empty routing table, no connections)."""
    d = Daemons(tmp_path_factory.mktemp("lone"))
    try:
        yield d.start("lone")
    finally:
        d.stop_all()


# ------------------------------------------------------------------ no repo, no identity

NO_REPO_COMMANDS = [
    ["id"],
    ["id", PEER],
    ["ping", PEER],
    ["find-peer", PEER],
    ["find-providers", CID],
    ["provide", CID],
    ["get", f"/pk/{PEER}"],
    ["closest-peers", PEER],
    ["routing-table"],
    ["swarm", "peers"],
    ["bootstrap", "list"],
    ["bootstrap", "add", f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"],
    ["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"],
]


@pytest.mark.parametrize("args", NO_REPO_COMMANDS, ids=[" ".join(a[:2]) for a in NO_REPO_COMMANDS])
def test_commands_need_a_repo(zikade_run, tmp_path: Path, args: list[str]) -> None:
    repo = tmp_path / "nothing-here"
    res = zikade_run(*args, repo=repo)
    line = res.one_error(f"no zikade repo found in {repo}", "zikade init")
    assert res.out == ""
    assert not repo.exists(), f"{line!r} but the command created {sorted(repo.rglob('*'))}"


def test_init_then_id_keeps_one_identity(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    peer = json.loads(zikade_run("init", "--json", repo=repo).ok().out)["ID"]
    assert json.loads(zikade_run("id", repo=repo).ok().out)["ID"] == peer


def test_daemon_init_flag_makes_the_repo(daemons: Daemons, tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    child = daemons.spawn(
        ["daemon", "--init", "--no-bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0",
         "--api", "127.0.0.1:0"], repo
    )
    child.wait_line("Daemon is ready")
    assert (repo / "config").is_file()


# ------------------------------------------------------------------ provide


def test_provide_refuses_without_a_daemon(zikade_run, repo: Path) -> None:
    res = zikade_run("provide", CID, "--bootstrap", f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}", repo=repo)
    res.one_error("needs a running daemon", "address that dies with it", "--ephemeral")
    assert res.out == ""


def test_provide_ephemeral_says_what_it_means(net: Net, zikade_run, repo: Path) -> None:
    cid = fresh_cid("ephemeral")
    res = zikade_run("provide", cid, "--ephemeral", "--bootstrap", net.a.swarm_addr, repo=repo)
    res.ok()
    assert "ephemeral node" in res.err and "stops answering" in res.err
    # the record was stored in the network, pointing at the node that is gone now
    me = json.loads(zikade_run("id", repo=repo).ok().out)["ID"]
    found = zikade_run("find-providers", cid, "--timeout", "10s", repo=net.b.repo).ok()
    assert found.lines == [me]


def test_provide_on_a_daemon_without_peers_stores_nothing(lone: DaemonChild, zikade_run) -> None:
    cid = fresh_cid("lonely")
    zikade_run("provide", cid, repo=lone.repo).one_error("cannot provide, no connected peers")
    # not stored locally first: the daemon itself knows no provider of the CID
    res = zikade_run("find-providers", cid, "--timeout", "2s", repo=lone.repo)
    res.one_error(f"no providers found for {cid}")
    assert res.out == ""


# ------------------------------------------------------------------ closest-peers, metrics


def test_closest_peers_with_an_empty_table_is_an_error(lone: DaemonChild, zikade_run) -> None:
    for extra in ([], ["--json"]):
        res = zikade_run("closest-peers", PEER, *extra, repo=lone.repo)
        res.one_error("no peers in the routing table")
        assert res.out == ""


def test_prometheus_metrics_at_kubo_path(lone: DaemonChild) -> None:
    base = "http://" + ":".join(lone.api_addr.split("/")[2::2])
    bodies = {}
    for path in ("/metrics", "/debug/metrics/prometheus"):
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            bodies[path] = resp.read().decode()
    assert "# TYPE" in bodies["/debug/metrics/prometheus"]
    names = {
        line.split()[2] for line in bodies["/metrics"].splitlines() if line.startswith("# TYPE")
    }
    kubo = {
        line.split()[2]
        for line in bodies["/debug/metrics/prometheus"].splitlines()
        if line.startswith("# TYPE")
    }
    assert names == kubo


# ------------------------------------------------------------------ id and ping


def test_offline_id_matches_the_daemon(lone: DaemonChild, zikade_run, tmp_path: Path) -> None:
    """The repo-only ``id`` (no node started) says what the daemon says, minus addresses."""
    online = json.loads(zikade_run("id", repo=lone.repo).ok().out)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config").write_text((lone.repo / "config").read_text())
    offline = json.loads(zikade_run("id", repo=copy).ok().out)
    assert online["Addresses"] and offline["Addresses"] == []
    for field in ("ID", "PublicKey", "AgentVersion", "Protocols"):
        assert offline[field] == online[field], field


def test_id_and_ping_take_a_bare_peer_id_through_the_daemon(net: Net, zikade_run) -> None:
    doc = json.loads(zikade_run("id", net.b.peer_id, "--timeout", "20s", repo=net.a.repo).ok().out)
    assert doc["ID"] == net.b.peer_id and doc["Protocols"]
    res = zikade_run("ping", net.b.peer_id, "-n", "2", "-i", "100ms", repo=net.a.repo).ok()
    assert res.lines[0] == f"PING {net.b.peer_id}."
    assert len([x for x in res.lines if x.startswith("Pong received: time=")]) == 2


def test_id_and_ping_find_a_bare_peer_id_without_a_daemon(
    net: Net, zikade_run, repo: Path
) -> None:
    """An ephemeral node joins through the seed and finds b through the DHT."""
    boot = ["--bootstrap", net.a.swarm_addr, "--timeout", "30s"]
    doc = json.loads(zikade_run("id", net.b.peer_id, *boot, repo=repo).ok().out)
    assert doc["ID"] == net.b.peer_id
    assert net.b.swarm_addr in doc["Addresses"]
    res = zikade_run("ping", net.b.peer_id, "-n", "1", "--json", *boot, repo=repo).ok()
    docs = [json.loads(line) for line in res.lines]
    assert any(d.get("Success") and d.get("Time") for d in docs)


def test_ping_interval_takes_go_durations(net: Net, zikade_run) -> None:
    for interval in ("250ms", "0.1s", "0"):
        zikade_run("ping", net.b.swarm_addr, "-n", "2", "-i", interval, repo=net.a.repo).ok()
    res = zikade_run("ping", net.b.swarm_addr, "-i", "1 fortnight", repo=net.a.repo)
    assert res.status == 2
    assert "invalid duration" in res.err


def test_a_dial_that_times_out_says_so(zikade_run, repo: Path) -> None:
    """A peer that accepts TCP and then says nothing: the error names the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        target = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PEER}"
        for command in ("ping", "id"):
            res = zikade_run(command, target, "--timeout", "1s", repo=repo)
            line = res.one_error("timed out")
            assert not line.rstrip().endswith(":"), line


# ------------------------------------------------------------------ devnet --demo


def test_devnet_demo_find_providers_asks_the_network(zikade_run, tmp_path: Path) -> None:
    res = zikade_run("devnet", "--demo", "-n", "4", repo=tmp_path / "unused", timeout=120).ok()
    line = next(x for x in res.lines if x.startswith("find-providers"))
    asked = int(line.split("asked ")[1].split()[0])
    assert asked > 0, line
    assert "1 provider(s)" in line


# ------------------------------------------------------------------ scripting

PRINTS_PEERS = [
    ["find-peer"],
    ["find-providers"],
    ["closest-peers"],
    ["provide"],
    ["put"],
    ["routing-table"],
    ["swarm", "peers"],
    ["id"],
    ["ping"],
    ["bootstrap", "list"],
]


@pytest.mark.parametrize("command", PRINTS_PEERS, ids=" ".join)
def test_json_and_timeout_on_every_command_printing_peers(zikade_run, command: list[str]) -> None:
    out = zikade_run(*command, "--help").ok().out
    assert "--json" in out and "--timeout" in out


def test_nothing_found_exits_1(net: Net, zikade_run) -> None:
    cid = fresh_cid("nobody")
    for extra in ([], ["--json"]):
        res = zikade_run("find-providers", cid, "--timeout", "3s", *extra, repo=net.a.repo)
        res.one_error(f"no providers found for {cid}")
        assert all(json.loads(x)["Type"] != 4 for x in res.lines)  # progress only, no provider
    gone = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
    zikade_run("find-peer", gone, "--timeout", "3s", repo=net.a.repo).one_error()


def test_verbose_view_stays_on_stderr(net: Net, zikade_run) -> None:
    cid = fresh_cid("verbose")
    zikade_run("provide", cid, repo=net.b.repo).ok()
    res = zikade_run("find-providers", "-v", cid, "--timeout", "10s", repo=net.a.repo).ok()
    assert res.lines == [net.b.peer_id]
    assert "provider:" in res.err


# ------------------------------------------------------------------ start-up: what is imported

HEAVY = ("zikade_py.dht", "aiohttp", "google.protobuf")

_PROBE = textwrap.dedent(
    """
    import sys
    sys.argv = ["zikade", *sys.argv[1:]]
    try:
        from zikade_cli.main import main
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    finally:
        loaded = sorted(m for m in sys.modules if m.startswith(HEAVY))
        sys.stderr.write("\\nLOADED " + " ".join(loaded) + "\\n")
    sys.exit(code)
    """
).replace("HEAVY", repr(HEAVY))


def _loaded(repo: Path, *args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        env=clean_env(repo),
        timeout=60,
        check=False,
    )
    err = proc.stderr.decode()
    line = err.rsplit("LOADED", 1)[1]
    return proc.returncode, line.split(), err


def test_help_loads_no_node_aiohttp_or_protobuf(tmp_path: Path) -> None:
    status, loaded, err = _loaded(tmp_path, "--help")
    assert status == 0, err
    assert loaded == []


def test_daemon_backed_commands_load_no_node_aiohttp_or_protobuf(net: Net) -> None:
    cid = fresh_cid("imports")
    runs = [
        (["id"], 0),
        (["find-peer", net.b.peer_id], 0),
        (["provide", cid], 0),
        (["find-providers", cid, "--timeout", "5s"], 0),
        (["closest-peers", net.b.peer_id, "--json"], 0),
        (["bootstrap", "list"], 0),
    ]
    for args, expected in runs:
        status, loaded, err = _loaded(net.a.repo, *args)
        assert status == expected, (args, err)
        assert loaded == [], (args, loaded)


def test_the_guard_sees_an_in_process_node(tmp_path: Path) -> None:
    """Without a daemon the same probe does load the node: the check above can fail."""
    init_repo(tmp_path / "r")
    status, loaded, err = _loaded(
        tmp_path / "r", "find-peer", PEER, "--bootstrap", f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}"
    )
    assert status == 1, err
    assert "zikade_py.dht" in loaded


def test_console_script_is_the_namespaced_package() -> None:
    text = ZIKADE.read_text()
    assert "from zikade_cli.main import main" in text
