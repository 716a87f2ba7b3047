"""Helia's Delegated Routing V1 client (npm ``@helia/delegated-routing-v1-http-api-client``,
pinned in package.json) reads providers, peers, closest peers and IPNS from our server.

The client asks for ``application/x-ndjson`` first, so the streaming path is what it
exercises; a middleware records each response's content type to prove it. One
provider is a real js-libp2p node that announced itself into our DHT.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.records import ipns_key, make_ipns_record
from zikade_py.http.routing_v1 import RoutingV1Config, add_routing_v1_routes
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

from .jsnode import JsNode, JsNodeOptions, sha256_multihash

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

NDJSON = "application/x-ndjson"


@dataclass
class Served:
    """Our DHT (``server`` behind HTTP at ``url``, ``peers`` joined through it)."""

    server: Node
    peers: list[Node]
    url: str
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    """(path, Accept, response Content-Type) of every request."""

    @property
    def seed(self) -> str:
        return f"{self.server.listen_addrs[0]}/p2p/{self.server.peer_id}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with (
        Node(NodeConfig(mode="server")) as server,
        Node(NodeConfig(mode="server")) as p1,
        Node(NodeConfig(mode="server")) as p2,
    ):
        for peer in (p1, p2):
            await peer.bootstrap([f"{server.listen_addrs[0]}/p2p/{server.peer_id}"], timeout=10)
        seen: list[tuple[str, str, str]] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            seen.append((request.path, request.headers.get("Accept", ""), response.content_type))
            return response

        app = web.Application(middlewares=[record])
        add_routing_v1_routes(app, server, RoutingV1Config(timeout=10))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            yield Served(server, [p1, p2], f"http://127.0.0.1:{port}", seen)
        finally:
            await runner.cleanup()


async def test_helia_reads_providers_streamed(served: Served) -> None:
    provider = served.peers[0]
    mh = sha256_multihash(b"helia providers")
    async with JsNode(JsNodeOptions(dht=False)) as js:
        cid = await _raw_cid(mh)
        await provider.provide(cid, timeout=10)
        records = await js.routing_v1_records(
            served.url, "getProviders", multihash=mh, timeout_ms=15_000
        )
    ours = [r for r in records if r["id"] == str(provider.peer_id)]
    assert len(ours) == 1, records
    assert ours[0]["schema"] == "peer"
    assert str(provider.listen_addrs[0]) in ours[0]["addrs"]
    (_, accept, content_type) = next(s for s in served.seen if "/providers/" in s[0])
    assert NDJSON in accept
    assert content_type == NDJSON


async def test_helia_reads_a_js_provider_found_through_our_dht(served: Served) -> None:
    mh = sha256_multihash(b"announced by js")
    async with JsNode() as announcer, JsNode(JsNodeOptions(dht=False)) as client:
        await announcer.bootstrap([served.seed], timeout_ms=15_000)
        await announcer.provide(multihash=mh, timeout_ms=20_000)
        records = await client.routing_v1_records(
            served.url, "getProviders", multihash=mh, timeout_ms=15_000
        )
    assert announcer.peer_id in {r["id"] for r in records}, records
    rec = next(r for r in records if r["id"] == announcer.peer_id)
    assert rec["addrs"], "the provider's addresses came with the record"


async def test_helia_reads_peers_and_closest_peers(served: Served) -> None:
    target = served.peers[1]
    async with JsNode(JsNodeOptions(dht=False)) as js:
        peers = await js.routing_v1_records(
            served.url, "getPeers", peer=str(target.peer_id), timeout_ms=15_000
        )
        closest = await js.routing_v1_records(
            served.url, "getClosestPeers", peer=str(served.peers[0].peer_id), timeout_ms=15_000
        )
    assert [p["id"] for p in peers] == [str(target.peer_id)]
    assert str(target.listen_addrs[0]) in peers[0]["addrs"]
    assert str(target.peer_id) in {p["id"] for p in closest}
    kinds = {s[0].split("/")[3]: s[2] for s in served.seen}
    assert kinds["peers"] == NDJSON
    assert kinds["dht"] == NDJSON


async def test_helia_puts_and_gets_ipns(served: Served) -> None:
    key = PrivateKey.generate()
    name = PeerID.from_public_key(key.public_key)
    validity = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    record = make_ipns_record(key, b"/ipfs/bafkqaaa", 7, validity)
    async with JsNode(JsNodeOptions(dht=False)) as js:
        await js.routing_v1_ipns(served.url, str(name), record, timeout_ms=15_000)
        assert await served.server.get_value(ipns_key(name), timeout=5) == record
        got = await js.routing_v1_ipns(served.url, str(name), timeout_ms=15_000)
    assert got == record


async def _raw_cid(mh: bytes) -> str:
    from multiformats import CID

    return str(CID("base32", 1, "raw", mh))
