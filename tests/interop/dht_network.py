"""The mixed js/our DHT network that test_dht_interop.py (TCP) and test_quic_interop.py
(QUIC) each build once per module, and the small helpers both use on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from multiformats import CID

from zikade_py.dht.config import NodeConfig
from zikade_py.dht.node import Node
from zikade_py.p2p.multiaddr import Multiaddr

from .jsnode import JsNode

OP_TIMEOUT = 30.0
OP_TIMEOUT_MS = 30_000
ADMISSION_WAIT = 20.0
KAD = "/ipfs/kad/1.0.0"


@dataclass
class Network:
    """The shared network: js nodes and ours, all servers on 127.0.0.1."""

    js: list[JsNode]
    ours: list[Node]

    def js_ids(self) -> set[str]:
        """The js nodes' peer ids."""
        return {node.peer_id for node in self.js}

    def our_ids(self) -> set[str]:
        """Our nodes' peer ids."""
        return {str(node.peer_id) for node in self.ours}


@asynccontextmanager
async def running_network(
    js: Sequence[JsNode],
    *,
    js_addr: Callable[[list[str]], str],
    ours: Callable[[], list[NodeConfig]],
    started: Callable[[JsNode], None] = lambda _: None,
) -> AsyncIterator[list[Node]]:
    """Start ``js`` (``started`` checks each), seed them in a line (each knows the one
    before it, at ``js_addr`` of its addresses; js–js wiring is not under test), then
    start and bootstrap our nodes (``ours()``, called once the js nodes listen). Yields
    our nodes; everything is closed at the end."""
    our_nodes: list[Node] = []
    try:
        await asyncio.gather(*(j.start() for j in js))
        for j in js:
            started(j)
        await asyncio.gather(
            *(js[i].add_peer(js_addr(js[i - 1].addrs), timeout_ms=15_000)
              for i in range(1, len(js)))
        )
        for config in ours():
            node = Node(config)
            our_nodes.append(node)
            await node.start()
        results = await asyncio.gather(*(n.bootstrap(timeout=OP_TIMEOUT) for n in our_nodes))
        for res in results:
            assert res.connected, f"bootstrap reached no js seed: {res.failed}"
        yield our_nodes
    finally:
        for node in our_nodes:
            with contextlib.suppress(Exception):
                await node.close()
        await asyncio.gather(*(j.close() for j in js))


def bare(addr: str | Multiaddr) -> str:
    """An address without its ``/p2p/…`` tail (``/ip4/127.0.0.1/tcp/N``), to compare."""
    return str(addr).split("/p2p/")[0]


def cid_of(mh: bytes) -> str:
    """The CIDv1 (raw) string of a sha2-256 multihash, as a user would pass it."""
    return str(CID("base32", 1, "raw", mh))


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.2
) -> bool:
    """Poll ``check`` until true or ``timeout`` passes (bounded); the last result."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(interval)
            return True
    except TimeoutError:
        return False
