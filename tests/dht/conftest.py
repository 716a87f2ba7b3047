"""Fixtures and helpers that start networks of our own nodes on 127.0.0.1.

Reuse them from any DHT test::

    from .conftest import loopback_config, start_network   # inside tests/dht

    async def test_something() -> None:
        async with start_network(5) as net:      # 1 bootstrap node + 5 nodes, all servers
            info = await net.nodes[0].find_peer(net.nodes[4].peer_id)

* :func:`loopback_config` — a :class:`NodeConfig` for loopback tests: listen on
  ``127.0.0.1:0``, a host whose per-IP inbound rate limit allows dozens of peers
  from the same address, no republisher, no explore walks. Keyword arguments
  override fields.
* :func:`start_network` — an async context manager: starts a bootstrap node and
  ``n`` nodes configured with it as their bootstrap peer, bootstraps them one after
  the other, waits (bounded) until every node has at least ``min_table``
  routing-table entries, and closes everything on exit. Yields :class:`Network`.
* :func:`wait_for` — poll a condition every 20 ms, bounded in time.
* :class:`FakeKadPeer`, :func:`black_hole`, :func:`directory` — hand-written kad
  servers on a bare host (a peer that never answers; a peer that names a fixed
  list of peers in every answer); :func:`stream_count` — yamux streams a node has open.
* the ``spans`` fixture — an SDK ``InMemorySpanExporter`` that every zikade span
  goes to during the test (``telemetry.tracer`` is patched, nothing global is set).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py import telemetry
from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.messages import Message, MessageError, PeerInfo, encode_message, read_message
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.yamux import StreamResetError

LOOPBACK_HOST = HostConfig(
    inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000, max_pending_handshakes=512
)
"""Every peer of a loopback test dials from 127.0.0.1: lift the per-IP rate limit."""


LOOPBACK_COORDINATOR = CoordinatorConfig(routing=RoutingConfig(enable_explore=False))
"""No bucket-refresh walks: after a bootstrap every node would start ~15 of them at once,
and thirty nodes sharing one event loop spend seconds of CPU on that storm. Tables
fill from the bootstrap self-lookups and the include queue instead."""


def loopback_config(**overrides: Any) -> NodeConfig:
    """A NodeConfig for tests on 127.0.0.1 (fields can be overridden by keyword)."""
    base = NodeConfig(
        mode="server",
        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        bootstrap=[],  # never the public default list (the dial guard would refuse it)
        host=LOOPBACK_HOST,
        republish=False,
        coordinator=LOOPBACK_COORDINATOR,
    )
    return replace(base, **overrides)


@dataclass
class Network:
    """A running loopback network: ``bootstrap`` plus ``nodes`` (all bootstrapped)."""

    bootstrap: Node
    nodes: list[Node] = field(default_factory=list)

    @property
    def all(self) -> list[Node]:
        """The bootstrap node first, then the others."""
        return [self.bootstrap, *self.nodes]


async def wait_for(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


@asynccontextmanager
async def start_network(
    n: int,
    *,
    config: Callable[[int], NodeConfig] | None = None,
    min_table: int = 1,
    settle_timeout: float = 20.0,
    wave: int = 5,
) -> AsyncIterator[Network]:
    """Start a bootstrap node and ``n`` nodes joined through it (see the module docstring).

    ``config(i)`` gives node ``i``'s configuration (``i = -1`` for the bootstrap
    node); its ``bootstrap`` field is replaced with the bootstrap node's address.
    """
    make = config or (lambda _i: loopback_config())
    boot = Node(make(-1))
    await boot.start()
    net = Network(boot)
    try:
        addr = [str(a) for a in boot.multiaddrs]
        net.nodes = [Node(replace(make(i), bootstrap=addr)) for i in range(n)]
        await asyncio.gather(*(node.start() for node in net.nodes))
        # In small waves: each self-lookup then finds the nodes that joined before
        # (all at once, everyone would only find the bootstrap node's empty table).
        for first in range(0, n, wave):
            results = await asyncio.gather(
                *(node.bootstrap() for node in net.nodes[first : first + wave])
            )
            for result in results:
                assert result.connected, f"bootstrap failed: {result}"
        await wait_for(
            lambda: all(len(node.routing_table()) >= min_table for node in net.all),
            timeout=settle_timeout,
        )
        yield net
    finally:
        await asyncio.gather(*(node.close() for node in net.nodes), return_exceptions=True)
        await boot.close()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Collect every span zikade creates during the test in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("zikade_py"))
    yield exporter
    provider.shutdown()


# -- hand-written kad peers ---------------------------------------------------------------------

Responder = Callable[[PeerID, Message], Awaitable[Message | None]]
"""Answers one request of a :class:`FakeKadPeer` (``None``: write nothing)."""


class FakeKadPeer:
    """A bare host that speaks ``/ipfs/kad/1.0.0`` through a test-provided ``responder``.

    It advertises kad in identify (the handler is set before it listens), so our
    nodes treat it as a DHT server. :func:`black_hole` reads requests and never
    answers; :func:`directory` answers every request with a fixed peer list.
    """

    def __init__(self, responder: Responder) -> None:
        self.host = Host(PrivateKey.generate(), LOOPBACK_HOST)
        self.responder = responder
        self.requests: list[Message] = []
        self.resets = 0
        self.host.set_stream_handler(KAD_PROTOCOL, self._handle)

    async def _handle(self, stream: Stream) -> None:
        try:
            while (request := await read_message(stream.reader)) is not None:
                self.requests.append(request)
                response = await self.responder(stream.remote_peer, request)
                if response is not None:
                    await stream.write(encode_message(response))
        except (StreamResetError, MessageError):
            self.resets += 1

    @property
    def peer_id(self) -> PeerID:
        return self.host.peer_id

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.host.peer_id, tuple(self.host.listen_addrs))

    @property
    def multiaddr(self) -> str:
        return str(self.host.listen_addrs[0].with_peer_id(self.host.peer_id))

    async def start(self) -> FakeKadPeer:
        await self.host.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
        return self

    async def close(self) -> None:
        await self.host.close()


def black_hole() -> FakeKadPeer:
    """Accepts kad streams, reads the requests, never answers (keeps reading, so a
    reset from the other side is seen and counted in ``resets``)."""

    async def never(_peer: PeerID, _request: Message) -> Message | None:
        return None

    return FakeKadPeer(never)


def directory(peers: Callable[[], list[PeerInfo]]) -> FakeKadPeer:
    """Answers every request (echoing its type and key) with ``peers()`` as closer peers."""

    async def answer(_peer: PeerID, request: Message) -> Message | None:
        if request.type == Message.ADD_PROVIDER:
            return None
        response = Message(type=request.type, key=request.key)
        response.closerPeers.extend(p.to_pb() for p in peers())
        return response

    return FakeKadPeer(answer)


def stream_count(node: Node) -> int:
    """Yamux streams open on all of ``node``'s connections."""
    return sum(conn.num_streams for conn in node.host.connmgr.connections())
