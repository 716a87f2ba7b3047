"""Peers that break the kad protocol get their stream reset; nothing is stored; others are served.

Each case writes raw bytes on a real ``/ipfs/kad/1.0.0`` stream, then checks
that the server reset that stream (not a clean close, not an answer), that the
stores hold nothing from it, and that another client, whose stream was opened
before the attack, is still answered on that same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from zikade_py.dht import messages as m
from zikade_py.dht.messages import MessageType, PeerInfo
from zikade_py.dht.pb import dht_pb2, ipns_pb2
from zikade_py.dht.records import ipns_key, make_ipns_record, make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint
from zikade_py.p2p.yamux import StreamResetError

from .kad_harness import NOW, NOW_DT, KadClient, Served, random_peer, served

pytestmark = pytest.mark.timeout(60)

MH = b"\x12\x20" + hashlib.sha256(b"bad input content").digest()
OWNER = PrivateKey.from_seed(bytes(range(32)))
OWNER_ID = PeerID.from_public_key(OWNER.public_key)
PK_KEY, PK_VALUE = make_pk_record(OWNER.public_key)
OTHER_PK_KEY, OTHER_PK_VALUE = make_pk_record(PrivateKey.from_seed(bytes(32)).public_key)
IPNS_KEY = ipns_key(OWNER_ID)


def _bad_ipns_signature() -> bytes:
    good = make_ipns_record(OWNER, b"/ipfs/x", 1, NOW_DT + datetime.timedelta(hours=1))
    entry = ipns_pb2.IpnsEntry.FromString(good)
    sig = bytearray(entry.signatureV2)
    sig[10] ^= 0x01
    entry.signatureV2 = bytes(sig)
    return entry.SerializeToString()


def _put(key: bytes, record_key: bytes, value: bytes) -> bytes:
    """A PUT_VALUE built by hand (m.put_value refuses mismatched keys: local misuse)."""
    msg = dht_pb2.Message(type=dht_pb2.Message.PUT_VALUE, key=key)
    msg.record.CopyFrom(m.make_record(record_key, value))
    return m.encode_message(msg)


def _add_provider(key: bytes, *entries: PeerInfo) -> bytes:
    msg = dht_pb2.Message(
        type=dht_pb2.Message.ADD_PROVIDER, key=key, providerPeers=[e.to_pb() for e in entries]
    )
    return m.encode_message(msg)


def _sender(s: Served) -> PeerInfo:
    return PeerInfo(s.client.peer_id, tuple(s.client.listen_addrs))


@dataclass(frozen=True)
class Case:
    name: str
    payload: Callable[[Served], bytes]
    eof_after: bool = False
    """Half-close our side after the payload (a message cut short by the end of the stream)."""
    answered_first: bool = False
    """The payload starts with one valid request that is answered before the bad bytes."""


CASES = [
    Case("malformed_protobuf", lambda s: length_prefixed(b"\x08\x04\x12\x10abc")),
    Case("bad_wire_type", lambda s: length_prefixed(b"\x0f\x01\x02\x03")),
    Case("record_key_differs", lambda s: _put(PK_KEY, OTHER_PK_KEY, OTHER_PK_VALUE)),
    Case("invalid_pk_record", lambda s: _put(PK_KEY, PK_KEY, OTHER_PK_VALUE)),
    Case("invalid_ipns_signature", lambda s: _put(IPNS_KEY, IPNS_KEY, _bad_ipns_signature())),
    Case("unknown_namespace", lambda s: _put(b"/example/k", b"/example/k", b"v")),
    Case("put_without_record", lambda s: m.encode_message(dht_pb2.Message(key=PK_KEY))),
    Case("add_provider_naming_another_peer", lambda s: _add_provider(MH, random_peer())),
    Case(
        "add_provider_without_addrs",
        lambda s: _add_provider(MH, PeerInfo(s.client.peer_id, ())),
    ),
    Case("add_provider_key_too_long", lambda s: _add_provider(b"\x12" * 81, _sender(s))),
    Case("get_providers_empty_key", lambda s: length_prefixed(b"\x08\x03")),
    Case("find_node_empty_key", lambda s: length_prefixed(b"\x08\x04")),
    Case("unknown_type", lambda s: length_prefixed(b"\x08\x07\x12\x01k")),
    Case("oversize_length_prefix", lambda s: encode_uvarint(m.MAX_MESSAGE_SIZE + 1)),
    Case("varint_overflow", lambda s: b"\xff" * 11),
    Case("truncated_body", lambda s: encode_uvarint(100) + b"\x08\x04", eof_after=True),
    Case(
        "garbage_after_valid_message",
        lambda s: m.encode_message(m.ping()) + b"\xff" * 11,
        answered_first=True,
    ),
]


def assert_nothing_stored(s: Served) -> None:
    for key in (PK_KEY, OTHER_PK_KEY, IPNS_KEY, b"/example/k"):
        assert s.values.get(key, NOW) is None
    assert s.providers.get(MH, NOW) == []
    assert s.providers.get(b"\x12" * 81, NOW) == []
    assert s.view.provided == []


async def attack(s: Served, case: Case) -> None:
    kad = await s.open()
    await kad.write_raw(case.payload(s))
    if case.eof_after:
        await kad.close()
    if case.answered_first:
        # the answer may lose the race with the reset: yamux drops unread data on RST
        with contextlib.suppress(StreamResetError):
            assert m.message_type(await kad.receive()) == MessageType.PING
        assert s.server.stats.answered.get(MessageType.PING, 0) >= 1
    await kad.expect_reset()


async def still_served(s: Served, bystander: KadClient) -> None:
    """The bystander's long-lived stream and a fresh stream from the attacker both work."""
    resp = await bystander.request(m.find_node(MH))
    assert m.message_type(resp) == MessageType.FIND_NODE
    assert len(m.closer_peers(resp)) == 3
    fresh = await s.open()
    assert m.message_type(await fresh.request(m.ping())) == MessageType.PING
    await fresh.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_request_resets_the_stream_and_stores_nothing(case: Case) -> None:
    async with served(table=[random_peer() for _ in range(3)]) as s, s.second_client() as other:
        bystander = await s.open(other)
        assert m.message_type(await bystander.request(m.ping())) == MessageType.PING
        errors_before = s.server.stats.errors
        await attack(s, case)
        assert s.server.stats.errors == errors_before + 1
        assert s.server.stats.internal_errors == 0
        assert_nothing_stored(s)
        await still_served(s, bystander)


