"""The Delegated Routing V1 server on real Nodes over loopback TCP (HTTP-ROUTING-V1.md)."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fake_kad import black_hole, directory
from multiformats import CID

from zikade_py.core.pool import PoolConfig
from zikade_py.core.query import QueryConfig
from zikade_py.dht import CoordinatorConfig, Node, NodeConfig
from zikade_py.dht.messages import Message
from zikade_py.dht.records import ipns_key, make_ipns_record
from zikade_py.http.routing_v1 import RoutingV1Config, add_routing_v1_routes
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(60)

Client = TestClient[web.Request, web.Application]
NDJSON = "application/x-ndjson"
IPNS = "application/vnd.ipfs.ipns-record"
FOUND_CACHE = "public, max-age=300, public, stale-while-revalidate=172800, stale-if-error=172800"
EMPTY_CACHE = "public, max-age=15, public, stale-while-revalidate=172800, stale-if-error=172800"


def _cid(data: bytes) -> str:
    return str(CID("base32", 1, "raw", b"\x12\x20" + hashlib.sha256(data).digest()))


def _random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


@dataclass
class Net:
    """``server`` answers HTTP; ``peers`` joined the DHT through it."""

    server: Node
    peers: list[Node]
    client: Client


async def _serve(node: Node, config: RoutingV1Config | None = None) -> Client:
    app = web.Application()
    add_routing_v1_routes(app, node, config or RoutingV1Config(timeout=10))
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with (
        Node(NodeConfig(mode="server")) as server,
        Node(NodeConfig(mode="server")) as p1,
        Node(NodeConfig(mode="server")) as p2,
    ):
        seed = f"{server.listen_addrs[0]}/p2p/{server.peer_id}"
        for peer in (p1, p2):
            await peer.bootstrap([seed], timeout=10)
        client = await _serve(server)
        try:
            yield Net(server, [p1, p2], client)
        finally:
            await client.close()


def _assert_routing_headers(resp: object, content_type: str, cache: str) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    assert headers["Content-Type"].split(";")[0] == content_type
    assert headers["Cache-Control"] == cache
    assert headers["Vary"] == "Accept"
    assert email.utils.parsedate_to_datetime(headers["Last-Modified"]).tzinfo is not None
    assert headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------------------------------------
# providers


async def test_providers_json(net: Net) -> None:
    provider = net.peers[0]
    cid = _cid(b"providers json")
    await provider.provide(cid, timeout=10)
    resp = await net.client.get(f"/routing/v1/providers/{cid}")
    assert resp.status == 200
    _assert_routing_headers(resp, "application/json", FOUND_CACHE)
    body = await resp.json()
    assert set(body) == {"Providers"}
    records = [r for r in body["Providers"] if r["ID"] == str(provider.peer_id)]
    assert len(records) == 1
    assert records[0]["Schema"] == "peer"
    assert str(provider.listen_addrs[0]) in records[0]["Addrs"]


async def test_providers_ndjson_stream(net: Net) -> None:
    provider = net.peers[1]
    cid = _cid(b"providers ndjson")
    await provider.provide(cid, timeout=10)
    resp = await net.client.get(
        f"/routing/v1/providers/{cid}", headers={"Accept": f"{NDJSON}, application/json;q=0.8"}
    )
    assert resp.status == 200
    _assert_routing_headers(resp, NDJSON, FOUND_CACHE)
    lines = (await resp.text()).splitlines()
    records = [json.loads(line) for line in lines]
    assert str(provider.peer_id) in {r["ID"] for r in records}
    assert all(r["Schema"] == "peer" for r in records)


async def test_providers_cidv0_is_accepted(net: Net) -> None:
    provider = net.peers[0]
    data = b"providers v0"
    v0 = CID("base58btc", 0, "dag-pb", b"\x12\x20" + hashlib.sha256(data).digest())
    await provider.provide(str(v0), timeout=10)
    body = await (await net.client.get(f"/routing/v1/providers/{v0}")).json()
    assert str(provider.peer_id) in {r["ID"] for r in body["Providers"]}


async def test_no_providers_is_200_empty_with_short_cache(net: Net) -> None:
    resp = await net.client.get(f"/routing/v1/providers/{_cid(b'nobody has this')}")
    assert resp.status == 200
    _assert_routing_headers(resp, "application/json", EMPTY_CACHE)
    assert await resp.json() == {"Providers": []}
    resp = await net.client.get(
        f"/routing/v1/providers/{_cid(b'nobody has this either')}", headers={"Accept": NDJSON}
    )
    assert resp.status == 200
    _assert_routing_headers(resp, NDJSON, EMPTY_CACHE)
    assert await resp.text() == ""


async def test_provider_filters(net: Net) -> None:
    provider = net.peers[0]
    cid = _cid(b"filters")
    await provider.provide(cid, timeout=10)
    url = f"/routing/v1/providers/{cid}"

    async def ids(query: str) -> set[str]:
        resp = await net.client.get(f"{url}?{query}")
        assert resp.status == 200
        return {r["ID"] for r in (await resp.json())["Providers"]}

    me = str(provider.peer_id)
    assert me in await ids("filter-addrs=tcp")
    assert me in await ids("filter-addrs=TCP,webtransport")
    assert me not in await ids("filter-addrs=webtransport")
    assert me not in await ids("filter-addrs=!ip4")
    # DHT records carry no protocols: only "unknown" lets them through
    assert me not in await ids("filter-protocols=transport-bitswap")
    assert me in await ids("filter-protocols=unknown,transport-bitswap")
    resp = await net.client.get(f"{url}?filter-protocols={'x' * 64}")
    assert resp.status == 422
    resp = await net.client.get(f"{url}?filter-addrs=tcp/ip4")
    assert resp.status == 422


@pytest.mark.parametrize("bad", ["not-a-cid", "bafyfoo", "Qm123", "z" * 600])
async def test_bad_cid_is_400(net: Net, bad: str) -> None:
    resp = await net.client.get(f"/routing/v1/providers/{bad}")
    assert resp.status == 400
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------------------------------------
# peers


@pytest.mark.parametrize("form", ["base58", "base32", "base36"])
async def test_peers_finds_a_peer_by_any_id_form(net: Net, form: str) -> None:
    target = net.peers[1]
    pid = target.peer_id
    text = pid.to_base58() if form == "base58" else pid.to_cid_string(form)
    resp = await net.client.get(f"/routing/v1/peers/{text}")
    assert resp.status == 200
    _assert_routing_headers(resp, "application/json", FOUND_CACHE)
    (record,) = (await resp.json())["Peers"]
    assert record["Schema"] == "peer"
    assert record["ID"] == str(pid)
    assert str(target.listen_addrs[0]) in record["Addrs"]


async def test_peers_ndjson(net: Net) -> None:
    target = net.peers[0]
    resp = await net.client.get(
        f"/routing/v1/peers/{target.peer_id.to_cid_string()}", headers={"Accept": NDJSON}
    )
    assert resp.status == 200
    _assert_routing_headers(resp, NDJSON, FOUND_CACHE)
    (line,) = (await resp.text()).splitlines()
    assert json.loads(line)["ID"] == str(target.peer_id)


async def test_unknown_peer_is_200_empty(net: Net) -> None:
    resp = await net.client.get(f"/routing/v1/peers/{_random_peer()}")
    assert resp.status == 200
    _assert_routing_headers(resp, "application/json", EMPTY_CACHE)
    assert await resp.json() == {"Peers": []}


@pytest.mark.parametrize(
    "bad", ["12D3KooWnotapeer", "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]
)
async def test_bad_peer_id_is_400(net: Net, bad: str) -> None:
    assert (await net.client.get(f"/routing/v1/peers/{bad}")).status == 400


# ---------------------------------------------------------------------------------------------
# closest peers


async def test_closest_peers_sorted_by_xor_distance(net: Net) -> None:
    key_cid = _cid(b"closest")
    resp = await net.client.get(f"/routing/v1/dht/closest/peers/{key_cid}")
    assert resp.status == 200
    _assert_routing_headers(resp, "application/json", FOUND_CACHE)
    peers = (await resp.json())["Peers"]
    assert {str(p.peer_id) for p in net.peers} <= {r["ID"] for r in peers}
    assert len(peers) <= 20
    target = int.from_bytes(hashlib.sha256(bytes(CID.decode(key_cid).digest)).digest())
    dists = [
        int.from_bytes(hashlib.sha256(PeerID.from_string(r["ID"]).multihash).digest()) ^ target
        for r in peers
    ]
    assert dists == sorted(dists)
    # a peer id works as the key too, NDJSON on request
    resp = await net.client.get(
        f"/routing/v1/dht/closest/peers/{net.peers[0].peer_id}", headers={"Accept": NDJSON}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(NDJSON)
    assert [json.loads(line)["Schema"] for line in (await resp.text()).splitlines()]


async def test_closest_peers_of_a_lone_node_is_404() -> None:
    async with Node(NodeConfig(mode="server")) as lone:
        client = await _serve(lone)
        try:
            resp = await client.get(f"/routing/v1/dht/closest/peers/{_cid(b'x')}")
            assert resp.status == 404
            assert resp.headers["Cache-Control"] == EMPTY_CACHE
            assert (await client.get("/routing/v1/dht/closest/peers/nope")).status == 400
        finally:
            await client.close()


# ---------------------------------------------------------------------------------------------
# IPNS


def _ipns(key: PrivateKey, seq: int = 1, ttl_s: int = 120) -> bytes:
    validity = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return make_ipns_record(key, f"/ipfs/{_cid(b'ipns')}".encode(), seq, validity, ttl_s * 10**9)


async def test_ipns_put_then_get(net: Net) -> None:
    key = PrivateKey.generate()
    name = PeerID.from_public_key(key.public_key).to_cid_string("base36")
    record = _ipns(key)
    resp = await net.client.put(
        f"/routing/v1/ipns/{name}", data=record, headers={"Content-Type": IPNS}
    )
    assert resp.status == 200, await resp.text()
    resp = await net.client.get(f"/routing/v1/ipns/{name}", headers={"Accept": IPNS})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == IPNS
    assert await resp.read() == record
    cache = resp.headers["Cache-Control"]
    assert cache.startswith("public, max-age=120, public, stale-while-revalidate=")
    sig_ttl = int(cache.split("stale-while-revalidate=")[1].split(",")[0])
    assert 3500 <= sig_ttl <= 3600
    assert f"stale-if-error={sig_ttl}" in cache
    assert resp.headers["Etag"].startswith('"') and len(resp.headers["Etag"]) > 8
    expires = email.utils.parsedate_to_datetime(resp.headers["Expires"])
    assert expires > datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=58)
    assert resp.headers["Vary"] == "Accept"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # the record went into the DHT: another node gets it
    pid = PeerID.from_public_key(key.public_key)
    assert await net.peers[0].get_value(ipns_key(pid), timeout=10) == record


async def test_ipns_errors(net: Net) -> None:
    key = PrivateKey.generate()
    name = PeerID.from_public_key(key.public_key).to_cid_string("base36")
    url = f"/routing/v1/ipns/{name}"
    record = _ipns(key)
    # GET without the record type in Accept: 406
    assert (await net.client.get(url)).status == 406
    assert (await net.client.get(url, headers={"Accept": "*/*"})).status == 406
    # PUT with another content type: 406
    resp = await net.client.put(url, data=record, headers={"Content-Type": "application/json"})
    assert resp.status == 406
    # a record signed by someone else, garbage, and a too large body: 400
    wrong = _ipns(PrivateKey.generate())
    for body in (wrong, b"garbage", b"\x00" * 20_000):
        resp = await net.client.put(url, data=body, headers={"Content-Type": IPNS})
        assert resp.status == 400, body[:10]
    resp = await net.client.put(
        "/routing/v1/ipns/nope", data=record, headers={"Content-Type": IPNS}
    )
    assert resp.status == 400
    # nothing stored: 200 with another content type means "no record"
    resp = await net.client.get(url, headers={"Accept": IPNS})
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == "text/plain"


# ---------------------------------------------------------------------------------------------
# CORS, unknown paths and methods, overload


async def test_cors_preflight(net: Net) -> None:
    resp = await net.client.options(
        f"/routing/v1/providers/{_cid(b'x')}",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    assert resp.headers["Access-Control-Allow-Headers"] == "accept"
    resp = await net.client.options(f"/routing/v1/ipns/{_random_peer().to_cid_string()}")
    assert resp.status == 204
    assert "PUT" in resp.headers["Access-Control-Allow-Methods"]


async def test_unknown_path_is_400_and_unknown_method_501(net: Net) -> None:
    for path in ("/routing/v1/", "/routing/v1/nothing", "/routing/v1/providers/"):
        resp = await net.client.get(path)
        assert resp.status == 400, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await net.client.post(f"/routing/v1/providers/{_cid(b'x')}", data=b"")
    assert resp.status == 501
    resp = await net.client.delete(f"/routing/v1/ipns/{_random_peer().to_cid_string()}")
    assert resp.status == 501


async def test_overload_is_429_with_retry_after() -> None:
    async with Node(NodeConfig(mode="server")) as node:
        client = await _serve(node, RoutingV1Config(timeout=5, max_concurrent=0))
        try:
            resp = await client.get(f"/routing/v1/providers/{_cid(b'x')}")
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
        finally:
            await client.close()


async def test_routes_leave_the_rest_of_the_app_alone() -> None:
    async with Node(NodeConfig(mode="server")) as node:
        app = web.Application()

        async def other(request: web.Request) -> web.Response:
            return web.Response(text="other")

        app.router.add_get("/other", other)
        add_routing_v1_routes(app, node)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/other")
            assert resp.status == 200
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert (await client.get("/nowhere")).status == 404


async def _until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def test_ndjson_streams_before_the_query_ends_and_a_disconnect_stops_it() -> None:
    """The first record is flushed while the walk still waits on a black hole; closing
    the connection cancels the query (the black hole sees its stream reset)."""
    # no timeout of its own may end the black hole's request within the test's waits
    pool = PoolConfig(query_timeout=120, query=QueryConfig(request_timeout=120))
    cfg = NodeConfig(
        mode="server",
        request_timeout=120, query_timeout=120, coordinator=CoordinatorConfig(pool=pool)
    )
    async with (
        black_hole() as hole,
        directory(lambda: [hole.info]) as lobby,
        Node(cfg) as server,
        Node(NodeConfig(mode="server")) as provider,
    ):
        await provider.bootstrap([f"{server.listen_addrs[0]}/p2p/{server.peer_id}"])
        cid = _cid(b"streamed while walking")
        await provider.provide(cid, timeout=10)  # the server stores the record
        server.add_peer(lobby.multiaddr)
        await _until(
            lambda: any(e.peer.peer_id == lobby.info.peer_id for e in server.routing_table()),
            "the directory in the routing table",
        )
        # a real AppRunner as the daemon uses: it does NOT cancel handlers on disconnect
        # (aiohttp's TestServer would), so the server must notice the client left itself
        app = web.Application()
        add_routing_v1_routes(app, server, RoutingV1Config(timeout=120))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/routing/v1/providers/{cid}"
        try:
            async with aiohttp.ClientSession() as session:
                resp = await session.get(url, headers={"Accept": NDJSON})
                assert resp.status == 200
                first = json.loads(await resp.content.readline())
                assert first["ID"] == str(provider.peer_id)
                await _until(
                    lambda: any(r.type == Message.GET_PROVIDERS for r in hole.requests),
                    "the walk to reach the black hole",
                )
                assert not resp.content.at_eof()  # still streaming: the walk is not over
                assert Message.GET_PROVIDERS not in hole.reset_types
                resp.close()
                await _until(
                    lambda: Message.GET_PROVIDERS in hole.reset_types,
                    "the query to be cancelled after the client left",
                )
        finally:
            await runner.cleanup()


async def test_head_answers_without_a_body(net: Net) -> None:
    resp = await net.client.head(f"/routing/v1/peers/{net.peers[0].peer_id}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.read() == b""
