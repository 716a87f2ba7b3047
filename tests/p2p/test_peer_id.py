"""Peer ids: WIRE.md §1 vectors, the spec's string examples, bad input, fuzz."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.crypto import InvalidKeyError, KeyType, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

ED25519_PUB = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
VECTOR_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
VECTOR_BYTES = bytes.fromhex(
    "0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
VECTOR_CID = "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6"

# ipfs/specs src/routing/kad-dht.md example (WIRE.md §1.3).
KAD_ID = "12D3KooWLU2znyJMtDiHArqAGbZn8CgUGp92kxDBtefftEEaHSZS"
KAD_BYTES = bytes.fromhex(
    "0024080112209e3b433cbd31c2b8a6ebbdca998bd0f4c2141c9c9af5422e976051b1e63af14d"
)
KAD_CID = "bafzaajaiaejcbhr3im6l2mocxctoxpoktgf5b5gccqojzgxviixjoycrwhtdv4kn"
KAD_KEY = "e43d28f0996557c0d5571d75c62a57a59d7ac1d30a51ecedcdb9d5e4afa56100"


def test_wire_vector_from_key() -> None:
    peer = PeerID.from_public_key(PublicKey.from_protobuf(ED25519_PUB))
    assert peer.multihash == VECTOR_BYTES
    assert str(peer) == peer.to_base58() == VECTOR_ID
    assert peer.to_cid_string() == VECTOR_CID
    assert hashlib.sha256(peer.multihash).hexdigest() == (
        "dfd53212a4bd2beda3ea8e82d08285370c70a70cfe9c588e28754b23c8033121"
    )


@pytest.mark.parametrize("text", [VECTOR_ID, VECTOR_CID, VECTOR_CID.upper()])
def test_wire_vector_from_strings(text: str) -> None:
    assert PeerID.from_string(text).multihash == VECTOR_BYTES


def test_kad_spec_example() -> None:
    peer = PeerID.from_string(KAD_ID)
    assert peer.multihash == KAD_BYTES
    assert peer.to_cid_string() == KAD_CID
    assert PeerID.from_string(KAD_CID) == peer
    assert hashlib.sha256(peer.multihash).hexdigest() == KAD_KEY
    key = peer.extract_public_key()
    assert key is not None and key.key_type is KeyType.ED25519
    assert peer.matches(key)


def test_spec_string_examples() -> None:
    # peer-ids.md "Decoding" examples: the same sha256 id as CID and as base58.
    cid = PeerID.from_string("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
    assert str(cid) == "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    assert cid.multihash[:2] == b"\x12\x20"
    assert cid.extract_public_key() is None
    ed = PeerID.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
    assert ed.multihash[:2] == b"\x00\x24"
    key = ed.extract_public_key()
    assert key is not None and key.key_type is KeyType.ED25519


def test_base36_roundtrip() -> None:
    peer = PeerID.from_string(VECTOR_ID)
    text = peer.to_cid_string("base36")
    assert text.startswith("k51")
    assert PeerID.from_string(text) == peer


def test_matches_and_hashing() -> None:
    a, b = PrivateKey.generate().public_key, PrivateKey.generate().public_key
    pa = PeerID.from_public_key(a)
    assert pa.matches(a) and not pa.matches(b)
    assert pa == PeerID.from_bytes(pa.multihash)
    assert len({pa, PeerID.from_bytes(pa.multihash), PeerID.from_public_key(b)}) == 2
    assert pa.extract_public_key() == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        pa.multihash = b""  # type: ignore[misc]


def test_identity_with_bad_inline_key() -> None:
    peer = PeerID.from_bytes(b"\x00\x03abc")
    assert not peer.has_valid_inline_key()
    with pytest.raises(InvalidKeyError):
        peer.extract_public_key()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",  # no length
        b"\x12\x20" + bytes(31),  # short digest
        b"\x12\x20" + bytes(33),  # trailing byte
        b"\x12\x1f" + bytes(31),  # sha2-256 must be 32 bytes
        b"\x13\x40" + bytes(64),  # sha2-512 is not a peer id hash
        b"\x00\x2b" + bytes(43),  # identity over the 42-byte inline limit
        b"\x80\x00\x20" + bytes(32),  # non-minimal code varint
        b"\xff" * 12,
    ],
)
def test_from_bytes_rejects(data: bytes) -> None:
    with pytest.raises(InvalidPeerIDError):
        PeerID.from_bytes(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Qm",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5",  # one char short
        "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p0",  # '0' is not base58
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID
        "b" + "a" * 10,
        "x123",  # not a multibase we accept
        "zQmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # base58 CIDv0 bytes, not a CIDv1
        "1" * 300,  # too long
        "b" + VECTOR_CID[2:],  # codec bytes mangled
    ],
)
def test_from_string_rejects(text: str) -> None:
    with pytest.raises(InvalidPeerIDError):
        PeerID.from_string(text)


# --- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_from_bytes(data: bytes) -> None:
    try:
        peer = PeerID.from_bytes(data)
    except InvalidPeerIDError:
        return
    assert PeerID.from_string(str(peer)) == peer
    assert PeerID.from_string(peer.to_cid_string()) == peer


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", max_size=60),
        st.builds(
            lambda p, s: p + s,
            st.sampled_from(["1", "Qm", "b", "B", "k", "K", "z", "f", "m", "u"]),
            st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz=", max_size=70),
        ),
    )
)
def test_fuzz_from_string(text: str) -> None:
    try:
        peer = PeerID.from_string(text)
    except InvalidPeerIDError:
        return
    assert PeerID.from_bytes(peer.multihash) == peer


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_fuzz_identity_ids_roundtrip_through_strings(inline: bytes) -> None:
    peer = PeerID.from_bytes(bytes((0, len(inline))) + inline)
    assert PeerID.from_string(peer.to_base58()) == peer
    assert PeerID.from_string(peer.to_cid_string("base36")) == peer
