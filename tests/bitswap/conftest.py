"""Bitswap peers on 127.0.0.1: a host, a memory blockstore and the exchange each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest

from zikade_py.bitswap import Bitswap, BitswapConfig
from zikade_py.bitswap.config import ProviderFinder
from zikade_py.blocks import MemoryBlockstore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID


@dataclass
class Peer:
    host: Host
    store: MemoryBlockstore
    bitswap: Bitswap


StartPeer = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def start_peer() -> AsyncIterator[StartPeer]:
    started: list[Peer] = []

    async def start(
        providers: Sequence[Peer] = (),
        config: BitswapConfig | None = None,
        finder: ProviderFinder | None = None,
    ) -> Peer:
        host = Host(PrivateKey.generate())
        await host.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
        store = MemoryBlockstore()

        async def static(cid: bytes) -> AsyncIterator[tuple[PeerID, Sequence[Multiaddr]]]:
            for p in providers:
                yield p.host.peer_id, p.host.listen_addrs

        bitswap = Bitswap(host, store, find_providers=finder or static, config=config)
        await bitswap.start()
        peer = Peer(host, store, bitswap)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for p in started:
            await p.bitswap.close()
            await p.host.close()
