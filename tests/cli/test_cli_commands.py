"""Every ``zikade`` command, plain and ``--json``, against two running daemons.

Daemon ``a`` is the seed, ``b`` joined through it; commands run as the installed
console script with ``--repo`` pointing at one of them, so they go over the RPC API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from multiformats import CID

from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(240)

QUERY_EVENT_KEYS = {"ID", "Type", "Responses", "Extra"}


def ndjson(out: str) -> list[dict[str, object]]:
    """Parse NDJSON output; every line must be one JSON object."""
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def query_events(out: str) -> list[dict[str, object]]:
    """NDJSON QueryEvents (Kubo's shape), checked."""
    events = ndjson(out)
    for ev in events:
        assert set(ev) == QUERY_EVENT_KEYS, ev
        assert isinstance(ev["Type"], int) and 0 <= ev["Type"] <= 7
    return events


def fresh_cid() -> str:
    data = os.urandom(32)
    return str(CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest())))


def test_id_uses_the_daemon(net, zikade_run) -> None:
    for args in (["id"], ["id", "--json"]):
        doc = json.loads(zikade_run(*args, repo=net.a.repo).ok().out)
        assert doc["ID"] == net.a.peer_id
        assert net.a.swarm_addr in doc["Addresses"]
        assert "/ipfs/kad/1.0.0" in doc["Protocols"]


def test_swarm_peers(net, zikade_run) -> None:
    res = zikade_run("swarm", "peers", repo=net.a.repo).ok()
    assert any(line.endswith(f"/p2p/{net.b.peer_id}") for line in res.lines), res.out
    assert all(line.startswith("/ip4/127.0.0.1/tcp/") for line in res.lines)
    doc = json.loads(zikade_run("swarm", "peers", "--json", repo=net.a.repo).ok().out)
    assert net.b.peer_id in {p["Peer"] for p in doc["Peers"]}


def test_swarm_resources_shows_usage_against_limits(net, zikade_run) -> None:
    """Kubo's ``ipfs swarm resources``: one row per limit of a scope, usage beside it."""
    doc = json.loads(zikade_run("swarm", "resources", "--json", repo=net.a.repo).ok().out)
    rows = {(r["Scope"], r["Name"]): r for r in doc["Scopes"]}
    assert rows[("system", "Connections")]["Used"] >= 1  # b is connected
    assert rows[("system", "Memory")]["Limit"] == 256 * 1024 * 1024
    assert rows[("peer:" + net.b.peer_id, "Connections")]["Used"] >= 1
    assert ("store:providers", "Records") in rows and ("store:values", "Bytes") in rows
    res = zikade_run("swarm", "resources", repo=net.a.repo).ok()
    assert res.lines[0].split() == ["Scope", "Limit", "Name", "Limit", "Value", "Limit", "Usage",
                                    "Amount", "Limit", "Usage", "Percent"]
    assert any(line.split()[:2] == ["system", "Memory"] for line in res.lines)


def test_find_peer_plain_prints_multiaddrs(net, zikade_run) -> None:
    res = zikade_run("find-peer", net.b.peer_id, repo=net.a.repo).ok()
    assert net.b.swarm_addr.split("/p2p/")[0] in res.lines
    assert all(line.startswith("/ip4/") for line in res.lines)


def test_find_peer_json_streams_query_events(net, zikade_run) -> None:
    res = zikade_run("find-peer", net.b.peer_id, "--json", repo=net.a.repo).ok()
    final = [e for e in query_events(res.out) if e["Type"] == 2]
    assert len(final) == 1
    responses = final[0]["Responses"]
    assert isinstance(responses, list) and responses[0]["ID"] == net.b.peer_id
    assert net.b.swarm_addr.split("/p2p/")[0] in responses[0]["Addrs"]


def test_find_peer_verbose_keeps_stdout_parseable(net, zikade_run) -> None:
    res = zikade_run("find-peer", net.a.peer_id, "-v", repo=net.b.repo).ok()
    assert res.lines == [net.a.swarm_addr.split("/p2p/")[0]]
    assert res.err.strip(), "-v narrates on stderr"


def test_provide_then_find_providers(net, zikade_run) -> None:
    cid = fresh_cid()
    res = zikade_run("provide", cid, repo=net.b.repo).ok()
    assert res.out == ""  # Kubo prints nothing on success
    found = zikade_run("find-providers", cid, repo=net.a.repo).ok()
    assert net.b.peer_id in found.lines
    limited = zikade_run("find-providers", cid, "-n", "1", "--json", repo=net.a.repo).ok()
    providers = [e for e in query_events(limited.out) if e["Type"] == 4]
    assert len(providers) == 1
    assert providers[0]["Responses"][0]["ID"] == net.b.peer_id  # type: ignore[index]


def test_provide_json_reports_the_peers_that_took_it(net, zikade_run) -> None:
    res = zikade_run("provide", fresh_cid(), "--json", repo=net.b.repo).ok()
    stored = {e["ID"] for e in query_events(res.out) if e["Type"] == 2}
    assert net.a.peer_id in stored


