"""Identify: the message codec (WIRE.md §6), decoder fuzzing, and the exchange between hosts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import HostEvent, PeerIdentified, ProtocolsUpdated
from zikade_py.p2p.host import Host
from zikade_py.p2p.identify import (
    AGENT_VERSION,
    IDENTIFY_PROTOCOL_ID,
    IDENTIFY_PUSH_PROTOCOL_ID,
    MAX_SEND_SIZE,
    PROTOCOL_VERSION,
    IdentifyError,
    decode_identify,
    encode_identify,
    read_identify,
)
from zikade_py.p2p.io import BufferedReader, length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.pb import identify_pb2
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.ping import PING_PROTOCOL_ID

pytestmark = pytest.mark.timeout(60)

KEY = PrivateKey.generate()
PEER = PeerID.from_public_key(KEY.public_key)
ADDR = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")


class BytesStream:
    """A ByteStream that yields fixed chunks, then EOF."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self, max_bytes: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def write(self, data: bytes) -> None:
        raise AssertionError("read-only")

    async def close(self) -> None:
        pass


def test_encode_has_every_field_and_strips_p2p() -> None:
    data = encode_identify(
        public_key=KEY.public_key,
        listen_addrs=[ADDR.with_peer_id(PEER)],
        protocols=["/ipfs/kad/1.0.0", PING_PROTOCOL_ID],
        observed_addr=Multiaddr.parse("/ip4/10.0.0.1/tcp/5555"),
    )
    msg = identify_pb2.Identify.FromString(data)
    assert msg.protocolVersion == PROTOCOL_VERSION == "ipfs/0.1.0"
    assert msg.agentVersion == AGENT_VERSION and AGENT_VERSION.startswith("zikade-py/")
    assert msg.publicKey == KEY.public_key.to_protobuf()
    assert list(msg.listenAddrs) == [ADDR.to_bytes()]
    assert list(msg.protocols) == ["/ipfs/kad/1.0.0", PING_PROTOCOL_ID]
    assert Multiaddr.from_bytes(msg.observedAddr) == Multiaddr.parse("/ip4/10.0.0.1/tcp/5555")
    info = decode_identify(data)
    assert info.public_key == KEY.public_key
    assert info.listen_addrs == (ADDR,)


def test_encoded_size_stays_under_rust_limit() -> None:
    addrs = [Multiaddr.parse(f"/ip4/10.0.{i // 256}.{i % 256}/tcp/4001") for i in range(1000)]
    data = encode_identify(
        public_key=KEY.public_key, listen_addrs=addrs, protocols=["/a"], observed_addr=None
    )
    assert len(data) <= MAX_SEND_SIZE
    assert len(decode_identify(data).listen_addrs) > 100


def test_decode_drops_bad_addresses_one_by_one() -> None:
    msg = identify_pb2.Identify(
        listenAddrs=[b"\xff\xff\xff", ADDR.to_bytes(), b"", b"\x04\x01"], protocols=["/x", ""]
    )
    info = decode_identify(msg.SerializeToString())
    assert info.listen_addrs == (ADDR,)
    assert info.protocols == ("/x",)
    assert info.public_key is None


def test_decode_rejects_garbage_and_bad_keys() -> None:
    with pytest.raises(IdentifyError):
        decode_identify(b"\x0a\xff\xff\xff\xff\x0f")
    with pytest.raises(IdentifyError):
        decode_identify(identify_pb2.Identify(publicKey=b"\x08\x01\x12\x01x").SerializeToString())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decoder_fuzz_never_crashes(data: bytes) -> None:
    with suppress(IdentifyError):
        decode_identify(data)


