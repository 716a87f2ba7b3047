"""Yamux header codec against the byte vectors of WIRE.md §5 and its failure rules."""

from __future__ import annotations

import pytest

from zikade_py.p2p.yamux_errors import YamuxError, YamuxProtocolError
from zikade_py.p2p.yamux_frame import (
    HEADER_SIZE,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    decode_header,
    encode_header,
)

MAX = 2**32 - 1

VECTORS = [
    # (hex, type, flags, stream id, length) — WIRE.md §5 examples
    ("000100010000000100000000", FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0),  # open stream 1
    ("000100020000000200000000", FrameType.WINDOW_UPDATE, Flag.ACK, 2, 0),  # ACK stream 2
    ("000200010000000000000007", FrameType.PING, Flag.SYN, 0, 7),  # ping SYN id 7
    ("000200020000000000000007", FrameType.PING, Flag.ACK, 0, 7),  # its answer
    ("000000040000000100000005", FrameType.DATA, Flag.FIN, 1, 5),  # 5 bytes + FIN
    ("000300000000000000000000", FrameType.GO_AWAY, 0, 0, GoAwayCode.NORMAL),
    ("000300000000000000000001", FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR),
    ("0001000cfffffffffffffffe", FrameType.WINDOW_UPDATE, Flag.FIN | Flag.RST, MAX, MAX - 1),
]


@pytest.mark.parametrize(("hex_bytes", "frame_type", "flags", "stream_id", "length"), VECTORS)
def test_vectors_encode_and_decode(
    hex_bytes: str, frame_type: FrameType, flags: int, stream_id: int, length: int
) -> None:
    raw = bytes.fromhex(hex_bytes)
    assert len(raw) == HEADER_SIZE
    assert encode_header(frame_type, flags, stream_id, length) == raw
    header = decode_header(raw)
    assert header == FrameHeader(frame_type, flags, stream_id, length)
    assert header.encode() == raw


def test_flags_are_tested_individually() -> None:
    header = decode_header(bytes.fromhex("0000000f0000000300000000"))
    assert all(header.has(f) for f in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST))
    header = decode_header(bytes.fromhex("000000020000000300000000"))
    assert header.has(Flag.ACK)
    assert not header.has(Flag.SYN) and not header.has(Flag.FIN) and not header.has(Flag.RST)


def test_unknown_flag_bits_are_kept() -> None:
    header = decode_header(bytes.fromhex("000180010000000100000000"))
    assert header.flags == 0x8001
    assert header.encode() == bytes.fromhex("000180010000000100000000")


@pytest.mark.parametrize("version", [1, 2, 0xFF])
def test_bad_version_is_a_protocol_error(version: int) -> None:
    raw = bytes([version]) + bytes.fromhex("0100010000000100000000")
    with pytest.raises(YamuxProtocolError, match="version"):
        decode_header(raw)


@pytest.mark.parametrize("frame_type", [4, 5, 0x80, 0xFF])
def test_unknown_type_is_a_protocol_error(frame_type: int) -> None:
    raw = bytes([0, frame_type]) + bytes(10)
    with pytest.raises(YamuxProtocolError, match="type"):
        decode_header(raw)


@pytest.mark.parametrize("size", [0, 1, 11, 13, 24])
def test_wrong_size_is_a_protocol_error(size: int) -> None:
    with pytest.raises(YamuxProtocolError):
        decode_header(bytes(size))


def test_protocol_error_is_a_yamux_error() -> None:
    assert issubclass(YamuxProtocolError, YamuxError)


@pytest.mark.parametrize(
    ("flags", "stream_id", "length"),
    [(-1, 0, 0), (0x10000, 0, 0), (0, -1, 0), (0, 2**32, 0), (0, 0, -1), (0, 0, 2**32)],
)
def test_encode_rejects_out_of_range_fields(flags: int, stream_id: int, length: int) -> None:
    with pytest.raises(ValueError):
        encode_header(FrameType.DATA, flags, stream_id, length)
