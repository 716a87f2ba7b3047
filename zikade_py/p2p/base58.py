"""base58btc (the Bitcoin alphabet), the string form of peer ids.

Peer ids are printed in every log line, span attribute and CLI output; the
generic multibase codec took over a millisecond per call, this takes
microseconds (one big-int conversion).
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """``data`` in base58btc; each leading zero byte becomes a ``1``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    value = int.from_bytes(data, "big")
    out: list[str] = []
    while value:
        value, rem = divmod(value, 58)
        out.append(ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The bytes of a base58btc string; ``ValueError`` on a character outside the alphabet."""
    value = 0
    for char in text:
        digit = _INDEX.get(char)
        if digit is None:
            raise ValueError(f"{char!r} is not a base58btc character")
        value = value * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\0" * zeros + body
