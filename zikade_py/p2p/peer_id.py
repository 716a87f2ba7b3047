"""Peer ids: the multihash of a peer's public key (WIRE.md §1.2–1.3).

On the wire (kad ``Peer.id``, ``/p2p/`` multiaddr components, Noise checks) a
peer id is always the binary multihash; strings are for people and config.
Small keys (Ed25519, secp256k1) are inlined with the identity multihash, so
the key can be recovered from the id; larger ones (RSA, ECDSA) are SHA-256
hashed and the key must come from the handshake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from multiformats import multibase

from zikade_py.p2p.base58 import b58decode, b58encode
from zikade_py.p2p.crypto import InvalidKeyError, PublicKey
from zikade_py.p2p.varint import VarintError, decode_uvarint, encode_uvarint

IDENTITY_CODE: Final = 0x00
"""Multihash code of the identity "hash" (the key bytes themselves)."""

SHA2_256_CODE: Final = 0x12
"""Multihash code of SHA2-256."""

LIBP2P_KEY_CODEC: Final = 0x72
"""Multicodec of a CIDv1 that names a peer (``libp2p-key``)."""

MAX_INLINE_KEY_LENGTH: Final = 42
"""Encoded keys up to this length are inlined (go ``maxInlineKeyLength``; rust rejects more)."""

MAX_PEER_ID_STRING: Final = 256
"""Longer strings cannot be a peer id; refusing them first bounds base58 decoding cost."""

_CID_BASES: Final = frozenset("bBkKzf")
"""Multibase prefixes accepted for CID peer ids: base32, base36, base58btc, base16."""


class InvalidPeerIDError(ValueError):
    """Bytes or text that are not a valid peer id."""


def _check_multihash(data: bytes) -> None:
    """Raise InvalidPeerIDError unless ``data`` is an identity(≤42) or sha2-256 multihash."""
    try:
        code, pos = decode_uvarint(data)
        length, pos = decode_uvarint(data, pos)
    except VarintError as exc:
        raise InvalidPeerIDError(f"malformed multihash: {exc}") from None
    if len(data) - pos != length:
        raise InvalidPeerIDError(
            f"multihash announces {length} digest bytes but carries {len(data) - pos}"
        )
    if code == IDENTITY_CODE:
        if length > MAX_INLINE_KEY_LENGTH:
            raise InvalidPeerIDError(f"identity peer id of {length} bytes is too long")
    elif code == SHA2_256_CODE:
        if length != 32:
            raise InvalidPeerIDError(f"sha2-256 peer id with a {length}-byte digest")
    else:
        raise InvalidPeerIDError(f"peer id uses unsupported multihash code {code:#x}")


@dataclass(frozen=True, slots=True)
class PeerID:
    """A peer's identity as its binary multihash, which is what goes on the wire.

    Construct it through the class methods, which validate; equality and
    hashing are by ``multihash`` bytes.
    """

    multihash: bytes
    _text: str = field(default="", init=False, repr=False, compare=False)

    @classmethod
    def from_public_key(cls, key: PublicKey) -> PeerID:
        """The id of ``key``: identity multihash if its protobuf is ≤ 42 bytes, else sha2-256."""
        encoded = key.to_protobuf()
        if len(encoded) <= MAX_INLINE_KEY_LENGTH:
            return cls(bytes((IDENTITY_CODE,)) + encode_uvarint(len(encoded)) + encoded)
        return cls(bytes((SHA2_256_CODE, 32)) + hashlib.sha256(encoded).digest())

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerID:
        """Validate a binary multihash received from a peer (InvalidPeerIDError if bad)."""
        data = bytes(data)
        _check_multihash(data)
        return cls(data)

    @classmethod
    def from_string(cls, text: str) -> PeerID:
        """Parse base58btc (``Qm…``, ``12D3KooW…``, ``16Uiu2…``) or a CIDv1 ``libp2p-key``."""
        if not isinstance(text, str) or not text or len(text) > MAX_PEER_ID_STRING:
            raise InvalidPeerIDError("not a peer id string")
        try:
            if text[0] == "1" or text.startswith("Qm"):
                return cls.from_bytes(b58decode(text))
            if text[0] not in _CID_BASES:
                raise InvalidPeerIDError(f"unsupported multibase prefix {text[0]!r}")
            raw = multibase.decode(text)
        except (ValueError, KeyError) as exc:
            if isinstance(exc, InvalidPeerIDError):
                raise
            raise InvalidPeerIDError(f"undecodable peer id {text!r}: {exc}") from None
        try:
            version, pos = decode_uvarint(raw)
            codec, pos = decode_uvarint(raw, pos)
        except VarintError as exc:
            raise InvalidPeerIDError(f"malformed CID: {exc}") from None
        if version != 1:
            raise InvalidPeerIDError(f"peer id CID must be version 1, not {version}")
        if codec != LIBP2P_KEY_CODEC:
            raise InvalidPeerIDError(f"CID codec {codec:#x} is not libp2p-key")
        return cls.from_bytes(raw[pos:])

    def to_base58(self) -> str:
        """The legacy base58btc string, the form every implementation displays."""
        if not self._text:
            object.__setattr__(self, "_text", b58encode(self.multihash))
        return self._text

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerID({self.to_base58()})"

    def to_cid_string(self, base: str = "base32") -> str:
        """The CIDv1 ``libp2p-key`` string: ``bafz…`` in base32, ``k51…`` in base36."""
        cid = bytes((0x01, LIBP2P_KEY_CODEC)) + self.multihash
        encoded: str = multibase.encode(cid, base)
        return encoded

    def extract_public_key(self) -> PublicKey | None:
        """The inlined key of an identity-multihash id; None for hashed ids.

        Raises InvalidKeyError if the inlined bytes are not a valid key.
        """
        if self.multihash[0] != IDENTITY_CODE:
            return None
        _, pos = decode_uvarint(self.multihash, 1)
        return PublicKey.from_protobuf(self.multihash[pos:])

    def matches(self, key: PublicKey) -> bool:
        """Whether ``key`` is the key this id was derived from (the Noise identity check)."""
        return PeerID.from_public_key(key) == self

    def has_valid_inline_key(self) -> bool:
        """False for identity ids whose inlined bytes are not a key (peers that lie)."""
        try:
            self.extract_public_key()
        except InvalidKeyError:
            return False
        return True
