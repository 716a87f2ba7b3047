"""A KadServer on a real host, a small RoutingView, and a raw kad client for the handler tests.

The view is what the Node provides: a list of peers sorted by XOR distance to
the requested keyspace point. The client speaks raw messages over a real
``/ipfs/kad/1.0.0`` stream (``encode_message`` / ``read_message``) so the
tests see exactly the bytes a go, js or rust peer would.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from zikade_py.dht.handlers import KadServer, KadServerConfig
from zikade_py.dht.messages import MessageType, PeerInfo, encode_message, read_message
from zikade_py.dht.pb import dht_pb2
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.records import amino_validator
from zikade_py.dht.stores import MemoryProviderStore, MemoryValueStore
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.yamux import StreamResetError

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the server's wall clock in every test
NOW_DT = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
HOST_CONFIG = HostConfig(inbound_per_ip_burst=1000, inbound_per_ip_rate=1000)


def random_peer(n_addrs: int = 1) -> PeerInfo:
    """A peer with a fresh identity and ``n_addrs`` distinct loopback addresses."""
    pid = PeerID.from_public_key(PrivateKey.generate().public_key)
    port = 1024 + int.from_bytes(os.urandom(2), "big") % (65536 - 1024 - n_addrs)  # all valid
    return PeerInfo(pid, tuple(Multiaddr.from_tcp("127.0.0.1", port + i) for i in range(n_addrs)))


def distance(digest: bytes, peer: PeerID) -> int:
    return int.from_bytes(digest, "big") ^ int.from_bytes(
        hashlib.sha256(peer.multihash).digest(), "big"
    )


@dataclass
class ListView:
    """A RoutingView over a plain list of table peers plus an address book."""

    me: PeerInfo
    table: list[PeerInfo] = field(default_factory=list)
    book: dict[PeerID, PeerInfo] = field(default_factory=dict)
    inbound: list[tuple[PeerID, MessageType]] = field(default_factory=list)
    provided: list[tuple[bytes, PeerInfo]] = field(default_factory=list)
    asked: list[tuple[bytes, int]] = field(default_factory=list)

    def closest_peers(self, key: bytes, n: int) -> list[PeerInfo]:
        assert len(key) == 32, "the server passes the keyspace point, not the preimage"
        self.asked.append((key, n))
        with_addrs = [p for p in self.table if p.addrs]
        return sorted(with_addrs, key=lambda p: distance(key, p.peer_id))[:n]

    def expected_closest(self, preimage: bytes, n: int, exclude: set[PeerID]) -> list[PeerInfo]:
        """What a correct server returns as closer peers (table peers with addresses)."""
        digest = hashlib.sha256(preimage).digest()
        usable = [p for p in self.table if p.addrs and p.peer_id not in exclude]
        return sorted(usable, key=lambda p: distance(digest, p.peer_id))[:n]

    def self_info(self) -> PeerInfo:
        return self.me

    def peer_info(self, peer: PeerID) -> PeerInfo | None:
        if peer == self.me.peer_id:
            return self.me
        return self.book.get(peer)

    def on_inbound_request(self, peer: PeerID, msg_type: MessageType) -> None:
        self.inbound.append((peer, msg_type))

    def on_provider_added(self, key: bytes, provider: PeerInfo) -> None:
        self.provided.append((key, provider))
        self.book[provider.peer_id] = provider


@dataclass
class Served:
    """A running KadServer, its stores and view, and a connected client host."""

    host: Host
    server: KadServer
    view: ListView
    providers: MemoryProviderStore
    values: MemoryValueStore
    client: Host

    async def open(self, client: Host | None = None) -> KadClient:
        """A new kad stream from ``client`` (default: the harness client) to the server."""
        c = client or self.client
        await c.connect(self.host.peer_id, self.host.listen_addrs, timeout=5)
        stream = await c.new_stream(self.host.peer_id, [KAD_PROTOCOL], timeout=5)
        return KadClient(stream)

    @asynccontextmanager
    async def second_client(self) -> AsyncIterator[Host]:
        """Another client host with its own identity."""
        other = Host(PrivateKey.generate(), HOST_CONFIG)
        await other.start([LOOPBACK])
        try:
            yield other
        finally:
            await other.close()


class KadClient:
    """Raw kad messages over one stream, with bounded waits."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def send(self, msg: dht_pb2.Message) -> None:
        await self.stream.write(encode_message(msg))

    async def write_raw(self, data: bytes) -> None:
        await self.stream.write(data)

    async def receive(self, timeout: float = 5.0) -> dht_pb2.Message:
        async with asyncio.timeout(timeout):
            msg = await read_message(self.stream.reader)
        assert msg is not None, "server closed the stream instead of answering"
        return msg

    async def request(self, msg: dht_pb2.Message, timeout: float = 5.0) -> dht_pb2.Message:
        await self.send(msg)
        return await self.receive(timeout)

    async def expect_reset(self, timeout: float = 5.0) -> None:
        """The server reset the stream (a clean close or an answer fails the test)."""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(1000):
                    data = await self.stream.read()
                    if not data:
                        raise AssertionError("server closed the stream cleanly instead of a reset")
                    raise AssertionError(f"server answered instead of resetting: {data[:40]!r}")
        except StreamResetError:
            return

    async def close(self) -> None:
        await self.stream.close()


@asynccontextmanager
async def served(
    config: KadServerConfig | None = None, table: list[PeerInfo] | None = None
) -> AsyncIterator[Served]:
    """A kad server on 127.0.0.1 with in-memory stores, and a client host (also listening)."""
    host = Host(PrivateKey.generate(), HOST_CONFIG)
    client = Host(PrivateKey.generate(), HOST_CONFIG)
    await host.start([LOOPBACK])
    await client.start([LOOPBACK])
    view = ListView(PeerInfo(host.peer_id, tuple(host.listen_addrs)), list(table or []))
    providers, values = MemoryProviderStore(), MemoryValueStore()
    server = KadServer(
        host=host,
        view=view,
        providers=providers,
        values=values,
        validator=amino_validator(clock=lambda: NOW_DT),
        clock=lambda: NOW,
        config=config,
    )
    server.attach()
    try:
        yield Served(host, server, view, providers, values, client)
    finally:
        await client.close()
        await server.close()
        await host.close()