async def test_read_merges_messages_and_checks_the_key() -> None:
    first = identify_pb2.Identify(protocols=["/a"], publicKey=KEY.public_key.to_protobuf())
    second = identify_pb2.Identify(protocols=["/b"], listenAddrs=[ADDR.to_bytes()])
    wire = length_prefixed(first.SerializeToString()) + length_prefixed(second.SerializeToString())
    info = await read_identify(BufferedReader(BytesStream(wire[:5], wire[5:])), PEER)
    assert info.protocols == ("/a", "/b")
    assert info.listen_addrs == (ADDR,)
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    with pytest.raises(IdentifyError, match="another peer"):
        await read_identify(BufferedReader(BytesStream(wire)), other)
    with pytest.raises(IdentifyError):  # oversize message, refused before reading it
        await read_identify(BufferedReader(BytesStream(b"\x80\x80\x04")), PEER)
    with pytest.raises(IdentifyError):  # truncated
        await read_identify(BufferedReader(BytesStream(wire[:-3])), PEER)
    with pytest.raises(IdentifyError):  # eleven messages
        await read_identify(BufferedReader(BytesStream(length_prefixed(b"") * 11)), PEER)


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Host, Host]]:
    a, b = Host(PrivateKey.generate()), Host(PrivateKey.generate())
    await a.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    await b.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def wait_for(queue: NonBlockingQueue[HostEvent], kind: type) -> object:
    async with asyncio.timeout(5):
        while not isinstance(event := await queue.get(), kind):
            pass
    return event


async def test_identify_runs_both_ways_on_connect() -> None:
    async with pair() as (a, b):

        async def noop(stream: Stream) -> None:
            await stream.close()

        b.set_stream_handler("/ipfs/kad/1.0.0", noop)
        events_a, events_b = a.events(), b.events()
        await a.connect(b.peer_id, b.listen_addrs)
        ev_a = await wait_for(events_a, PeerIdentified)
        ev_b = await wait_for(events_b, PeerIdentified)
        assert isinstance(ev_a, PeerIdentified) and isinstance(ev_b, PeerIdentified)
        assert ev_a.peer == b.peer_id and ev_b.peer == a.peer_id
        assert "/ipfs/kad/1.0.0" in ev_a.protocols
        assert set(ev_b.protocols) >= {IDENTIFY_PROTOCOL_ID, IDENTIFY_PUSH_PROTOCOL_ID}
        assert ev_a.listen_addrs == tuple(b.listen_addrs)
        assert ev_a.agent == AGENT_VERSION
        assert a.peerstore.supports(b.peer_id, "/ipfs/kad/1.0.0")
        assert a.peerstore.agent(b.peer_id) == AGENT_VERSION
        assert a.peerstore.public_key(b.peer_id) == b.public_key
        assert set(b.listen_addrs) <= set(a.peerstore.addrs(b.peer_id))
        # b learnt a's listen address although a dialed from an ephemeral port
        assert a.listen_addrs[0] in b.peerstore.addrs(a.peer_id)
        info = await a.identify_peer(b.peer_id)
        assert info.observed_addr is not None and info.observed_addr.is_loopback()


async def test_push_tells_peers_about_new_protocols() -> None:
    async with pair() as (a, b):
        events_b = b.events()
        await a.connect(b.peer_id, b.listen_addrs)
        await wait_for(events_b, PeerIdentified)
        await a.identify_peer(b.peer_id)

        async def noop(stream: Stream) -> None:
            await stream.close()

        a.set_stream_handler("/new/1.0.0", noop)
        ev = await wait_for(events_b, ProtocolsUpdated)
        assert isinstance(ev, ProtocolsUpdated) and "/new/1.0.0" in ev.protocols
        assert b.peerstore.supports(a.peer_id, "/new/1.0.0")
        a.remove_stream_handler("/new/1.0.0")
        ev = await wait_for(events_b, ProtocolsUpdated)
        assert isinstance(ev, ProtocolsUpdated) and "/new/1.0.0" not in ev.protocols
        assert not b.peerstore.supports(a.peer_id, "/new/1.0.0")
        assert b.peerstore.supports(a.peer_id, PING_PROTOCOL_ID)  # a complete list each time


async def test_bad_push_is_ignored_and_reset() -> None:
    async with pair() as (a, b):
        conn = await a.connect(b.peer_id, b.listen_addrs)
        async with asyncio.timeout(5):  # the dialer is done before the listener is
            while b.connmgr.get(a.peer_id) is None:
                await asyncio.sleep(0.01)
        await b.identify_peer(a.peer_id)
        before = b.peerstore.protocols(a.peer_id)
        stream = await conn.open_stream([IDENTIFY_PUSH_PROTOCOL_ID])
        await stream.write(b"\x05garbage-and-more")
        await stream.close()
        async with asyncio.timeout(5):
            try:
                while await stream.read():
                    pass
            except Exception:
                pass
        assert b.peerstore.protocols(a.peer_id) == before
        assert len(await a.ping(b.peer_id)) == 1  # the connection is fine
