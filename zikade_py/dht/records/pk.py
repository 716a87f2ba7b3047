"""``/pk/<peer id>`` records: a peer's public key, stored where hashed ids can find it.

RSA and ECDSA peer ids are hashes, so their keys cannot be recovered from the id;
the ``/pk/`` namespace lets anyone fetch the key and check it against the id
(go-libp2p-record ``PublicKeyValidator``; js identical).
"""

from __future__ import annotations

from collections.abc import Sequence

from zikade_py.dht.records.validator import InvalidRecordError, split_key
from zikade_py.p2p.crypto import InvalidKeyError, PublicKey
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

PK_NAMESPACE = "pk"
"""The namespace of public-key records."""


def pk_key(peer_id: PeerID) -> bytes:
    """The record key ``/pk/<binary peer id>``."""
    return b"/pk/" + peer_id.multihash


def make_pk_record(public_key: PublicKey) -> tuple[bytes, bytes]:
    """``(key, value)`` publishing ``public_key`` under its own peer id."""
    return pk_key(PeerID.from_public_key(public_key)), public_key.to_protobuf()


class PublicKeyValidator:
    """Valid iff the value is a public key whose peer id is the key's multihash."""

    __slots__ = ()

    def validate(self, key: bytes, value: bytes) -> None:
        """Raise :class:`InvalidRecordError` unless ``value`` is the key of ``/pk/<id>``."""
        namespace, rest = split_key(key)
        if namespace != PK_NAMESPACE:
            raise InvalidRecordError(f"namespace {namespace!r} is not 'pk'")
        try:
            expected = PeerID.from_bytes(rest)
        except InvalidPeerIDError as exc:
            raise InvalidRecordError(f"/pk/ key is not a peer id: {exc}") from None
        try:
            public_key = PublicKey.from_protobuf(value)
        except InvalidKeyError as exc:
            raise InvalidRecordError(f"/pk/ value is not a public key: {exc}") from None
        if PeerID.from_public_key(public_key) != expected:
            raise InvalidRecordError("public key does not match the /pk/ key")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """Always 0: every valid value for one key is the same key."""
        if not values:
            raise InvalidRecordError("no values to select from")
        return 0
