"""The dag-pb codec (ipld/specs block-layer/codecs/dag-pb.md), written out by hand.

A generic protobuf encoder writes fields in field-number order, which would put
``Data`` (1) before ``Links`` (2); dag-pb requires the links first, then the data,
and decoders must refuse anything else (other orders, unknown fields, a link
without a hash). Since the bytes decide the CID, this module is exact on both
sides and refuses rather than guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.p2p.varint import VarintError, decode_uvarint, encode_uvarint


class DagPBError(ValueError):
    """Bytes that are not a canonical dag-pb node."""


@dataclass(frozen=True, slots=True)
class PBLink:
    """A named, sized link to another block (``name``/``tsize`` may be absent)."""

    hash: bytes
    """The linked block's CID, binary."""
    name: str | None = None
    tsize: int | None = None
    """Cumulative size of the linked DAG (its block plus everything below)."""


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links, then optional data (UnixFS puts its metadata there)."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _field(number: int, wire_type: int) -> bytes:
    return encode_uvarint(number << 3 | wire_type)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _field(number, 2) + encode_uvarint(len(value)) + value


def encode_link(link: PBLink) -> bytes:
    """One PBLink message: Hash (1), Name (2, if set, even empty), Tsize (3, if set)."""
    out = _bytes_field(1, link.hash)
    if link.name is not None:
        out += _bytes_field(2, link.name.encode())
    if link.tsize is not None:
        out += _field(3, 0) + encode_uvarint(link.tsize)
    return out


def encode(node: PBNode) -> bytes:
    """The canonical bytes of ``node``: every link (field 2) first, then Data (field 1)."""
    parts = [_bytes_field(2, encode_link(link)) for link in node.links]
    if node.data is not None:
        parts.append(_bytes_field(1, node.data))
    return b"".join(parts)


def _read_field(buf: bytes, pos: int) -> tuple[int, int, int]:
    key, pos = decode_uvarint(buf, pos)
    return key >> 3, key & 7, pos


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = decode_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise DagPBError("length runs past the end")
    return buf[pos:end], end


def decode_link(buf: bytes) -> PBLink:
    """A PBLink, fields in order 1, 2, 3, each at most once, Hash required."""
    pos, last = 0, 0
    hash_: bytes | None = None
    name: str | None = None
    tsize: int | None = None
    while pos < len(buf):
        number, wire, pos = _read_field(buf, pos)
        if number <= last:
            raise DagPBError("link fields out of order or repeated")
        last = number
        if number == 1 and wire == 2:
            hash_, pos = _read_bytes(buf, pos)
        elif number == 2 and wire == 2:
            raw, pos = _read_bytes(buf, pos)
            try:
                name = raw.decode()
            except UnicodeDecodeError:
                raise DagPBError("link name is not UTF-8") from None
        elif number == 3 and wire == 0:
            tsize, pos = decode_uvarint(buf, pos)
        else:
            raise DagPBError(f"unexpected link field {number} (wire type {wire})")
    if hash_ is None:
        raise DagPBError("link without a hash")
    return PBLink(hash_, name, tsize)


def decode(buf: bytes) -> PBNode:
    """Strict decode: links (field 2) first, then at most one Data (field 1), nothing else."""
    links: list[PBLink] = []
    data: bytes | None = None
    pos = 0
    try:
        while pos < len(buf):
            number, wire, pos = _read_field(buf, pos)
            if wire != 2:
                raise DagPBError(f"field {number} has wire type {wire}")
            value, pos = _read_bytes(buf, pos)
            if number == 2:
                if data is not None:
                    raise DagPBError("a link after Data")
                links.append(decode_link(value))
            elif number == 1:
                if data is not None:
                    raise DagPBError("Data twice")
                data = value
            else:
                raise DagPBError(f"unknown field {number}")
    except VarintError as exc:
        raise DagPBError(f"bad varint: {exc}") from None
    return PBNode(tuple(links), data)


__all__ = ["DagPBError", "PBLink", "PBNode", "decode", "decode_link", "encode", "encode_link"]