async def test_every_bad_request_on_one_server_while_another_client_is_served() -> None:
    async with served(table=[random_peer() for _ in range(3)]) as s, s.second_client() as other:
        bystander = await s.open(other)
        for case in CASES:
            await attack(s, case)
            assert_nothing_stored(s)
            await still_served(s, bystander)
        assert s.server.stats.errors == len(CASES)
        assert s.server.stats.internal_errors == 0
        # valid requests from the attacker still work afterwards, and are stored
        kad = await s.open()
        resp = await kad.request(m.put_value(PK_KEY, m.make_record(PK_KEY, PK_VALUE)))
        assert resp.record.value == PK_VALUE
        await kad.send(m.add_provider(MH, _sender(s)))
        resp = await kad.request(m.get_providers(MH))
        assert m.provider_peers(resp) == [_sender(s)]
        assert s.values.get(PK_KEY, NOW) is not None


async def test_oversize_prefix_is_refused_without_waiting_for_the_body() -> None:
    async with served(table=[random_peer() for _ in range(3)]) as s:
        kad = await s.open()
        await kad.write_raw(encode_uvarint(m.MAX_MESSAGE_SIZE + 1) + b"\x08" * 1000)
        await kad.expect_reset(timeout=5)  # the idle timeout (60 s) would be far later
        assert s.server.stats.bytes_received == 0
        assert s.server.stats.error_reasons == {"malformed": 1}
        # exactly the limit is still accepted: a 4 MiB PING is read and echoed
        big = m.ping()
        big.key = b"k" * (m.MAX_MESSAGE_SIZE - 8)
        assert big.ByteSize() <= m.MAX_MESSAGE_SIZE
        kad = await s.open()
        resp = await kad.request(big, timeout=30)
        assert resp.key == big.key


async def test_a_peer_that_never_reads_its_responses_is_reset() -> None:
    from zikade_py.dht.handlers import KadServerConfig

    config = KadServerConfig(write_timeout=0.5)
    async with served(config, table=[random_peer(30) for _ in range(3)]) as s:
        kad = await s.open()
        big = m.ping()
        big.key = b"k" * 200_000  # echoes fill the 256 KiB yamux window unless read
        for _ in range(4):
            await kad.send(big)
        async with asyncio.timeout(10):
            while s.server.stats.error_reasons.get("write_timeout", 0) == 0:
                await asyncio.sleep(0.05)
        await kad.expect_reset()
        assert s.server.stats.streams_active == 0
