"""CIDs as bytes: parsing, building, verification and bitswap prefixes agree with multiformats."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID, multihash

from zikade_py.blocks import cid


def test_make_matches_multiformats() -> None:
    data = b"hello world"
    ours = cid.make(data)
    theirs = CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))
    assert ours == bytes(theirs)
    assert cid.to_str(ours) == str(theirs)
    assert cid.to_bytes(str(theirs)) == ours


def test_v0_and_v1_share_the_multihash() -> None:
    v0 = cid.make(b"node", cid.DAG_PB, version=0)
    v1 = cid.make(b"node", cid.DAG_PB)
    assert cid.multihash_of(v0) == cid.multihash_of(v1)
    assert cid.to_str(v0).startswith("Qm")
    assert cid.codec_of(v0) == cid.DAG_PB


def test_verify_detects_tampering() -> None:
    c = cid.make(b"block")
    assert cid.verify(c, b"block")
    assert not cid.verify(c, b"blocK")


def test_prefix_roundtrip_v0_and_v1() -> None:
    for c in (cid.make(b"x"), cid.make(b"x", cid.DAG_PB, version=0)):
        assert cid.from_prefix(cid.prefix(c), b"x") == c


@pytest.mark.parametrize(
    "bad", [b"", b"\x01", b"\x02\x55\x12\x20" + b"\0" * 32, b"\x01\x55\x12\x21"]
)
def test_parse_rejects_garbage(bad: bytes) -> None:
    with pytest.raises(cid.InvalidCIDError):
        cid.parse(bad)


def test_unsupported_hash_is_not_verified() -> None:
    weird = b"\x01\x55" + b"\xe4\x01\x02ab"  # unknown hash code 0xe4
    assert not cid.verify(weird, b"ab")


@given(st.binary(max_size=64))
def test_parse_never_crashes(data: bytes) -> None:
    with contextlib.suppress(cid.InvalidCIDError):
        cid.parse(data)


@given(st.binary(max_size=16), st.binary(max_size=64))
def test_from_prefix_never_crashes(pfx: bytes, data: bytes) -> None:
    with contextlib.suppress(cid.InvalidCIDError):
        cid.from_prefix(pfx, data)
