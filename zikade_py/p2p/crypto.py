"""libp2p identity keys: our Ed25519 key, and verification of every peer key type.

A peer id is derived from a peer's public key, and Noise / identify / signed
records prove ownership with signatures, so we must parse and verify all four
libp2p key types that go-libp2p accepts (RSA, Ed25519, secp256k1, ECDSA;
WIRE.md §1.1). Our own identity is always Ed25519. All cryptography comes from
the ``cryptography`` package.

Keys travel as the ``PublicKey`` / ``PrivateKey`` protobufs of
``pb/crypto.proto``. Because the encoded public key is hashed or inlined into the
peer id, :meth:`PublicKey.to_protobuf` writes the canonical bytes
``08 <type> 12 <len> <data>`` by hand rather than trusting a protobuf encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from google.protobuf.message import DecodeError

from zikade_py.p2p.pb import crypto_pb2
from zikade_py.p2p.varint import encode_uvarint

MIN_RSA_BITS: Final = 2048
"""Smallest RSA key go-libp2p accepts (``MinRsaKeyBits``); smaller keys are forgeable."""

MAX_RSA_BITS: Final = 8192
"""Largest RSA key go-libp2p accepts; bounds the cost a peer can make us pay to verify."""
MAX_RSA_EXPONENT: Final = (1 << 31) - 1
"""Largest public exponent accepted, as go's ``crypto/rsa`` (a huge exponent makes every
signature check cost hundreds of times a normal one)."""

MAX_KEY_PROTOBUF_BYTES: Final = 8192
"""Refuse encoded keys longer than this before parsing (an 8192-bit RSA key is ~1.1 KB)."""

_ECDSA_CURVES: Final = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
"""The NIST curves go's x509 parser accepts for ``ECDSA`` keys (always hashed with SHA-256)."""

_ED25519_PRIVATE_LEN: Final = 64
_ED25519_LEGACY_PRIVATE_LEN: Final = 96


class KeyType(IntEnum):
    """The ``KeyType`` enum of the libp2p key protobuf."""

    RSA = 0
    ED25519 = 1
    SECP256K1 = 2
    ECDSA = 3


class InvalidKeyError(ValueError):
    """Key bytes that are malformed, of an unknown type, or outside the accepted sizes."""


_VerifyKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _parse_public(key_type: KeyType, data: bytes) -> _VerifyKey:
    """The ``cryptography`` key for protobuf ``Data`` of ``key_type``, or InvalidKeyError."""
    try:
        if key_type is KeyType.ED25519:
            if len(data) != 32:
                raise InvalidKeyError(f"Ed25519 public key must be 32 bytes, got {len(data)}")
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        if key_type is KeyType.SECP256K1:
            # go (decred secp256k1.ParsePubKey) takes compressed and uncompressed points.
            if len(data) not in (33, 65) or data[0] not in (2, 3, 4):
                raise InvalidKeyError("secp256k1 public key must be a SEC1 point")
            if (len(data) == 33) != (data[0] != 4):
                raise InvalidKeyError("secp256k1 point length does not match its prefix")
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), data)
        loaded = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, InvalidKeyError):
            raise
        raise InvalidKeyError(f"malformed {key_type.name} public key: {exc}") from None
    if key_type is KeyType.ECDSA:
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(
            loaded.curve, _ECDSA_CURVES
        ):
            raise InvalidKeyError("ECDSA public key must be a P-256/P-384/P-521 PKIX key")
        return loaded
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise InvalidKeyError("RSA public key must be an RSA PKIX key")
    if not MIN_RSA_BITS <= loaded.key_size <= MAX_RSA_BITS:
        raise InvalidKeyError(
            f"RSA key of {loaded.key_size} bits outside {MIN_RSA_BITS}..{MAX_RSA_BITS}"
        )
    if loaded.public_numbers().e > MAX_RSA_EXPONENT:
        raise InvalidKeyError(f"RSA public exponent above {MAX_RSA_EXPONENT}")
    return loaded


def _encode_key_protobuf(key_type: KeyType, data: bytes) -> bytes:
    """Canonical ``08 <type> 12 <len> <data>`` (fields in tag order, minimal varints)."""
    return bytes((0x08, int(key_type), 0x12)) + encode_uvarint(len(data)) + data