def test_closest_peers(net, zikade_run) -> None:
    res = zikade_run("closest-peers", net.b.peer_id, repo=net.a.repo).ok()
    assert net.b.peer_id in res.lines
    assert all(PeerID.from_string(line) for line in res.lines)
    res = zikade_run("closest-peers", fresh_cid(), "--json", repo=net.a.repo).ok()
    finals = {e["ID"] for e in query_events(res.out) if e["Type"] == 2}
    assert net.b.peer_id in finals


def test_put_then_get(net, zikade_run, tmp_path: Path) -> None:
    key = PrivateKey.generate()
    _, value = make_pk_record(key.public_key)
    name = f"/pk/{PeerID.from_public_key(key.public_key)}"
    path = tmp_path / "record"
    path.write_bytes(value)
    put = zikade_run("put", name, str(path), repo=net.b.repo).ok()
    assert net.a.peer_id in put.lines  # the peers that stored it
    got = zikade_run("get", name, repo=net.a.repo).ok()
    assert got.raw_out == value
    got_json = zikade_run("get", name, "--json", repo=net.a.repo).ok()
    values = [e for e in query_events(got_json.out) if e["Type"] == 5]
    assert base64.b64decode(str(values[-1]["Extra"])) == value


def test_put_from_stdin_json(net, zikade_run) -> None:
    key = PrivateKey.generate()
    _, value = make_pk_record(key.public_key)
    name = f"/pk/{PeerID.from_public_key(key.public_key)}"
    res = zikade_run("put", name, "-", "--json", repo=net.a.repo, stdin=value).ok()
    assert {e["ID"] for e in query_events(res.out) if e["Type"] == 5} >= {net.b.peer_id}


def test_put_invalid_record_is_one_line(net, zikade_run) -> None:
    name = f"/pk/{PeerID.from_public_key(PrivateKey.generate().public_key)}"
    res = zikade_run("put", name, "-", repo=net.a.repo, stdin=b"not a key")
    res.one_error("invalid record")


def test_get_missing_record_is_one_line(net, zikade_run) -> None:
    name = f"/pk/{PeerID.from_public_key(PrivateKey.generate().public_key)}"
    for extra in ([], ["--json"]):
        res = zikade_run("get", name, "--timeout", "10s", *extra, repo=net.a.repo)
        res.one_error("not found")


def test_find_peer_missing_is_one_line(net, zikade_run) -> None:
    missing = str(PeerID.from_public_key(PrivateKey.generate().public_key))
    res = zikade_run("find-peer", missing, "--json", "--timeout", "10s", repo=net.a.repo)
    res.one_error("not found")
    query_events(res.out)  # progress events printed before the error still parse


def test_routing_table(net, zikade_run) -> None:
    res = zikade_run("routing-table", repo=net.a.repo).ok()
    assert net.b.peer_id in res.out
    assert "Bucket" in res.out
    doc = json.loads(zikade_run("routing-table", "--json", repo=net.a.repo).ok().out)
    assert doc["ID"] == net.a.peer_id
    peers = {p["ID"] for bucket in doc["Buckets"] for p in bucket["Peers"]}
    assert net.b.peer_id in peers


def test_ping_through_the_daemon(net, zikade_run) -> None:
    res = zikade_run("ping", net.b.peer_id, "-n", "2", repo=net.a.repo).ok()
    assert res.lines[0] == f"PING {net.b.peer_id}."
    assert sum(line.startswith("Pong received: time=") for line in res.lines) == 2
    assert res.lines[-1].startswith("Average latency: ")
    docs = ndjson(
        zikade_run("ping", net.b.swarm_addr, "-n", "2", "--json", repo=net.a.repo).ok().out
    )
    assert [d["Success"] for d in docs] == [False, True, True, True]
    assert all(int(d["Time"]) > 0 for d in docs[1:3])  # type: ignore[call-overload]


def test_bootstrap_list_add_rm_through_the_daemon(net, zikade_run) -> None:
    repo = net.a.repo
    addr = net.b.swarm_addr
    assert zikade_run("bootstrap", "add", addr, repo=repo).ok().lines == [f"added {addr}"]
    assert addr in zikade_run("bootstrap", "list", repo=repo).ok().lines
    assert json.loads(zikade_run("bootstrap", "list", "--json", repo=repo).ok().out) == {
        "Peers": [addr]
    }
    removed = json.loads(zikade_run("bootstrap", "rm", addr, "--json", repo=repo).ok().out)
    assert removed == {"Peers": [addr]}
    assert zikade_run("bootstrap", "list", repo=repo).ok().lines == []
    add_json = zikade_run("bootstrap", "add", addr, "--json", repo=repo).ok()
    assert json.loads(add_json.out) == {"Peers": [addr]}
    assert zikade_run("bootstrap", "rm", "--all", repo=repo).ok().lines == [f"removed {addr}"]


def test_rpc_is_post_only_and_speaks_kubo_errors(net) -> None:
    import urllib.error
    import urllib.request

    base = "http://" + ":".join(net.a.api_addr.split("/")[2:5:2])
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(base + "/api/v0/id", timeout=10)  # GET
    assert exc.value.code == 405
    req = urllib.request.Request(base + "/api/v0/routing/findpeer?arg=bogus", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    doc = json.loads(exc.value.read())
    assert doc["Type"] == "error" and doc["Code"] == 1 and "invalid peer ID" in doc["Message"]
    req = urllib.request.Request(base + "/api/v0/version", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["Version"]
