"""base58btc against known strings and the multibase codec it replaced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import multibase

from zikade_py.p2p.base58 import b58decode, b58encode


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\0", "1"),
        (b"\0\0\x01", "112"),
        (b"hello world", "StV1DL6CwTryKyV"),
        (bytes.fromhex("0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"),
         "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"),
    ],
)
def test_vectors(raw: bytes, text: str) -> None:
    assert b58encode(raw) == text
    assert b58decode(text) == raw


@given(st.binary(max_size=80))
def test_matches_multibase_and_round_trips(raw: bytes) -> None:
    text = b58encode(raw)
    if raw:
        assert text == multibase.get("base58btc").raw_encoder(raw)
    assert b58decode(text) == raw


def test_rejects_characters_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        b58decode("0OIl")
