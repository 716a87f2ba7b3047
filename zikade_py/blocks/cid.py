"""CIDs as bytes: parse, build, verify (the block layer's view of content addresses).

``multiformats.CID`` parses text and prints CIDs, but it costs hundreds of
microseconds per call; the exchange handles thousands of CIDs a second, so the
hot paths work on the CID's binary form with the few varint reads below, and
``multiformats`` is used only at the edges (user input, printing).

Blocks are keyed by their **multihash** (as boxo and Helia do): a CIDv0 and a
CIDv1 of the same bytes name the same block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from multiformats import CID

from zikade_py.p2p.varint import VarintError, decode_uvarint, encode_uvarint

RAW: Final = 0x55
"""Multicodec of a raw block (UnixFS raw leaves)."""
DAG_PB: Final = 0x70
"""Multicodec of a dag-pb node (UnixFS files and directories)."""
SHA2_256: Final = 0x12
"""Multihash code of SHA2-256, the default everywhere."""
IDENTITY: Final = 0x00
"""Multihash code whose digest is the data itself (no block needs to travel)."""

MAX_DIGEST: Final = 128
"""Longest digest we accept in a CID (identity CIDs above this are refused)."""

_HASHES: Final[dict[int, Callable[[bytes], bytes]]] = {
    SHA2_256: lambda d: hashlib.sha256(d).digest(),
    0x13: lambda d: hashlib.sha512(d).digest(),
    0x16: lambda d: hashlib.sha3_256(d).digest(),
    0x14: lambda d: hashlib.sha3_512(d).digest(),
    0xB220: lambda d: hashlib.blake2b(d, digest_size=32).digest(),
    IDENTITY: lambda d: bytes(d),
}


class InvalidCIDError(ValueError):
    """Bytes or text that are not a CID we can use."""


class UnsupportedHashError(InvalidCIDError):
    """A CID whose multihash function we cannot compute (so its blocks cannot be checked)."""


def parse(cid: bytes) -> tuple[int, int, bytes]:
    """``(version, codec, multihash)`` of binary ``cid``; raises :class:`InvalidCIDError`."""
    try:
        if len(cid) == 34 and cid[0] == SHA2_256 and cid[1] == 32:
            return 0, DAG_PB, bytes(cid)
        version, pos = decode_uvarint(cid)
        if version != 1:
            raise InvalidCIDError(f"CID version {version}")
        codec, pos = decode_uvarint(cid, pos)
        mh = bytes(cid[pos:])
        code, p = decode_uvarint(mh)
        size, p = decode_uvarint(mh, p)
    except VarintError as exc:
        raise InvalidCIDError(f"bad CID bytes: {exc}") from None
    if size > MAX_DIGEST or len(mh) - p != size:
        raise InvalidCIDError("multihash length does not match its digest")
    del code
    return 1, codec, mh


def multihash_of(cid: bytes) -> bytes:
    """The multihash inside binary ``cid`` (the block key)."""
    return parse(cid)[2]


def codec_of(cid: bytes) -> int:
    """The multicodec of binary ``cid`` (dag-pb for every CIDv0)."""
    return parse(cid)[1]


def to_bytes(cid: str | bytes | CID) -> bytes:
    """Binary form of a CID given as text, bytes or ``multiformats.CID`` (checked)."""
    if isinstance(cid, bytes):
        parse(cid)
        return cid
    if isinstance(cid, str):
        try:
            cid = CID.decode(cid.strip())
        except Exception as exc:  # multiformats raises several unrelated error types
            raise InvalidCIDError(f"not a CID: {cid!r}: {exc}") from None
    out = bytes(cid)
    parse(out)
    return out


def to_str(cid: bytes) -> str:
    """Text form: base58btc for CIDv0, base32 for CIDv1 (as Kubo and Helia print them)."""
    parsed = CID.decode(cid)
    return str(parsed if parsed.version == 0 else parsed.set(base="base32"))


def digest(code: int, data: bytes) -> bytes:
    """The multihash of ``data`` with function ``code``."""
    fn = _HASHES.get(code)
    if fn is None:
        raise UnsupportedHashError(f"unsupported multihash function 0x{code:x}")
    d = fn(data)
    return encode_uvarint(code) + encode_uvarint(len(d)) + d


def make(data: bytes, codec: int = RAW, *, version: int = 1, hash_code: int = SHA2_256) -> bytes:
    """The CID of ``data`` (a CIDv0 only for dag-pb with SHA2-256)."""
    mh = digest(hash_code, data)
    if version == 0:
        if codec != DAG_PB or hash_code != SHA2_256:
            raise InvalidCIDError("CIDv0 is dag-pb with sha2-256 only")
        return mh
    return encode_uvarint(1) + encode_uvarint(codec) + mh


def verify(cid: bytes, data: bytes) -> bool:
    """Whether ``data`` hashes to ``cid``'s multihash (every received block is checked)."""
    mh = multihash_of(cid)
    code, _ = decode_uvarint(mh)
    try:
        return digest(code, data) == mh
    except UnsupportedHashError:
        return False


def prefix(cid: bytes) -> bytes:
    """Bitswap 1.1's CID prefix: version, codec, hash function and digest length as varints."""
    version, codec, mh = parse(cid)
    code, p = decode_uvarint(mh)
    size, _ = decode_uvarint(mh, p)
    return b"".join(encode_uvarint(v) for v in (version, codec, code, size))


def from_prefix(pfx: bytes, data: bytes) -> bytes:
    """The CID a bitswap payload block claims: ``pfx`` applied to ``data``'s hash."""
    try:
        version, pos = decode_uvarint(pfx)
        codec, pos = decode_uvarint(pfx, pos)
        code, pos = decode_uvarint(pfx, pos)
        size, pos = decode_uvarint(pfx, pos)
    except VarintError as exc:
        raise InvalidCIDError(f"bad CID prefix: {exc}") from None
    if pos != len(pfx):
        raise InvalidCIDError("trailing bytes after the CID prefix")
    mh = digest(code, data)
    _, p = decode_uvarint(mh)
    actual, _ = decode_uvarint(mh, p)
    if actual != size:  # truncated digests are not supported
        raise InvalidCIDError("CID prefix digest length differs from the hash function's")
    if version == 0:
        if codec != DAG_PB or code != SHA2_256:
            raise InvalidCIDError("CIDv0 prefix must be dag-pb/sha2-256")
        return mh
    if version != 1:
        raise InvalidCIDError(f"CID version {version}")
    return encode_uvarint(1) + encode_uvarint(codec) + mh


__all__ = [
    "DAG_PB",
    "IDENTITY",
    "RAW",
    "SHA2_256",
    "InvalidCIDError",
    "UnsupportedHashError",
    "codec_of",
    "digest",
    "from_prefix",
    "make",
    "multihash_of",
    "parse",
    "prefix",
    "to_bytes",
    "to_str",
    "verify",
]
