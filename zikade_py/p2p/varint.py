"""Unsigned LEB128 varints as multiformats and libp2p use them.

go-varint rejects non-minimal encodings and anything over 9 bytes (WIRE.md §2),
so we always encode minimally and refuse both on decode: a peer that sends
them is broken, and being strict keeps us from accepting what go would not.
"""

from __future__ import annotations

MAX_VARINT_BYTES = 9
"""Longest varint accepted (a 63-bit value), as go-varint."""


class VarintError(ValueError):
    """A varint was truncated, too long, or not minimally encoded."""


def encode_uvarint(value: int) -> bytes:
    """The minimal varint encoding of a non-negative ``value``."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a varint at ``offset``; return ``(value, offset after it)``.

    Raises :class:`VarintError` when the data ends inside the varint, when it is
    longer than :data:`MAX_VARINT_BYTES`, or when it is not minimal.
    """
    value = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        pos = offset + i
        if pos >= len(data):
            raise VarintError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise VarintError("varint not minimally encoded")
            return value, pos + 1
        shift += 7
    raise VarintError(f"varint longer than {MAX_VARINT_BYTES} bytes")
