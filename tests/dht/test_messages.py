"""Kademlia message framing, decoding and constructors against the bytes in WIRE.md §8.2."""

from __future__ import annotations

import pytest

from zikade_py.dht import messages as m
from zikade_py.dht.pb import dht_pb2
from zikade_py.p2p.io import BufferedReader, length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint

# The Ed25519 peer id of the libp2p peer-ids.md test vector (WIRE.md §1.1).
PEER_BYTES = bytes.fromhex(
    "0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
PEER = PeerID.from_bytes(PEER_BYTES)
LOCAL_4001 = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")


class ChunkStream:
    """A ByteStream that yields fixed chunks, then EOF; counts bytes handed out."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.delivered = 0

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        self.delivered += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


def test_find_node_matches_go_bytes() -> None:
    # go also writes clusterLevelRaw=1; WIRE.md §8.2 gives `2c 08 04 12 26 <id> 50 01`.
    msg = m.find_node(PEER_BYTES)
    msg.clusterLevelRaw = 1
    assert m.encode_message(msg) == b"\x2c\x08\x04\x12\x26" + PEER_BYTES + b"\x50\x01"
    assert m.encode_message(m.find_node(PEER_BYTES)) == b"\x2a\x08\x04\x12\x26" + PEER_BYTES


def test_response_with_connected_peer_matches_wire_example() -> None:
    resp = dht_pb2.Message(type=dht_pb2.Message.FIND_NODE, clusterLevelRaw=1)
    resp.closerPeers.append(m.PeerInfo(PEER, (LOCAL_4001,)).to_pb(m.ConnectionType.CONNECTED))
    expected = (
        bytes.fromhex("08044234") + b"\x0a\x26" + PEER_BYTES
        + bytes.fromhex("1208047f000001060fa1") + bytes.fromhex("18015001")
    )
    assert resp.SerializeToString() == expected
    decoded = m.decode_message(expected)
    assert m.closer_peers(decoded) == [m.PeerInfo(PEER, (LOCAL_4001,))]
    assert decoded.closerPeers[0].connection == m.ConnectionType.CONNECTED


def test_missing_type_is_put_value_and_unknown_fields_are_skipped() -> None:
    # key=b"k", record{key, value, rust publisher=666, rust ttl=777}, py senderRecord=11
    record = b"\x0a\x01k\x12\x01v" + b"\xd2\x29\x02ab" + b"\xc8\x30\x05"
    data = b"\x12\x01k" + b"\x1a" + bytes([len(record)]) + record + b"\x5a\x03xyz"
    msg = m.decode_message(data)
    assert m.message_type(msg) is m.MessageType.PUT_VALUE
    assert msg.key == b"k"
    assert (msg.record.key, msg.record.value) == (b"k", b"v")


def test_unknown_message_type_is_a_message_error() -> None:
    msg = m.decode_message(b"\x08\x09")
    assert msg.type == 9
    with pytest.raises(m.MessageError):
        m.message_type(msg)


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # truncated varint
        b"\x12\x05ab",  # length beyond the end
        b"\x0f",  # wire type 7 does not exist
        b"\x1a\x03\x0a\x05a",  # truncated nested record
        b"\x1a\x03\x2a\x01\xff",  # timeReceived (string) that is not UTF-8
        b"\xa3\x01" * 10_000,  # unknown groups nested 10,000 deep
    ],
)
def test_malformed_bodies_raise_message_error(data: bytes) -> None:
    with pytest.raises(m.MessageError):
        m.decode_message(data)


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(m.MessageError):
        m.decode_message(b"\x00" * (m.MAX_MESSAGE_SIZE + 1))


async def test_read_message_sequence_then_clean_eof() -> None:
    first, second = m.find_node(b"a"), m.get_value(b"/pk/x")
    stream = ChunkStream([m.encode_message(first) + m.encode_message(second)[:3],
                          m.encode_message(second)[3:]])
    reader = BufferedReader(stream)
    assert await m.read_message(reader) == first
    assert await m.read_message(reader) == second
    assert await m.read_message(reader) is None


async def test_read_message_checks_length_before_reading_body() -> None:
    prefix = encode_uvarint(1000)
    stream = ChunkStream([prefix, b"\x00" * 1000])
    reader = BufferedReader(stream)
    with pytest.raises(m.MessageError, match="exceeds"):
        await m.read_message(reader, max_size=999)
    assert stream.delivered == len(prefix)  # the body was never pulled from the stream


async def test_read_message_default_limit_is_4_mib() -> None:
    reader = BufferedReader(ChunkStream([encode_uvarint(m.MAX_MESSAGE_SIZE + 1)]))
    with pytest.raises(m.MessageError):
        await m.read_message(reader)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"\x05\x08\x04"],  # stream ends inside the body
        [b"\x80"],  # stream ends inside the length prefix
        [b"\x80\x00"],  # non-minimal varint
        [length_prefixed(b"\x12\x05ab")],  # undecodable body
    ],
)
async def test_read_message_errors(chunks: list[bytes]) -> None:
    with pytest.raises(m.MessageError):
        await m.read_message(BufferedReader(ChunkStream(chunks)))


def test_encode_refuses_oversized_messages() -> None:
    with pytest.raises(ValueError):
        m.encode_message(m.get_value(b"x" * 100), max_size=50)


def test_peer_info_drops_bad_addresses_one_by_one() -> None:
    pb = dht_pb2.Message.Peer(
        id=PEER_BYTES, addrs=[b"\xff\xff", LOCAL_4001.to_bytes(), b"", b"\x04\x7f"]
    )
    assert m.PeerInfo.from_pb(pb) == m.PeerInfo(PEER, (LOCAL_4001,))


def test_bad_peer_ids_skip_only_that_entry() -> None:
    msg = dht_pb2.Message(type=dht_pb2.Message.FIND_NODE)
    msg.closerPeers.add(id=b"\x12\x20short")
    msg.closerPeers.add(id=PEER_BYTES, addrs=[LOCAL_4001.to_bytes()])
    msg.closerPeers.add(id=b"")
    msg.providerPeers.add(id=b"garbage")
    assert m.closer_peers(msg) == [m.PeerInfo(PEER, (LOCAL_4001,))]
    assert m.provider_peers(msg) == []
    with pytest.raises(m.MessageError):
        m.PeerInfo.from_pb(msg.closerPeers[0])


def test_constructors() -> None:
    mh = bytes.fromhex("1220") + bytes(32)
    assert m.message_type(m.get_providers(mh)) is m.MessageType.GET_PROVIDERS
    assert m.get_providers(mh).key == mh
    add = m.add_provider(mh, m.PeerInfo(PEER, (LOCAL_4001,)))
    assert add.type == m.MessageType.ADD_PROVIDER and add.key == mh
    assert m.provider_peers(add) == [m.PeerInfo(PEER, (LOCAL_4001,))]
    record = m.make_record(b"/pk/a", b"v")
    put = m.put_value(b"/pk/a", record)
    assert put.type == m.MessageType.PUT_VALUE and put.record.value == b"v"
    # PUT_VALUE is type 0, which proto3 leaves off the wire (as go and js do).
    assert m.encode_message(put)[1:3] == b"\x12\x05"
    assert m.message_type(m.get_value(b"/pk/a")) is m.MessageType.GET_VALUE
    assert m.message_type(m.ping()) is m.MessageType.PING
    assert m.message_type(m.find_node(b"x")) is m.MessageType.FIND_NODE


def test_constructor_misuse_is_value_error() -> None:
    with pytest.raises(ValueError):
        m.add_provider(b"\x12\x20" + bytes(32), m.PeerInfo(PEER, ()))
    with pytest.raises(ValueError):
        m.get_providers(b"")
    with pytest.raises(ValueError):
        m.get_providers(b"x" * (m.MAX_PROVIDER_KEY_SIZE + 1))
    with pytest.raises(ValueError):
        m.put_value(b"/pk/a", m.make_record(b"/pk/b", b"v"))


def test_expects_response() -> None:
    replied = {t for t in m.MessageType if m.expects_response(t)}
    assert replied == set(m.MessageType) - {m.MessageType.ADD_PROVIDER}


@pytest.mark.parametrize(
    ("now", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1_700_000_000.5, "2023-11-14T22:13:20.5Z"),
        (1_700_000_000.123456, "2023-11-14T22:13:20.123456Z"),
    ],
)
def test_format_time_received_is_rfc3339nano(now: float, text: str) -> None:
    assert m.format_time_received(now) == text
