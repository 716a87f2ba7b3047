"""Kademlia wire messages (/ipfs/kad/1.0.0): framing, decoding and constructors.

Every message on a kad stream is ``uvarint(len) ‖ protobuf Message`` (WIRE.md §8.1).
This module is the single place where bytes from a peer become a ``Message``:
everything a peer can get wrong surfaces as :class:`MessageError`, so the stream
handler has exactly one exception to turn into a stream reset. Local misuse
(building a request that no peer would accept) raises plain :class:`ValueError`.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from zikade_py.dht.pb import dht_pb2, record_pb2
from zikade_py.p2p.addrscope import normalize_addrs
from zikade_py.p2p.io import (
    BufferedReader,
    IncompleteReadError,
    MessageTooLargeError,
    length_prefixed,
)
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError, decode_uvarint

Message = dht_pb2.Message
"""The protobuf ``dht.pb.Message`` (re-exported so callers need not import generated code)."""

Record = record_pb2.Record
"""The protobuf ``record.pb.Record`` carried by PUT_VALUE / GET_VALUE."""

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Largest message we read: go ``network.MessageSizeMax`` and js both accept 4 MiB."""

RUST_MAX_MESSAGE_SIZE = 16 * 1024
"""rust-libp2p-kad refuses messages over 16 KiB; responses that may go to rust should fit."""

MAX_PROVIDER_KEY_SIZE = 80
"""go rejects ADD_PROVIDER / GET_PROVIDERS keys longer than this (a multihash fits easily)."""

MAX_CLOSER_PEERS = 40
"""``closerPeers`` entries of one answer that are parsed; the rest is never looked at.
go's lookup accepts at most 2·K = 40 closer peers per answer; servers send K = 20
(21 with the target). A 4 MiB answer can hold ~87,000 entries: parsed whole it
blocked the event loop for seconds (issue 9)."""

MAX_PROVIDER_PEERS = 200
"""``providerPeers`` entries of one answer that are parsed (ours serve at most 100)."""

_CLOSER_FIELD = 8
_PROVIDER_FIELD = 9
_WALK_FACTOR = 4
"""The bounded decoder walks at most this many times the capped entries (plus a few
other fields: type, key, record, clusterLevelRaw, unknown ones) before it ignores
the rest of a message: skipping an entry costs a tag and a length, ~1 µs."""
_SPARE_FIELDS = 16


class MessageType(enum.IntEnum):
    """Kademlia RPC types; the values are the protobuf enum numbers."""

    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class ConnectionType(enum.IntEnum):
    """What the sender says about its connection to a listed peer (informational only)."""

    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


class MessageError(ValueError):
    """A peer sent a malformed, truncated or oversized kad message: reset the stream."""


def message_type(msg: dht_pb2.Message) -> MessageType:
    """The message's type as :class:`MessageType`.

    proto3 enums are open, so a decoded message can carry any number; handlers
    call this to refuse unknown types with :class:`MessageError` (go resets).
    """
    try:
        return MessageType(msg.type)
    except ValueError:
        raise MessageError(f"unknown message type {msg.type}") from None


def expects_response(kind: MessageType) -> bool:
    """Whether a request of this type is answered.

    Every RPC is answered except ADD_PROVIDER: go/js/rust never reply to it and
    go reuses the stream without reading, so neither side may wait or write
    (WIRE.md §8.3). PUT_VALUE is answered with an echo of the request.
    """
    return kind != MessageType.ADD_PROVIDER


# --------------------------------------------------------------------------------------------
# Framing


