"""Identity keys: the peer-ids.md vectors of all four types, signatures, bad input, key file."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.crypto import InvalidKeyError, KeyType, PrivateKey, PublicKey
from zikade_py.p2p.keystore import load_or_create_identity
from zikade_py.p2p.peer_id import PeerID

VECTORS: dict[str, bytes] = {
    name: bytes.fromhex(value)
    for name, value in json.loads(
        (pathlib.Path(__file__).parent / "vectors" / "libp2p_key_vectors.json").read_text()
    )["vectors"].items()
}

ED25519_PRIV = VECTORS["ed25519_private_key"]
ED25519_PUB = VECTORS["ed25519_public_key"]
MESSAGE = b"libp2p signature test message"

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
DER = serialization.Encoding.DER


def der_spki(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(DER, SPKI)


# --- spec vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key_type", "data_len"),
    [
        ("ed25519_public_key", KeyType.ED25519, 32),
        ("secp256k1_public_key", KeyType.SECP256K1, 33),
        ("ecdsa_public_key", KeyType.ECDSA, 91),
        ("rsa_public_key", KeyType.RSA, 550),
    ],
)
def test_public_key_vectors_parse_and_reencode(name: str, key_type: KeyType, data_len: int) -> None:
    key = PublicKey.from_protobuf(VECTORS[name])
    assert key.key_type is key_type
    assert len(key.data) == data_len
    assert key.to_protobuf() == VECTORS[name]  # canonical encoding is byte-identical


def test_ed25519_vector_peer_id() -> None:
    key = PublicKey.from_protobuf(ED25519_PUB)
    peer = PeerID.from_public_key(key)
    assert peer.multihash.hex() == "0024" + ED25519_PUB.hex()
    assert str(peer) == "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


def test_secp256k1_vector_peer_id_is_inlined() -> None:
    pub = VECTORS["secp256k1_public_key"]
    assert len(pub) == 37
    peer = PeerID.from_public_key(PublicKey.from_protobuf(pub))
    assert peer.multihash == b"\x00\x25" + pub
    assert str(peer).startswith("16Uiu2HA")
    assert peer.extract_public_key() == PublicKey.from_protobuf(pub)


@pytest.mark.parametrize("name", ["ecdsa_public_key", "rsa_public_key"])
def test_large_key_vectors_peer_id_is_sha256(name: str) -> None:
    peer = PeerID.from_public_key(PublicKey.from_protobuf(VECTORS[name]))
    assert peer.multihash == b"\x12\x20" + hashlib.sha256(VECTORS[name]).digest()
    assert str(peer).startswith("Qm")
    assert peer.extract_public_key() is None
    assert PeerID.from_string(str(peer)) == peer


def test_ed25519_private_vector() -> None:
    key = PrivateKey.from_protobuf(ED25519_PRIV)
    assert key.public_key.to_protobuf() == ED25519_PUB
    assert key.to_protobuf() == ED25519_PRIV
    assert key.public_key.verify(MESSAGE, key.sign(MESSAGE))


def _field_data(encoded: bytes) -> bytes:
    """The Data field of a vector, parsed independently of our code (2-byte varint max)."""
    assert encoded[0] == 0x08 and encoded[2] == 0x12
    length, pos = encoded[3], 4
    if length & 0x80:
        length, pos = (length & 0x7F) | (encoded[4] << 7), 5
    assert len(encoded) == pos + length
    return encoded[pos:]


def test_secp256k1_private_vector_matches_public_and_signs() -> None:
    scalar = _field_data(VECTORS["secp256k1_private_key"])
    private = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256K1())
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    public = PublicKey.from_protobuf(VECTORS["secp256k1_public_key"])
    assert point == public.data
    assert public.verify(MESSAGE, private.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))


def test_ecdsa_private_vector_matches_public_and_signs() -> None:
    private = serialization.load_der_private_key(_field_data(VECTORS["ecdsa_private_key"]), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    public = PublicKey.from_protobuf(VECTORS["ecdsa_public_key"])
    assert der_spki(private.public_key()) == public.data
    assert public.verify(MESSAGE, private.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))


def test_rsa_private_vector_matches_public_and_signs() -> None:
    private = serialization.load_der_private_key(_field_data(VECTORS["rsa_private_key"]), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 4096
    public = PublicKey.from_protobuf(VECTORS["rsa_public_key"])
    assert der_spki(private.public_key()) == public.data
    signature = private.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert public.verify(MESSAGE, signature)
    assert not public.verify(MESSAGE + b"!", signature)


# --- signatures of freshly generated keys -------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _check(public: PublicKey, signature: bytes) -> None:
    assert public.verify(MESSAGE, signature)
    assert not public.verify(MESSAGE + b"x", signature)
    tampered = bytearray(signature)
    tampered[len(tampered) // 2] ^= 0x01
    assert not public.verify(MESSAGE, bytes(tampered))
    for junk in (b"", b"\x00", b"\x30\x02\x02\x00", bytes(600)):
        assert not public.verify(MESSAGE, junk)  # never raises
    assert PublicKey.from_protobuf(public.to_protobuf()) == public


def test_ed25519_signature() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    _check(PublicKey.from_ed25519(private.public_key()), private.sign(MESSAGE))


def test_secp256k1_signature() -> None:
    private = ec.generate_private_key(ec.SECP256K1())
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    public = PublicKey(KeyType.SECP256K1, point)
    _check(public, private.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))
    # go also accepts the uncompressed point encoding.
    uncompressed = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert PublicKey(KeyType.SECP256K1, uncompressed).verify(
        MESSAGE, private.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    )


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_ecdsa_signature(curve: ec.EllipticCurve) -> None:
    private = ec.generate_private_key(curve)
    public = PublicKey(KeyType.ECDSA, der_spki(private.public_key()))
    _check(public, private.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))


def test_rsa_signature(rsa_2048: rsa.RSAPrivateKey) -> None:
    public = PublicKey(KeyType.RSA, der_spki(rsa_2048.public_key()))
    _check(public, rsa_2048.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256()))
    # PSS or another hash is not the libp2p scheme.
    pss = rsa_2048.sign(MESSAGE, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert not public.verify(MESSAGE, pss)


def test_own_key_signature_and_protobuf_roundtrip() -> None:
    key = PrivateKey.generate()
    again = PrivateKey.from_protobuf(key.to_protobuf())
    assert again.public_key == key.public_key
    assert key.public_key.verify(MESSAGE, again.sign(MESSAGE))
    assert not PrivateKey.generate().public_key.verify(MESSAGE, key.sign(MESSAGE))


# --- bad keys ----------------------------------------------------------------------------------


def test_rsa_size_limits() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidKeyError, match="bits"):
        PublicKey(KeyType.RSA, der_spki(small.public_key()))


def test_type_and_data_mismatch(rsa_2048: rsa.RSAPrivateKey) -> None:
    p256 = der_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    rsa_der = der_spki(rsa_2048.public_key())
    with pytest.raises(InvalidKeyError):
        PublicKey(KeyType.RSA, p256)
    with pytest.raises(InvalidKeyError):
        PublicKey(KeyType.ECDSA, rsa_der)
    k1 = der_spki(ec.generate_private_key(ec.SECP256K1()).public_key())
    with pytest.raises(InvalidKeyError):
        PublicKey(KeyType.ECDSA, k1)  # secp256k1 in PKIX is not an ECDSA-type key


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\x08\x01",  # no Data
        b"\x12\x20" + bytes(32),  # no Type
        b"\x08\x04\x12\x20" + bytes(32),  # unknown type
        b"\x08\x01\x12\x1f" + bytes(31),  # short Ed25519
        b"\x08\x01\x12\x21" + bytes(33),  # long Ed25519
        b"\x08\x02\x12\x21\x02" + b"\xff" * 32,  # secp256k1 x beyond the field
        b"\x08\x02\x12\x21\x04" + bytes(32),  # uncompressed prefix, compressed length
        b"\x08\x02\x12\x21\x05" + bytes(32),  # bad prefix
        b"\x08\x03\x12\x03abc",  # ECDSA not DER
        b"\x08\x00\x12\x03abc",  # RSA not DER
        b"\x08\x01\x12\x21" + bytes(32),  # Data length beyond the input
        b"\xff\xff\xff",
        b"\x08\x01\x12\x20" + bytes(9000),  # absurdly long
    ],
)
def test_public_key_rejects(encoded: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_protobuf(encoded)


def test_public_key_constructor_rejects_unknown_type() -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey(7, bytes(32))  # type: ignore[arg-type]


def test_private_key_legacy_96_bytes() -> None:
    data = _field_data(ED25519_PRIV)
    legacy = b"\x08\x01\x12\x60" + data + data[32:]
    key = PrivateKey.from_protobuf(legacy)
    assert key.to_protobuf() == ED25519_PRIV  # written back in the 64-byte form
    bad = b"\x08\x01\x12\x60" + data + bytes(32)
    with pytest.raises(InvalidKeyError, match="legacy"):
        PrivateKey.from_protobuf(bad)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x08\x01\x12\x40" + bytes(64),  # public half does not match the seed
        b"\x08\x01\x12\x20" + bytes(32),  # seed only
        VECTORS["secp256k1_private_key"],  # only Ed25519 identities
        b"",
    ],
)
def test_private_key_rejects(encoded: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey.from_protobuf(encoded)


# --- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_public_key_from_protobuf(data: bytes) -> None:
    try:
        key = PublicKey.from_protobuf(data)
    except InvalidKeyError:
        return
    assert PublicKey.from_protobuf(key.to_protobuf()) == key


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(KeyType)), st.binary(max_size=120))
def test_fuzz_public_key_typed_data(key_type: KeyType, data: bytes) -> None:
    encoded = bytes((0x08, key_type, 0x12, len(data))) + data
    try:
        key = PublicKey.from_protobuf(encoded)
    except InvalidKeyError:
        return
    assert key.verify(b"m", data) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_verify_never_raises(signature: bytes) -> None:
    for name in ("ed25519_public_key", "secp256k1_public_key", "ecdsa_public_key"):
        assert not PublicKey.from_protobuf(VECTORS[name]).verify(MESSAGE, signature)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=150))
def test_fuzz_private_key_from_protobuf(data: bytes) -> None:
    try:
        key = PrivateKey.from_protobuf(data)
    except InvalidKeyError:
        return
    assert PrivateKey.from_protobuf(key.to_protobuf()).public_key == key.public_key


# --- key file ----------------------------------------------------------------------------------


def test_keystore_roundtrip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "repo" / "identity.key"
    first = load_or_create_identity(path)
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes() == first.to_protobuf()
    second = load_or_create_identity(path)
    assert second.public_key == first.public_key
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.key"]  # no temp files


def test_keystore_loads_go_key_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(ED25519_PRIV)
    key = load_or_create_identity(path)
    assert str(PeerID.from_public_key(key.public_key)).startswith("12D3KooWBtg3")


def test_keystore_never_overwrites_a_bad_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"garbage")
    with pytest.raises(InvalidKeyError):
        load_or_create_identity(path)
    assert path.read_bytes() == b"garbage"
