"""The js-libp2p harness itself: real js nodes on 127.0.0.1 ping, route and store.

If these fail, every interop test built on the harness is meaningless, so they check
the js side end to end (identify, ping, kad FIND_NODE / providers / /pk/ records)
and the process hygiene of :class:`JsNode`.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiohttp import web

from .conftest import StartJsNodes
from .jsnode import (
    JsCommandError,
    JsNode,
    JsNodeExitedError,
    JsNodeOptions,
    sha256_multihash,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

NO_DHT = JsNodeOptions(dht=False)


def _transport(addr: str) -> str:
    """``/ip4/127.0.0.1/tcp/N`` of a multiaddr that may end in ``/p2p/…``."""
    return addr.split("/p2p/")[0]


async def test_two_js_nodes_ping_each_other(start_js_nodes: StartJsNodes) -> None:
    a, b = await start_js_nodes(2, "line", NO_DHT)
    assert a.peer_id != b.peer_id
    assert all(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in a.addrs + b.addrs)

    rtts = await a.ping(b.peer_id, count=3, timeout_ms=5_000)
    assert len(rtts) == 3 and all(r >= 0 for r in rtts)
    assert len(await b.ping(a.addrs[0], timeout_ms=5_000)) == 1

    conns = await a.connections(b.peer_id)
    assert len(conns) >= 1
    assert conns[0]["status"] == "open"
    assert conns[0]["encryption"] == "/noise"
    assert conns[0]["multiplexer"] == "/yamux/1.0.0"
    assert _transport(conns[0]["remoteAddr"]) == _transport(b.addrs[0])
    assert b.peer_id in {p["id"] for p in await a.peers()}

    # identify ran: a knows b's protocols and agent
    info = None
    for _ in range(50):
        info = await a.peer_info(b.peer_id)
        if info is not None and "/ipfs/ping/1.0.0" in info["protocols"]:
            break
        await asyncio.sleep(0.1)
    assert info is not None and "/ipfs/ping/1.0.0" in info["protocols"]
    assert info["agentVersion"]
    assert "/ipfs/kad/1.0.0" not in info["protocols"]  # dht=False really means no kad

    assert await a.new_stream(b.peer_id, "/ipfs/id/1.0.0") == "/ipfs/id/1.0.0"
    assert await a.new_stream(b.peer_id, ["/nope/1", "/ipfs/ping/1.0.0"]) == "/ipfs/ping/1.0.0"
    with pytest.raises(JsCommandError):
        await a.new_stream(b.peer_id, "/ipfs/kad/1.0.0", timeout_ms=5_000)

    await a.hang_up(b.peer_id)
    assert await a.connections(b.peer_id) == []


async def test_dht_line_find_peer_and_providers(start_js_nodes: StartJsNodes) -> None:
    a, b, c = await start_js_nodes(3, "line")
    assert a.peer_id in await b.routing_table() and c.peer_id in await b.routing_table()
    assert "/ipfs/kad/1.0.0" in a.protocols and await a.dht_mode() == "server"

    found = await a.find_peer(c.peer_id, timeout_ms=10_000)
    assert found is not None and found["id"] == c.peer_id
    assert _transport(c.addrs[0]) in {_transport(x) for x in found["addrs"]}
    found = await c.find_peer(a.peer_id, timeout_ms=10_000)
    assert found is not None and found["id"] == a.peer_id

    closest = await a.get_closest_peers(peer=c.peer_id, timeout_ms=10_000)
    assert c.peer_id in {p["id"] for p in closest}

    mh = sha256_multihash(os.urandom(16))
    provided = await c.provide(multihash=mh, timeout_ms=10_000)
    assert provided["sentTo"], provided
    providers = await a.find_providers(multihash=mh, count=1, timeout_ms=10_000)
    assert [p["id"] for p in providers] == [c.peer_id]
    assert _transport(c.addrs[0]) in {_transport(x) for x in providers[0]["addrs"]}


async def test_dht_pk_record_put_get(start_js_nodes: StartJsNodes) -> None:
    a, b, c = await start_js_nodes(3, "line")
    ident = await a.wait_event("peer:identify", lambda e: e["peer"] == b.peer_id, timeout=10)
    assert "/ipfs/kad/1.0.0" in ident["protocols"]
    assert c.peer_id in await a.add_peer(c.addrs[0], timeout_ms=10_000)
    kp = await a.keygen()
    assert kp.multihash.startswith(b"\x00\x24\x08\x01\x12\x20")  # identity mh of Ed25519 key
    assert kp.pk_record_key == b"/pk/" + kp.multihash

    put = await a.put_value(kp.pk_record_key, kp.public_key, timeout_ms=10_000)
    assert put["storedAt"], put
    got = await c.get_value(kp.pk_record_key, timeout_ms=10_000)
    assert got is not None and got.value == kp.public_key
    # served over the network (c may also hold a copy: it is among the closest peers)
    assert set(got.peers_with_record) - {c.peer_id}, got

    # a /pk/ record whose value is another key is invalid: nobody stores or returns it
    other = await a.keygen()
    bad = await a.put_value(other.pk_record_key, kp.public_key, timeout_ms=10_000)
    assert bad["storedAt"] == [] and bad["errors"], bad
    assert await c.get_value(other.pk_record_key, timeout_ms=10_000) is None


async def test_jsnode_process_hygiene() -> None:
    async with JsNode(NO_DHT) as node:
        with pytest.raises(JsCommandError, match="unknown command"):
            await node.call("noSuchCommand")
        with pytest.raises(JsCommandError, match="DHT is not enabled"):
            await node.routing_table()
        fixed = await node.keygen()
    # a fixed identity is honoured
    async with JsNode(JsNodeOptions(dht=False, private_key=fixed.private_key)) as again:
        assert again.peer_id == fixed.peer_id
    assert again.returncode == 0
    with pytest.raises(JsNodeExitedError):
        await again.info()

    async with JsNode() as doomed:
        # timeoutMs bounds a lookup; for findProviders a timeout is an empty answer
        assert await doomed.find_providers(multihash=sha256_multihash(b"y"), timeout_ms=300) == []
        # a js process that dies fails pending and later calls instead of hanging
        # no peers: the lookup waits for a routing table that never fills
        pending = asyncio.create_task(doomed.find_providers(multihash=sha256_multihash(b"x")))
        await asyncio.sleep(0.2)
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
        with pytest.raises(JsNodeExitedError):
            await pending
        with pytest.raises(JsNodeExitedError):
            await doomed.info()
    assert doomed.returncode == -signal.SIGKILL


async def test_routing_v1_http_client_against_a_stub(js_node: JsNode) -> None:
    """The js Delegated Routing V1 client command reaches a loopback server and parses it."""
    kp = await js_node.keygen()
    mh = sha256_multihash(b"z")
    seen: list[str] = []

    async def providers(request: web.Request) -> web.Response:
        seen.append(request.match_info["cid"])
        provider = {
            "Schema": "peer",
            "ID": kp.peer_id,
            "Addrs": ["/ip4/127.0.0.1/tcp/4001"],
            "Protocols": ["transport-bitswap"],
        }
        return web.json_response({"Providers": [provider]})

    app = web.Application()
    app.router.add_get("/routing/v1/providers/{cid}", providers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        recs = await js_node.routing_v1_records(
            f"http://127.0.0.1:{port}", "getProviders", multihash=mh, timeout_ms=5_000
        )
    finally:
        await runner.cleanup()
    assert len(seen) == 1 and seen[0].startswith("b")  # the CIDv1 (raw) of mh, base32
    assert recs == [
        {
            "schema": "peer",
            "id": kp.peer_id,
            "addrs": ["/ip4/127.0.0.1/tcp/4001"],
            "protocols": ["transport-bitswap"],
        }
    ]
    with pytest.raises(JsCommandError, match="non-loopback"):
        await js_node.routing_v1_records("http://10.0.0.1:1", "getProviders", multihash=mh)