def decode_message(data: bytes) -> dht_pb2.Message:
    """Parse one message body (no length prefix).

    Missing fields take their proto3 defaults (a missing ``type`` is PUT_VALUE) and
    unknown fields are skipped, as rust and py-libp2p add some (WIRE.md §8.2).
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    msg = dht_pb2.Message()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"undecodable kad message: {exc}") from None
    return msg


def decode_bounded(
    data: bytes, max_closer: int = MAX_CLOSER_PEERS, max_providers: int = MAX_PROVIDER_PEERS
) -> dht_pb2.Message:
    """Parse one message body keeping at most ``max_closer`` closer and ``max_providers``
    provider entries, without parsing the others.

    The top-level fields are walked (tag and length only) and the entries over
    the caps skipped; once four times as many fields as the caps allow were
    walked, the rest of the message is ignored. Senders write fields in
    number order (type, key, record, then the peer lists), so an honest answer
    loses nothing; a hostile one costs O(caps), not O(entries).
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    budget = _WALK_FACTOR * (max_closer + max_providers) + _SPARE_FIELDS
    kept: list[bytes | memoryview] = []
    closer = providers = 0
    view = memoryview(data)
    pos, end = 0, len(data)
    try:
        while pos < end and budget > 0:
            budget -= 1
            start = pos
            tag, pos = decode_uvarint(data, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = decode_uvarint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 2:
                size, pos = decode_uvarint(data, pos)
                pos += size
            elif wire == 5:
                pos += 4
            else:
                raise MessageError(f"unsupported wire type {wire} in a kad message")
            if pos > end:
                raise MessageError("truncated field in a kad message")
            if field == _CLOSER_FIELD and wire == 2:
                closer += 1
                if closer > max_closer:
                    continue
            elif field == _PROVIDER_FIELD and wire == 2:
                providers += 1
                if providers > max_providers:
                    continue
            kept.append(view[start:pos])
    except VarintError as exc:
        raise MessageError(f"bad varint in a kad message: {exc}") from None
    return decode_message(b"".join(kept))


def encode_message(msg: dht_pb2.Message, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Serialize ``msg`` with its varint length prefix, ready to write on a stream.

    Raises :class:`ValueError` if the encoding exceeds ``max_size`` (local misuse:
    the receiver would refuse it).
    """
    body = msg.SerializeToString()
    if len(body) > max_size:
        raise ValueError(f"message of {len(body)} bytes exceeds {max_size}")
    return length_prefixed(body)


async def read_message(
    reader: BufferedReader,
    max_size: int = MAX_MESSAGE_SIZE,
    *,
    max_closer: int | None = None,
    max_providers: int | None = None,
) -> dht_pb2.Message | None:
    """Read one length-prefixed message; ``None`` if the stream ended cleanly before it.

    The length prefix is checked against ``max_size`` before any body byte is
    read, so a peer cannot make us buffer more than the limit. A bad varint, an
    oversized length, a stream ending inside a message or an undecodable body
    raise :class:`MessageError`. With ``max_closer`` / ``max_providers`` the
    peer lists are capped (:func:`decode_bounded`), as answers from peers are.
    """
    if await reader.at_eof():
        return None
    try:
        body = await reader.read_length_prefixed(max_size)
    except MessageTooLargeError as exc:
        raise MessageError(str(exc)) from None
    except VarintError as exc:
        raise MessageError(f"bad length prefix: {exc}") from None
    except IncompleteReadError as exc:
        raise MessageError(f"truncated message: {exc}") from None
    if max_closer is None and max_providers is None:
        return decode_message(body)
    return decode_bounded(
        body,
        MAX_CLOSER_PEERS if max_closer is None else max_closer,
        MAX_PROVIDER_PEERS if max_providers is None else max_providers,
    )


# --------------------------------------------------------------------------------------------
# Peers


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer id with the addresses known for it (``peer.AddrInfo`` in go).

    The payload of ``closerPeers`` / ``providerPeers`` entries and the result type
    of ``find_peer``.
    """

    peer_id: PeerID
    addrs: tuple[Multiaddr, ...] = ()

    def to_pb(
        self, connection: ConnectionType = ConnectionType.NOT_CONNECTED
    ) -> dht_pb2.Message.Peer:
        """The protobuf ``Message.Peer`` entry for this peer."""
        return dht_pb2.Message.Peer(
            id=self.peer_id.multihash,
            addrs=[addr.to_bytes() for addr in self.addrs],
            connection=int(connection),  # type: ignore[arg-type]
        )

    @classmethod
    def from_pb(cls, pb: dht_pb2.Message.Peer) -> PeerInfo:
        """Parse an entry from a peer; undecodable addresses are dropped one by one.

        Raises :class:`MessageError` if the peer id is not a valid multihash: the
        caller skips that entry and keeps the rest of the message.
        """
        try:
            peer_id = PeerID.from_bytes(pb.id)
        except InvalidPeerIDError as exc:
            raise MessageError(f"bad peer id in peer entry: {exc}") from None
        # py-libp2p appends /p2p/<id>: strip it (and drop addresses naming someone else)
        return cls(peer_id, tuple(normalize_addrs(decode_addrs(list(pb.addrs)), peer_id)))


def _peer_infos(entries: Iterable[dht_pb2.Message.Peer]) -> list[PeerInfo]:
    out: list[PeerInfo] = []
    for entry in entries:
        try:
            out.append(PeerInfo.from_pb(entry))
        except MessageError:
            continue
    return out


def closer_peers(msg: dht_pb2.Message) -> list[PeerInfo]:
    """The valid ``closerPeers`` entries of a response (entries with bad ids skipped)."""
    return _peer_infos(msg.closerPeers)


def provider_peers(msg: dht_pb2.Message) -> list[PeerInfo]:
    """The valid ``providerPeers`` entries of a message (entries with bad ids skipped)."""
    return _peer_infos(msg.providerPeers)


# --------------------------------------------------------------------------------------------
# Records


def format_time_received(now: float) -> str:
    """``now`` (seconds since the epoch) as go's ``time.RFC3339Nano`` in UTC.

    go trims trailing zeros of the fraction (and the dot when it is zero), e.g.
    ``2024-01-02T03:04:05.5Z``; we emit the same so stored records look alike.
    """
    total_ns = round(now * 1_000_000_000)
    seconds, nanos = divmod(total_ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        stamp += "." + f"{nanos:09d}".rstrip("0")
    return stamp + "Z"


def make_record(key: bytes, value: bytes, time_received: str = "") -> record_pb2.Record:
    """A ``Record`` for PUT_VALUE / GET_VALUE (``timeReceived`` is set by the receiver)."""
    return record_pb2.Record(key=key, value=value, timeReceived=time_received)


# --------------------------------------------------------------------------------------------
# Requests


def find_node(key: bytes) -> dht_pb2.Message:
    """FIND_NODE: the k closest servers to ``key`` (a peer id multihash or any preimage)."""
    return dht_pb2.Message(type=dht_pb2.Message.FIND_NODE, key=key)


def _check_provider_key(mh: bytes) -> None:
    if not 0 < len(mh) <= MAX_PROVIDER_KEY_SIZE:
        raise ValueError(f"provider keys are 1..{MAX_PROVIDER_KEY_SIZE} bytes, got {len(mh)}")


def get_providers(mh: bytes) -> dht_pb2.Message:
    """GET_PROVIDERS for a multihash (not a CID: providers rendezvous on the multihash)."""
    _check_provider_key(mh)
    return dht_pb2.Message(type=dht_pb2.Message.GET_PROVIDERS, key=mh)


def add_provider(mh: bytes, provider: PeerInfo) -> dht_pb2.Message:
    """ADD_PROVIDER announcing ``provider`` for multihash ``mh``; never answered.

    go and js silently drop providers without addresses, so sending one is a
    local mistake (:class:`ValueError`).
    """
    _check_provider_key(mh)
    if not provider.addrs:
        raise ValueError("an ADD_PROVIDER needs at least one provider address")
    return dht_pb2.Message(
        type=dht_pb2.Message.ADD_PROVIDER, key=mh, providerPeers=[provider.to_pb()]
    )


def get_value(key: bytes) -> dht_pb2.Message:
    """GET_VALUE for a record key such as ``/pk/<peer id>`` or ``/ipns/<peer id>``."""
    return dht_pb2.Message(type=dht_pb2.Message.GET_VALUE, key=key)


def put_value(key: bytes, record: record_pb2.Record) -> dht_pb2.Message:
    """PUT_VALUE storing ``record`` under ``key``; go rejects it unless ``record.key == key``."""
    if record.key != key:
        raise ValueError("PUT_VALUE key and record key differ")
    return dht_pb2.Message(type=dht_pb2.Message.PUT_VALUE, key=key, record=record)


def ping() -> dht_pb2.Message:
    """The deprecated kad PING: never sent by us, but still answered (go/js echo it)."""
    return dht_pb2.Message(type=dht_pb2.Message.PING)
