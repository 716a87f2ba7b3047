"""Hostile bitswap input over real streams: forged and unsolicited blocks are dropped
and nothing bad is stored; garbage and oversize messages reset the stream; the node
keeps serving everyone else."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.bitswap import wire
from zikade_py.bitswap.wire import Message, WantEntry
from zikade_py.blocks import cid as cids
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.varint import encode_uvarint

from .conftest import Peer, StartPeer

pytestmark = pytest.mark.timeout(60)


async def send_raw(sender: Peer, to: Peer, payload: bytes) -> None:
    await sender.host.connect(to.host.peer_id, to.host.listen_addrs)
    stream = await sender.host.new_stream(to.host.peer_id, [wire.PROTOCOL_120], timeout=5)
    try:
        await stream.write(payload)
        await stream.close()
    except Exception:
        pass


async def still_serves(victim: Peer, start_peer: StartPeer) -> None:
    data = b"served to the good peer"
    c = cids.make(data)
    await victim.bitswap.put_blocks([(c, data)])
    good = await start_peer([victim])
    async with asyncio.timeout(10):
        assert await good.bitswap.get_block(c) == data


async def test_forged_and_unsolicited_blocks_are_dropped(start_peer: StartPeer) -> None:
    victim = await start_peer()
    attacker = await start_peer()
    wanted = cids.make(b"the real bytes")
    sub = victim.bitswap.notifier.subscribe()
    await sub.subscribe([wanted])
    forged = wire.encode(Message(blocks=((wanted, b"forged bytes"),)))
    unsolicited = wire.encode(Message(blocks=((cids.make(b"spam"), b"spam"),)))
    await send_raw(attacker, victim, length_prefixed(forged) + length_prefixed(unsolicited))
    async with asyncio.timeout(10):
        while victim.bitswap.stat().unwanted_blocks < 2:
            await asyncio.sleep(0.02)
    assert victim.store.stat().blocks == 0, "nothing stored"
    assert not sub.future(wanted).done()
    sub.remove()
    await still_serves(victim, start_peer)


@pytest.mark.parametrize(
    "payload",
    [
        length_prefixed(b"\xff\xff\xff\xff"),  # garbage protobuf
        encode_uvarint(wire.MAX_MESSAGE_SIZE + 1) + b"\0" * 1024,  # announced oversize
        length_prefixed(wire.encode(Message(wants=tuple(
            WantEntry(cids.make(i.to_bytes(4, "big")))
            for i in range(wire.MAX_WANTLIST_ENTRIES + 1)
        )))),  # want list over the limit
    ],
    ids=["garbage", "oversize", "too-many-wants"],
)
async def test_bad_messages_reset_the_stream(start_peer: StartPeer, payload: bytes) -> None:
    victim = await start_peer()
    attacker = await start_peer()
    await send_raw(attacker, victim, payload)
    await asyncio.sleep(0.2)
    assert not victim.bitswap.engine.wantlist(attacker.host.peer_id)
    await still_serves(victim, start_peer)
