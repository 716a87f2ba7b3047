"""The Yamux frame header: 12 bytes, big-endian (hashicorp/yamux spec.md, WIRE.md §5).

Kept apart from the session so the codec can be tested with vectors and fuzzed on its own.
Only Data frames carry a body; for the other types ``length`` is a window delta, an
opaque ping value or a GoAway error code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from zikade_py.p2p.yamux_errors import YamuxProtocolError

YAMUX_VERSION = 0
HEADER_SIZE = 12
MAX_UINT32 = 0xFFFFFFFF

_HEADER = struct.Struct(">BBHII")


class FrameType(IntEnum):
    """What a frame does; the only four types version 0 defines."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    """Stream life-cycle bits; several may be set on one Data or Window Update frame."""

    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


_TYPES = {int(t): t for t in FrameType}  # a dict lookup, not an enum call, per frame


class GoAwayCode(IntEnum):
    """Error codes carried in the length field of a GoAway frame."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One decoded header; ``flags`` keeps unknown bits so nothing is silently lost."""

    type: FrameType
    flags: int
    stream_id: int
    length: int

    def has(self, flag: Flag) -> bool:
        """Whether ``flag`` is set."""
        return bool(self.flags & flag)

    def encode(self) -> bytes:
        """The 12 wire bytes of this header."""
        return encode_header(self.type, self.flags, self.stream_id, self.length)


def encode_header(frame_type: FrameType, flags: int, stream_id: int, length: int) -> bytes:
    """Encode a header; ``ValueError`` if a field does not fit its width (local misuse)."""
    if not 0 <= flags <= 0xFFFF:
        raise ValueError(f"flags out of range: {flags}")
    if not 0 <= stream_id <= MAX_UINT32 or not 0 <= length <= MAX_UINT32:
        raise ValueError(f"stream id or length out of range: {stream_id}, {length}")
    return _HEADER.pack(YAMUX_VERSION, int(frame_type), flags, stream_id, length)


def decode_header(data: bytes | bytearray | memoryview) -> FrameHeader:
    """Decode exactly 12 bytes; :class:`YamuxProtocolError` for a bad version or type."""
    if len(data) != HEADER_SIZE:
        raise YamuxProtocolError(f"yamux header must be {HEADER_SIZE} bytes, got {len(data)}")
    version, type_byte, flags, stream_id, length = _HEADER.unpack(data)
    if version != YAMUX_VERSION:
        raise YamuxProtocolError(f"unsupported yamux version {version}")
    frame_type = _TYPES.get(type_byte)
    if frame_type is None:
        raise YamuxProtocolError(f"unknown yamux frame type {type_byte}")
    return FrameHeader(frame_type, flags, stream_id, length)
