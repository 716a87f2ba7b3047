"""Keys announced by the reprovide sweep are found by real js-libp2p nodes (issue 12).

The sweep sends every ADD_PROVIDER for one server of a region on one stream
(``dht/reprovide_send.py``); js-libp2p's kad-dht reads several messages per
inbound stream, so each js server must store all of them. Ten js nodes (the
pinned ones of ``package.json``, seeded in a line) and one node of ours that
provides 120 CIDs at once: js ``findProviders`` must find it for every sampled
key, from nodes at both ends of the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from multiformats import CID

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.sweep import SweepConfig
from zikade_py.dht.config import NodeConfig
from zikade_py.dht.node import Node

from .jsnode import JsNode, JsNodeOptions, js_available, sha256_multihash

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

JS_NODES = 10
KEYS = 120
OP_TIMEOUT_MS = 30_000


def cid_of(mh: bytes) -> str:
    return str(CID("base32", 1, "raw", mh))


@pytest_asyncio.fixture
async def network() -> AsyncIterator[tuple[list[JsNode], Node]]:
    if not js_available():
        pytest.skip("js-libp2p unavailable")
    js = [JsNode(JsNodeOptions(monitor=False)) for _ in range(JS_NODES)]
    ours: Node | None = None
    try:
        await asyncio.gather(*(node.start() for node in js))
        await asyncio.gather(
            *(js[i].add_peer(js[i - 1].addrs[0], timeout_ms=15_000) for i in range(1, JS_NODES))
        )
        base = CoordinatorConfig()
        coordinator = replace(base, sweep=replace(SweepConfig(), burst_delay=0.1))
        ours = Node(
            NodeConfig(
                mode="server", bootstrap=[js[JS_NODES // 2].addrs[0]], republish=True,
                reprovide="sweep", coordinator=coordinator,
            )
        )  # fmt: skip
        await ours.start()
        assert (await ours.bootstrap(timeout=30)).connected
        yield js, ours
    finally:
        if ours is not None:
            await ours.close()
        await asyncio.gather(*(node.close() for node in js), return_exceptions=True)


async def test_js_finds_what_the_sweep_announced(network: tuple[list[JsNode], Node]) -> None:
    js, ours = network
    mhs = [sha256_multihash(b"sweep interop %d" % i) for i in range(KEYS)]
    assert await ours.provide_many([cid_of(mh) for mh in mhs]) == KEYS
    async with asyncio.timeout(60):
        while True:
            stat = await ours.provide_stat()
            if stat["burst_keys"] == 0 and stat["active_regions"] == 0:
                break
            await asyncio.sleep(0.1)
    wire = stat["wire"]
    assert isinstance(wire, dict)
    assert wire["batch_messages"] >= KEYS * 5, "the keys went out in batches"
    assert wire["batch_streams"] * 10 <= wire["batch_messages"]
    for i, mh in enumerate(mhs[:: KEYS // 12]):
        finder = js[0] if i % 2 == 0 else js[JS_NODES - 1]
        found = await finder.find_providers(multihash=mh, count=1, timeout_ms=OP_TIMEOUT_MS)
        assert [p["id"] for p in found] == [str(ours.peer_id)], f"key {i} not found by js"
