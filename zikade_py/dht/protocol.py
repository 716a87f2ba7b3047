"""The Kademlia protocol id, the errors of the inbound side and small response helpers.

Kept apart from :mod:`.handlers` so the outbound side (router, Node) can import
the protocol id and the size rules without pulling in the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from zikade_py.dht.messages import RUST_MAX_MESSAGE_SIZE, PeerInfo
from zikade_py.dht.pb import dht_pb2
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint

KAD_PROTOCOL: Final = "/ipfs/kad/1.0.0"
"""The Amino DHT protocol id (go ``amino.ProtocolID``, js and rust default; WIRE.md §8.1)."""

RESPONSE_SIZE_TARGET: Final = RUST_MAX_MESSAGE_SIZE
"""Responses are trimmed to fit this (rust-libp2p-kad refuses messages over 16 KiB)."""


class KadRequestError(Exception):
    """A remote protocol error: the peer's request breaks the kad protocol; reset its stream.

    ``reason`` is a short, fixed label (used as a metric attribute and stats key)
    so the cardinality of what peers can make us record stays bounded.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class MalformedRequestError(KadRequestError):
    """Undecodable, oversized or truncated message, unknown type, or missing/mismatched fields."""


class RejectedRecordError(KadRequestError):
    """PUT_VALUE with an invalid record, an unknown namespace, or one worse than ours."""


class RejectedProviderError(KadRequestError):
    """ADD_PROVIDER without a single usable entry (own peer id, at least one address)."""


class KadServerStateError(RuntimeError):
    """Local misuse of the server (attaching a closed server, attaching twice)."""


def kad_digest(key: bytes) -> bytes:
    """The keyspace point of a wire key: SHA-256 of the preimage (WIRE.md §8.4)."""
    return hashlib.sha256(key).digest()


def distinct_peers(
    peers: Iterable[PeerInfo], exclude: Iterable[PeerID] = (), *, require_addrs: bool = True
) -> list[PeerInfo]:
    """``peers`` in order without duplicates, without ``exclude``, and (by default) without
    peers that have no address: a closer peer nobody can dial only wastes the requester's
    time, so go and js drop them too."""
    seen = set(exclude)
    out: list[PeerInfo] = []
    for info in peers:
        if info.peer_id in seen or (require_addrs and not info.addrs):
            continue
        seen.add(info.peer_id)
        out.append(info)
    return out


def _field_size(body: int) -> int:
    """Bytes a length-delimited field of ``body`` bytes takes (one-byte tag)."""
    return 1 + len(encode_uvarint(body)) + body


def fit_peers(
    base: dht_pb2.Message,
    first: Sequence[PeerInfo],
    second: Sequence[PeerInfo] = (),
    *,
    limit: int = RESPONSE_SIZE_TARGET,
) -> tuple[list[dht_pb2.Message.Peer], list[dht_pb2.Message.Peer]]:
    """Peer entries of ``first`` then ``second`` that keep ``base`` plus them within ``limit``.

    Entries are taken in order and the first one that does not fit ends each list
    (later ones are farther or less useful). Used for ``providerPeers`` (first) and
    ``closerPeers`` (second) so a response stays readable by rust. If ``base`` alone
    exceeds the limit (a large record) nothing is added and the caller sends it anyway.
    """
    budget = limit - len(encode_uvarint(limit)) - base.ByteSize()
    picked: tuple[list[dht_pb2.Message.Peer], list[dht_pb2.Message.Peer]] = ([], [])
    for out, infos in zip(picked, (first, second), strict=True):
        for info in infos:
            entry = info.to_pb()
            size = _field_size(entry.ByteSize())
            if size > budget:
                break
            budget -= size
            out.append(entry)
    return picked
