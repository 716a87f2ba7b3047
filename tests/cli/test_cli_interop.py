"""Our daemon as the bootstrap node of real js-libp2p peers (issue 5, acceptance 2).

Several js-libp2p nodes (pinned npm packages, tests/interop/jsnode.py) know only
our daemon's address. Through it alone they find each other's addresses and
provider records, and our CLI (riding on the daemon) sees the js provider too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os

import pytest
from interop.jsnode import JS_UNAVAILABLE_REASON, JsNode, js_available, sha256_multihash
from multiformats import CID

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not js_available(), reason=JS_UNAVAILABLE_REASON),
]

JS_PEERS = 3


async def test_js_nodes_bootstrap_from_our_daemon(daemons, zikade_run) -> None:
    daemon = daemons.start("boot")
    async with contextlib.AsyncExitStack() as stack:
        js = [JsNode() for _ in range(JS_PEERS)]
        for node in js:
            stack.push_async_callback(node.close)
        await asyncio.gather(*(node.start() for node in js))
        for node in js:  # one after the other: each later one is told of the earlier ones
            await node.bootstrap([daemon.swarm_addr], timeout_ms=20_000)

        # our daemon keeps every js server in its table (bounded poll)
        js_ids = {node.peer_id for node in js}
        for _ in range(60):
            res = await asyncio.to_thread(zikade_run, "routing-table", "--json", repo=daemon.repo)
            table = json.loads(res.ok().out)
            if js_ids <= {p["ID"] for b in table["Buckets"] for p in b["Peers"]}:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"js peers missing from our table: {table}")

        # the first js node never met the last one: the lookup goes through our daemon
        first, middle, last = js[0], js[1], js[-1]
        found = await first.find_peer(last.peer_id, timeout_ms=20_000)
        assert found is not None and found["id"] == last.peer_id
        assert set(found["addrs"]) & {a.split("/p2p/")[0] for a in last.addrs}

        data = os.urandom(32)
        mh = sha256_multihash(data)
        cid = str(CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest())))
        provided = await middle.provide(multihash=mh, timeout_ms=20_000)
        assert daemon.peer_id in provided["sentTo"]
        providers = await last.find_providers(multihash=mh, count=1, timeout_ms=20_000)
        assert middle.peer_id in {p["id"] for p in providers}

        ours = await asyncio.to_thread(zikade_run, "find-providers", cid, repo=daemon.repo)
        assert middle.peer_id in ours.ok().lines
        peer = await asyncio.to_thread(zikade_run, "find-peer", first.peer_id, repo=daemon.repo)
        assert peer.ok().lines