def _decode_key_protobuf(
    message: crypto_pb2.PublicKey | crypto_pb2.PrivateKey, encoded: bytes
) -> tuple[KeyType, bytes]:
    """``(type, data)`` of a key protobuf, with InvalidKeyError for anything broken."""
    if len(encoded) > MAX_KEY_PROTOBUF_BYTES:
        raise InvalidKeyError(f"encoded key of {len(encoded)} bytes is too long")
    try:
        message.ParseFromString(encoded)
    except DecodeError as exc:
        raise InvalidKeyError(f"malformed key protobuf: {exc}") from None
    if not message.IsInitialized():
        raise InvalidKeyError("key protobuf lacks Type or Data (or has an unknown Type)")
    try:
        key_type = KeyType(message.Type)
    except ValueError:
        raise InvalidKeyError(f"unknown key type {message.Type}") from None
    return key_type, bytes(message.Data)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A peer's public key of any libp2p type; validated on construction.

    Equality and hashing use ``(key_type, data)``, the bytes that define the
    peer id, not the parsed key object.
    """

    key_type: KeyType
    data: bytes
    _key: _VerifyKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse ``data`` once so a PublicKey that exists is always usable."""
        try:
            object.__setattr__(self, "key_type", KeyType(self.key_type))
        except ValueError:
            raise InvalidKeyError(f"unknown key type {self.key_type!r}") from None
        object.__setattr__(self, "data", bytes(self.data))
        object.__setattr__(self, "_key", _parse_public(self.key_type, self.data))

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``data`` is valid; False (never an exception) if not."""
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def to_protobuf(self) -> bytes:
        """The canonical ``PublicKey`` protobuf: the bytes peer ids are derived from."""
        return _encode_key_protobuf(self.key_type, self.data)

    @staticmethod
    def from_protobuf(encoded: bytes) -> PublicKey:
        """Parse a ``PublicKey`` protobuf of any of the four types (InvalidKeyError if bad)."""
        key_type, data = _decode_key_protobuf(crypto_pb2.PublicKey(), encoded)
        return PublicKey(key_type, data)

    @staticmethod
    def from_ed25519(key: ed25519.Ed25519PublicKey) -> PublicKey:
        """Wrap a ``cryptography`` Ed25519 key (e.g. one Noise or tests produced)."""
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(KeyType.ED25519, raw)


class PrivateKey:
    """Our own Ed25519 identity key: signs Noise payloads and records."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self._public = PublicKey.from_ed25519(key.public_key())

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh random identity."""
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """The key for a 32-byte RFC 8032 seed (deterministic identities for tests)."""
        if len(seed) != 32:
            raise InvalidKeyError("Ed25519 seed must be 32 bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_protobuf(cls, encoded: bytes) -> PrivateKey:
        """Load a ``PrivateKey`` protobuf: Ed25519 ``seed‖pub`` or legacy ``seed‖pub‖pub``."""
        key_type, data = _decode_key_protobuf(crypto_pb2.PrivateKey(), encoded)
        if key_type is not KeyType.ED25519:
            raise InvalidKeyError(f"only Ed25519 identities are supported, not {key_type.name}")
        if len(data) == _ED25519_LEGACY_PRIVATE_LEN:
            if data[64:] != data[32:64]:
                raise InvalidKeyError("legacy Ed25519 key has two different public keys")
            data = data[:64]
        if len(data) != _ED25519_PRIVATE_LEN:
            raise InvalidKeyError(f"Ed25519 private key must be 64 bytes, got {len(data)}")
        key = cls.from_seed(data[:32])
        if key.public_key.data != data[32:]:
            raise InvalidKeyError("Ed25519 private key does not match its public half")
        return key

    def to_protobuf(self) -> bytes:
        """The ``PrivateKey`` protobuf with ``seed‖pub`` (what go and js write)."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return _encode_key_protobuf(KeyType.ED25519, seed + self._public.data)

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return self._public

    @property
    def ed25519_key(self) -> ed25519.Ed25519PrivateKey:
        """The underlying ``cryptography`` key, for code that needs the primitive."""
        return self._key

    def sign(self, data: bytes) -> bytes:
        """A plain RFC 8032 Ed25519 signature over ``data``."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"PrivateKey(public={self._public.data.hex()})"
