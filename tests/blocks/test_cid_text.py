"""The fast text-CID parser agrees with ``multiformats`` on valid and broken CIDs alike."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from zikade_py.blocks.cid import InvalidCIDError
from zikade_py.blocks.cid_text import FAST_CODECS, FAST_HASHES, _fast, text_multihash
from zikade_py.p2p.base58 import b58encode
from zikade_py.p2p.varint import encode_uvarint

CODECS = [*sorted(FAST_CODECS), 0x0300, 0x90]  # + ipld? (slow path) and eth-block
HASHES = [*sorted(FAST_HASHES), 0x00, 0x11, 0xB240]  # + identity, sha1, blake2b-512


def slow(text: str) -> bytes | str:
    """multiformats' answer: the multihash, or the error's text."""
    try:
        return bytes(CID.decode(text).digest)
    except Exception as exc:
        return str(exc) or type(exc).__name__


def fast(text: str) -> bytes | str:
    try:
        return text_multihash(text)
    except InvalidCIDError as exc:
        return str(exc)


@st.composite
def binary_cids(draw: st.DrawFn) -> bytes:
    code = draw(st.sampled_from(HASHES))
    size = FAST_HASHES.get(code, 20)
    size = draw(st.sampled_from([size, size, size - 1, size + 1, 0]))
    digest = draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
    mh = encode_uvarint(code) + encode_uvarint(size) + digest
    if draw(st.booleans()) and code == 0x12 and size == 32:
        return mh  # CIDv0
    version = draw(st.sampled_from([1, 1, 1, 0, 2]))
    return encode_uvarint(version) + encode_uvarint(draw(st.sampled_from(CODECS))) + mh


def encodings(raw: bytes) -> list[str]:
    b32 = base64.b32encode(raw).decode().rstrip("=")
    return [
        b58encode(raw), "z" + b58encode(raw), "b" + b32.lower(), "B" + b32,
        "f" + raw.hex(), "F" + raw.hex().upper(), "m" + base64.b64encode(raw).decode().rstrip("="),
    ]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(binary_cids())
def test_agrees_with_multiformats_on_generated_cids(raw: bytes) -> None:
    for text in encodings(raw):
        assert fast(text) == slow(text), text


@settings(max_examples=400, deadline=None)
@given(binary_cids(), st.data())
def test_agrees_with_multiformats_on_damaged_text(raw: bytes, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(encodings(raw)))
    how = data.draw(st.sampled_from(["cut", "char", "case", "append"]))
    at = data.draw(st.integers(0, len(text) - 1))
    if how == "cut":
        text = text[:at]
    elif how == "char":
        text = text[:at] + data.draw(st.sampled_from("0O1lI-_=aQz7 ")) + text[at + 1 :]
    elif how == "case":
        text = text[:at] + text[at].swapcase() + text[at + 1 :]
    else:
        text += data.draw(st.sampled_from(["a", "q", "2", "=", "00"]))
    assert fast(text) == slow(text), text


def test_common_forms_take_the_fast_path() -> None:
    v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    v1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    for text in (
        v0,
        v1,
        str(CID.decode(v1).set(base="base58btc")),
        CID.decode(v1).encode("base16"),
    ):
        assert _fast(text) == bytes(CID.decode(text).digest), text
    assert _fast("bafkqaaa") is None, "identity goes to multiformats"
    assert text_multihash("bafkqaaa") == b"\x00\x00"


@pytest.mark.parametrize("text", ["", "not-a-cid", "Qm", "b", "bafyb", "QmYwAPJzv5CZsnA625"])
def test_rejects_what_multiformats_rejects(text: str) -> None:
    with pytest.raises(InvalidCIDError) as caught:
        text_multihash(text)
    assert str(caught.value) == slow(text)
