"""Two and more of our nodes exchange files over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random

import pytest

from zikade_py import session
from zikade_py.bitswap import BitswapConfig, SessionConfig
from zikade_py.blocks import cid as cids
from zikade_py.unixfs import Profile, cat, import_bytes

from .conftest import Peer, StartPeer

pytestmark = pytest.mark.timeout(60)

FAST = BitswapConfig(session=SessionConfig(provider_search_delay=0.05, want_timeout=2.0))


async def add(peer: Peer, data: bytes, profile: Profile | None = None) -> bytes:
    blocks = import_bytes(data, profile) if profile else import_bytes(data)
    root = blocks[-1].cid
    await peer.bitswap.put_blocks([(b.cid, b.data) for b in blocks], pin=root)
    return root


class Source:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def fetch(self, wanted):  # type: ignore[no-untyped-def]
        async for _, data in self.peer.bitswap.get_blocks(wanted):
            yield data


async def test_fetch_a_file_from_a_provider(start_peer: StartPeer) -> None:
    server = await start_peer()
    data = random.Random(1).randbytes(300_000)
    root = await add(server, data, Profile("t", 16_384, 8))
    client = await start_peer([server], FAST)
    async with asyncio.timeout(20):
        got = b"".join([c async for c in cat(root, Source(client))])
    assert got == data
    stat = client.bitswap.stat()
    assert stat.blocks_received >= 19 and stat.duplicate_blocks == 0
    assert server.bitswap.stat().blocks_sent == stat.blocks_received
    await client.bitswap.wait_sent()
    assert client.bitswap.wants.total_wants == 0
    assert client.bitswap.held_connections == 0


async def test_two_cats_in_one_session_ask_each_block_once(start_peer: StartPeer) -> None:
    server = await start_peer()
    rng = random.Random(2)
    shared = rng.randbytes(64 * 1024)
    a = shared + rng.randbytes(32 * 1024)
    b = shared + rng.randbytes(32 * 1024)
    profile = Profile("t", 16 * 1024, 4)
    root_a, root_b = await add(server, a, profile), await add(server, b, profile)
    client = await start_peer([server], FAST)
    async with session():
        got_a = b"".join([c async for c in cat(root_a, Source(client))])
        got_b = b"".join([c async for c in cat(root_b, Source(client))])
    assert (got_a, got_b) == (a, b)
    distinct = {bl.cid for bl in import_bytes(a, profile)} | {
        bl.cid for bl in import_bytes(b, profile)
    }
    assert server.bitswap.stat().blocks_sent == len(distinct)
    assert client.bitswap.stat().duplicate_blocks == 0


async def test_cancelling_the_session_cancels_wants_everywhere(start_peer: StartPeer) -> None:
    server = await start_peer()  # has nothing: the want stays open
    client = await start_peer([server], FAST)
    missing = cids.make(b"nobody has this")
    async with session() as sess:
        task = asyncio.create_task(client.bitswap.get_block(missing))
        async with asyncio.timeout(10):
            while not server.bitswap.engine.wantlist(client.host.peer_id):
                await asyncio.sleep(0.02)
        sess.cancel()
        with pytest.raises(Exception):  # noqa: B017 (SessionCancelledError)
            await task
    async with asyncio.timeout(10):
        while server.bitswap.engine.wantlist(client.host.peer_id):
            await asyncio.sleep(0.02)
    assert client.bitswap.wants.total_wants == 0
    assert client.bitswap.sender_tasks == 0
    assert client.bitswap.held_connections == 0
    assert client.bitswap.stat().sessions == 0


async def test_cancel_reaches_every_peer_and_frees_streams(start_peer: StartPeer) -> None:
    servers = [await start_peer(), await start_peer()]  # neither has the block
    client = await start_peer(servers, FAST)
    missing = cids.make(b"still nobody has this")
    async with session() as sess:
        task = asyncio.create_task(client.bitswap.get_block(missing))
        async with asyncio.timeout(10):
            while not all(s.bitswap.engine.wantlist(client.host.peer_id) for s in servers):
                await asyncio.sleep(0.02)
        sess.cancel()
        with pytest.raises(Exception):  # noqa: B017 (SessionCancelledError)
            await task
    async with asyncio.timeout(10):
        while any(s.bitswap.engine.wantlist(client.host.peer_id) for s in servers):
            await asyncio.sleep(0.02)
        while sum(c.num_streams for c in client.host.connmgr) > 0:
            await asyncio.sleep(0.02)
    assert client.bitswap.wants.total_wants == 0 and client.bitswap.held_connections == 0
    assert client.bitswap.sender_tasks == 0 and client.bitswap.stat().sessions == 0


async def test_an_unresponsive_peer_does_not_stall_the_fetch(start_peer: StartPeer) -> None:
    from zikade_py.bitswap import wire
    from zikade_py.p2p.connection import Stream

    good = await start_peer()
    silent = await start_peer()
    data = b"only the good peer answers"
    c = cids.make(data)
    await good.bitswap.put_blocks([(c, data)])
    await silent.bitswap.close()  # speaks bitswap, never answers

    async def swallow(stream: Stream) -> None:
        while await stream.read():
            pass

    for proto in wire.PROTOCOLS:
        silent.host.set_stream_handler(proto, swallow)
    config = BitswapConfig(session=SessionConfig(provider_search_delay=0.05, want_timeout=0.5))
    client = await start_peer([silent, good], config)
    async with asyncio.timeout(20):
        assert await client.bitswap.get_block(c) == data


@pytest.mark.parametrize("only", ["/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0"])
async def test_fallback_to_older_protocols(start_peer: StartPeer, only: str) -> None:
    from zikade_py.bitswap import wire

    server = await start_peer()
    for proto in wire.PROTOCOLS:
        if proto != only:
            server.host.remove_stream_handler(proto)
    # 1.0.0 carries CIDv0 blocks only: a dag-pb file without raw leaves is what it can move
    data = random.Random(5).randbytes(50_000)
    if only.endswith("1.0.0"):
        blocks = [(cids.make(data[:100], cids.DAG_PB, version=0), data[:100])]
    else:
        blocks = [(cids.make(data), data)]
    await server.bitswap.put_blocks(blocks)
    client = await start_peer([server], FAST)
    async with asyncio.timeout(20):
        assert await client.bitswap.get_block(blocks[0][0]) == blocks[0][1]
    assert client.bitswap._protocols[server.host.peer_id] == only


async def test_a_peer_leaving_frees_everything_about_it(start_peer: StartPeer) -> None:
    server = await start_peer()
    client = await start_peer([server], FAST)
    missing = cids.make(b"the server lacks this")
    task = asyncio.create_task(client.bitswap.get_block(missing))
    async with asyncio.timeout(10):
        while not server.bitswap.engine.wantlist(client.host.peer_id):
            await asyncio.sleep(0.02)
    assert client.bitswap.held_connections == 1, "the connection is held for our wants"
    await server.bitswap.close()
    await server.host.close()
    async with asyncio.timeout(10):
        while client.bitswap.held_connections or client.bitswap.wants.peers_with_wants():
            await asyncio.sleep(0.02)
    assert server.host.peer_id not in client.bitswap.engine.peers
    assert not task.done(), "the want stays with the session, waiting for another provider"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.bitswap.wait_sent()
    assert client.bitswap.stat().sessions == 0 and client.bitswap.wants.total_wants == 0


async def test_serving_with_a_tiny_send_queue_still_completes(start_peer: StartPeer) -> None:
    server = await start_peer(config=BitswapConfig(max_queued_bytes=1))
    data = random.Random(6).randbytes(200_000)
    root = await add(server, data, Profile("t", 8_192, 8))
    client = await start_peer([server], FAST)
    async with asyncio.timeout(30):
        got = b"".join([c async for c in cat(root, Source(client))])
    assert got == data
