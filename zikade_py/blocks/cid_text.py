"""The multihash of a CID typed as text, fast for the forms people provide by the million.

``multiformats.CID.decode`` takes about a millisecond per call here, so reading
a file of a million CIDs took tens of minutes. :func:`text_multihash` decodes
the common forms itself, with the C codecs of :mod:`base64` and
:mod:`binascii` (base32 ``b…``, hex ``f…``/``F…``) or our base58
(``Qm…`` CIDv0, ``z…``), and checks them strictly: canonical encoding, CID
version, a codec and hash function from the short lists below, the digest
length the hash function has. Anything it is not sure of, valid or not, goes
to ``multiformats``, so what is accepted and every error message are exactly
``multiformats``' own.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from multiformats import CID

from zikade_py.blocks.cid import InvalidCIDError
from zikade_py.p2p.base58 import b58decode, b58encode
from zikade_py.p2p.varint import VarintError, decode_uvarint

FAST_CODECS: Final = frozenset({0x55, 0x70, 0x71, 0x72, 0x78, 0x0129, 0x0200})
"""Multicodecs decoded on the fast path: raw, dag-pb, dag-cbor, libp2p-key, git-raw,
dag-json, json (others go to ``multiformats``)."""

FAST_HASHES: Final = {0x12: 32, 0x13: 64, 0x14: 64, 0x16: 32, 0x1B: 32, 0xB220: 32}
"""Hash functions decoded on the fast path with their digest length: sha2-256,
sha2-512, sha3-512, sha3-256, keccak-256, blake2b-256."""

_B32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
_B32: Final = frozenset(_B32_ALPHABET)
_B32_VALUE: Final = {c: i for i, c in enumerate(_B32_ALPHABET)}
_PAD: Final = ("", None, "======", None, "====", "===", None, "=")  # by len % 8


def text_multihash(text: str) -> bytes:
    """The multihash a CID names (what providers rendezvous on), from its text form.

    Raises :class:`InvalidCIDError` (a ``ValueError``) with ``multiformats``' reason for
    anything that is not a CID.
    """
    mh = _fast(text)
    if mh is not None:
        return mh
    try:
        return bytes(CID.decode(text).digest)
    except Exception as exc:  # multiformats raises many unrelated types on bad input
        raise InvalidCIDError(str(exc) or type(exc).__name__) from None


def _fast(text: str) -> bytes | None:
    """The multihash, or None when the slow path must decide (not an error by itself)."""
    if len(text) == 46 and text.startswith("Qm"):
        try:
            v0 = b58decode(text)
        except ValueError:
            return None
        return v0 if len(v0) == 34 and v0[:2] == b"\x12\x20" else None
    if len(text) < 2:
        return None
    base, body = text[0], text[1:]
    raw: bytes | None
    if base == "b":
        raw = _base32(body)
    elif base == "z":
        raw = _base58(body)
    elif base in "fF":
        raw = _hex(body, upper=base == "F")
    else:
        return None
    return None if raw is None else _v1_multihash(raw)


def _base32(body: str) -> bytes | None:
    pad = _PAD[len(body) % 8]
    if pad is None or not _B32.issuperset(body):
        return None
    unused = 5 * len(body) % 8  # canonical only: the last character's spare bits are zero
    if unused and _B32_VALUE[body[-1]] & ((1 << unused) - 1):
        return None
    return base64.b32decode(body.upper() + pad)


def _base58(body: str) -> bytes | None:
    try:
        raw = b58decode(body)
    except ValueError:
        return None
    return raw if b58encode(raw) == body else None


def _hex(body: str, *, upper: bool) -> bytes | None:
    if len(body) % 2 or (body.upper() if upper else body.lower()) != body:
        return None
    try:
        return binascii.unhexlify(body)
    except (binascii.Error, ValueError):
        return None


def _v1_multihash(raw: bytes) -> bytes | None:
    """The multihash of binary CIDv1 ``raw`` when every part is on the fast lists."""
    if not raw or raw[0] != 1:
        return None
    try:
        codec, pos = decode_uvarint(raw, 1)
        code, p = decode_uvarint(raw, pos)
        size, p = decode_uvarint(raw, p)
    except VarintError:
        return None
    if codec not in FAST_CODECS or FAST_HASHES.get(code) != size or len(raw) - p != size:
        return None
    return raw[pos:]


__all__ = ["FAST_CODECS", "FAST_HASHES", "text_multihash"]
