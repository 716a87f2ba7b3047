"""``/pk/`` records and the namespaced (Amino) validator."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zikade_py.dht.records import (
    InvalidRecordError,
    NamespacedValidator,
    PublicKeyValidator,
    amino_validator,
    make_pk_record,
    pk_key,
    split_key,
)
from zikade_py.p2p.crypto import KeyType, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import PeerID

ED = PrivateKey.from_seed(bytes(range(32))).public_key
OTHER = PrivateKey.from_seed(bytes(32)).public_key
# Ed25519 public key of the libp2p peer-ids.md test vector
VECTOR_PUB = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
VECTOR_ID = bytes.fromhex(
    "0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)


@pytest.fixture(scope="module")
def rsa_key() -> PublicKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PublicKey(KeyType.RSA, der)


def test_make_pk_record_for_the_spec_vector() -> None:
    key, value = make_pk_record(PublicKey.from_protobuf(VECTOR_PUB))
    assert key == b"/pk/" + VECTOR_ID
    assert value == VECTOR_PUB
    PublicKeyValidator().validate(key, value)


def test_ed25519_and_rsa_records_validate(rsa_key: PublicKey) -> None:
    validator = PublicKeyValidator()
    for public in (ED, rsa_key):
        key, value = make_pk_record(public)
        validator.validate(key, value)
        assert key == pk_key(PeerID.from_public_key(public))
    # an RSA peer id is a sha2-256 hash: the /pk/ record is the only way to its key
    assert make_pk_record(rsa_key)[0][4:6] == b"\x12\x20"


def test_key_of_another_peer_is_rejected(rsa_key: PublicKey) -> None:
    key, _ = make_pk_record(ED)
    with pytest.raises(InvalidRecordError, match="does not match"):
        PublicKeyValidator().validate(key, OTHER.to_protobuf())
    rsa_record_key, _ = make_pk_record(rsa_key)
    with pytest.raises(InvalidRecordError):
        PublicKeyValidator().validate(rsa_record_key, ED.to_protobuf())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"/pk/" + VECTOR_ID, b""),
        (b"/pk/" + VECTOR_ID, b"\x08\x01\x12\x20" + bytes(31)),  # truncated key data
        (b"/pk/" + VECTOR_ID, VECTOR_PUB + b"\x00"),  # trailing garbage
        (b"/pk/" + VECTOR_ID, b"\x08\x07\x12\x01x"),  # unknown key type
        (b"/pk/not-a-multihash", VECTOR_PUB),
        (b"/pk/", VECTOR_PUB),
        (b"/ipns/" + VECTOR_ID, VECTOR_PUB),  # right value, wrong namespace
        (b"pk/" + VECTOR_ID, VECTOR_PUB),
    ],
)
def test_malformed_pk_records(key: bytes, value: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        PublicKeyValidator().validate(key, value)


def test_pk_select_is_always_first() -> None:
    key, value = make_pk_record(ED)
    assert PublicKeyValidator().select(key, [value, value, value]) == 0
    with pytest.raises(InvalidRecordError):
        PublicKeyValidator().select(key, [])


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"/pk/abc", ("pk", b"abc")),
        (b"/ipns/a/b/c", ("ipns", b"a/b/c")),
        (b"/pk/", ("pk", b"")),
    ],
)
def test_split_key(key: bytes, expected: tuple[str, bytes]) -> None:
    assert split_key(key) == expected


@pytest.mark.parametrize("key", [b"", b"pk/abc", b"/", b"//abc", b"/pk", b"/\xff\xfe/abc"])
def test_split_key_rejects(key: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        split_key(key)


def test_amino_validator_accepts_only_pk_and_ipns() -> None:
    validator = amino_validator()
    assert validator.namespaces == frozenset({"pk", "ipns"})
    key, value = make_pk_record(ED)
    validator.validate(key, value)
    assert validator.select(key, [value]) == 0
    for other in (b"/example/x", b"/providers/x", b"/PK/" + VECTOR_ID, b"/pkx/" + VECTOR_ID):
        with pytest.raises(InvalidRecordError, match="not accepted"):
            validator.validate(other, value)
        with pytest.raises(InvalidRecordError):
            validator.select(other, [value])


def test_namespaced_validator_with_custom_namespace() -> None:
    class AcceptAll:
        def validate(self, key: bytes, value: bytes) -> None:
            pass

        def select(self, key: bytes, values: list[bytes] | tuple[bytes, ...]) -> int:
            return len(values) - 1

    validator = NamespacedValidator({"example": AcceptAll()})
    validator.validate(b"/example/anything", b"whatever")
    assert validator.select(b"/example/x", [b"a", b"b"]) == 1
    with pytest.raises(InvalidRecordError):
        validator.validate(b"/pk/" + VECTOR_ID, VECTOR_PUB)
