"""The live resource view (``swarm/resources``): rcmgr scopes and store usage, used/limit."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.dht import Node, NodeConfig
from zikade_py.http.ops import COMMANDS, Context, Request
from zikade_py.http.resources import resource_view
from zikade_py.p2p.connection import Stream

pytestmark = pytest.mark.timeout(30)

HOLD = "/test/hold/1.0.0"


def loopback_config() -> NodeConfig:
    return NodeConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], republish=False)


async def test_resource_view_shows_a_held_stream_and_stored_records() -> None:
    parked = asyncio.Event()

    async def hold(stream: Stream) -> None:
        await parked.wait()

    async with Node(loopback_config()) as a, Node(loopback_config()) as b:
        a.host.set_stream_handler(HOLD, hold)
        conn = await b.host.connect(a.peer_id, a.multiaddrs)
        stream = await conn.open_stream([HOLD])
        await a.values.put_async(b"/test/key", b"value", 0.0)
        async with asyncio.timeout(10):
            while a.host.resources.stats()["inbound_streams"] < 1:
                await asyncio.sleep(0.02)
        rows = {(r["Scope"], r["Name"]): (r["Used"], r["Limit"]) for r in
                resource_view(a)["Scopes"]}  # fmt: skip
        peer = f"peer:{b.peer_id}"
        used, limit = rows[(peer, "InboundStreams")]
        assert used >= 1 and limit == 256  # ours, and identify's while it runs
        assert rows[(f"protocol:{HOLD}", "InboundStreams")][0] == 1
        assert rows[("system", "Connections")][0] >= 1
        assert rows[("store:values", "Records")] == (1, a.config.store_limits.max_values)
        theirs = {(r["Scope"], r["Name"]): r["Used"] for r in resource_view(b)["Scopes"]}
        assert theirs[(f"peer:{a.peer_id}", "OutboundStreams")] >= 1
        # the RPC command answers the same document
        docs = [d async for d in COMMANDS["swarm/resources"].handler(Context(node=a), Request())]
        assert {(r["Scope"], r["Name"]) for r in docs[0]["Scopes"]} == set(rows)
        parked.set()
        await stream.reset()
