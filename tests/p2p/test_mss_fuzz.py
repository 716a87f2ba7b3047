"""multistream-select under hostile input: only NegotiationError, never a hang."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.mss import (
    MAX_PROPOSALS,
    MULTISTREAM_ID,
    NegotiationError,
    encode_message,
    handle_negotiation,
    select_protocol,
    select_protocol_lazy,
)

from .mss_pipe import feed

TIME_LIMIT = 5.0
"""Input always ends in EOF, so every call must finish; this only turns a hang into a failure."""

HEADER = encode_message(MULTISTREAM_ID)

# Pieces a hostile peer might combine: valid messages, near misses and raw noise.
_piece = st.one_of(
    st.sampled_from(
        [
            HEADER,
            encode_message("/noise"),
            encode_message("/ipfs/kad/1.0.0"),
            encode_message("na"),
            encode_message("ls"),
            b"\x00",
            b"\x80\x08",
            b"\x81\x08",
            b"\xff\xff\xff",
            b"\n",
        ]
    ),
    st.text(max_size=20).map(lambda t: bytes((len(t.encode()) + 1,)) + t.encode() + b"\n"),
    st.binary(max_size=30),
)
_hostile = st.lists(_piece, max_size=12).map(b"".join)
_chunk = st.integers(min_value=0, max_value=7)


def _run(coro: object) -> object:
    async def bounded() -> object:
        return await asyncio.wait_for(coro, TIME_LIMIT)  # type: ignore[arg-type]

    return asyncio.run(bounded())


@settings(max_examples=200, deadline=None)
@given(st.one_of(_hostile, st.binary(max_size=200)), _chunk)
def test_responder_raises_only_negotiation_errors(data: bytes, chunk: int) -> None:
    stream = feed(data, chunk)
    try:
        result = _run(handle_negotiation(stream, lambda p: p == "/noise"))
    except NegotiationError:
        assert len(stream.writes) <= MAX_PROPOSALS + 1
        return
    assert isinstance(result, tuple)
    assert result[0] == "/noise"
    assert stream.writes[-1] == encode_message("/noise")


@settings(max_examples=200, deadline=None)
@given(_hostile, _chunk)
def test_responder_accepting_everything(data: bytes, chunk: int) -> None:
    # A permissive registry must not echo control words or crash on odd ids.
    stream = feed(HEADER + data, chunk)
    try:
        result = _run(handle_negotiation(stream, lambda p: True))
    except NegotiationError:
        return
    assert isinstance(result, tuple)
    assert result[0] not in ("ls", "na", MULTISTREAM_ID)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_hostile, st.binary(max_size=200)), _chunk)
def test_initiator_raises_only_negotiation_errors(data: bytes, chunk: int) -> None:
    try:
        result = _run(select_protocol(feed(data, chunk), ["/tls/1.0.0", "/noise"]))
    except NegotiationError:
        return
    assert isinstance(result, tuple)
    assert result[0] in ("/tls/1.0.0", "/noise")


@settings(max_examples=200, deadline=None)
@given(st.one_of(_hostile, st.binary(max_size=200)), _chunk)
def test_lazy_reader_raises_only_negotiation_errors(data: bytes, chunk: int) -> None:
    async def go() -> bytes:
        reader = await select_protocol_lazy(feed(data, chunk), "/noise", b"payload")
        return await reader.read_some()

    try:
        _run(go())
    except NegotiationError:
        return
