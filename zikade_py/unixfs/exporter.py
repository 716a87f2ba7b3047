"""UnixFS files back to bytes: walk the DAG in order, streaming, from any block source.

The walker does not fetch by itself: a :class:`BlockSource` hands it the blocks of
a list of CIDs, in order. Locally that is the blockstore; over the network it is
a Bitswap session that asks for the whole list at once (all children of a node
are wanted together) and yields them in order as they arrive, so a ``cat``
keeps many blocks in flight while the reader sees one ordered stream.

Sources check every block against its CID before handing it over; the walker
checks the structure: dag-pb nodes must be UnixFS files (or raw), the DAG no
deeper than :data:`MAX_DEPTH`, and the bytes produced must add up to the sizes
the nodes claim.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from zikade_py.blocks import cid as cids
from zikade_py.blocks.store import Blockstore
from zikade_py.unixfs import dagpb
from zikade_py.unixfs.pb import unixfs_pb2

MAX_DEPTH: Final = 64
"""Deepest DAG we walk (a balanced tree of 174 links is 5 deep at 1 PiB)."""


class NotAFileError(ValueError):
    """The CID names a directory, a symlink or something that is not UnixFS."""


class CorruptDagError(ValueError):
    """The DAG's structure is broken: bad dag-pb, sizes that do not add up, too deep."""


class BlockNotFoundError(LookupError):
    """A block of the DAG could not be found (locally, or by the network source)."""


class BlockSource(Protocol):
    """Blocks by CID, in the order asked (checked against their CIDs)."""

    def fetch(self, cids: Sequence[bytes]) -> AsyncIterator[bytes]:
        """The blocks of ``cids`` in order; raises :class:`BlockNotFoundError` if one is lost."""
        ...


class StoreSource:
    """A :class:`BlockSource` over a local blockstore only."""

    __slots__ = ("_store",)

    def __init__(self, store: Blockstore) -> None:
        self._store = store

    async def fetch(self, cids: Sequence[bytes]) -> AsyncIterator[bytes]:
        """See :class:`BlockSource`."""
        for cid in cids:
            data = await self._store.get(cid)
            if data is None:
                raise BlockNotFoundError(f"block {cids_str(cid)} not in the blockstore")
            yield data


def cids_str(cid: bytes) -> str:
    """A CID for an error message (never fails)."""
    try:
        return cids.to_str(cid)
    except Exception:
        return cid.hex()


def decode_file_node(data: bytes) -> tuple[dagpb.PBNode, unixfs_pb2.Data]:
    """A dag-pb node and its UnixFS data; raises unless it is a UnixFS file or raw node."""
    try:
        node = dagpb.decode(data)
        if node.data is None:
            raise CorruptDagError("dag-pb node without UnixFS data")
        meta = unixfs_pb2.Data.FromString(node.data)
    except (dagpb.DagPBError, DecodeError) as exc:
        raise CorruptDagError(f"not a UnixFS node: {exc}") from None
    if meta.Type not in (unixfs_pb2.Data.File, unixfs_pb2.Data.Raw):
        kind = unixfs_pb2.Data.DataType.Name(meta.Type)
        raise NotAFileError(f"not a file but a UnixFS {kind} (directories are not supported yet)")
    return node, meta


async def cat(root: bytes, source: BlockSource) -> AsyncGenerator[bytes, None]:
    """The bytes of the file at ``root``, chunk by chunk, in order."""
    async for chunk in _walk([root], source, 0, None):
        yield chunk


async def _walk(
    level: Sequence[bytes], source: BlockSource, depth: int, sizes: Sequence[int] | None
) -> AsyncIterator[bytes]:
    if depth > MAX_DEPTH:
        raise CorruptDagError(f"DAG deeper than {MAX_DEPTH}")
    index = 0
    async for data in source.fetch(level):
        cid = level[index]
        expected = sizes[index] if sizes is not None else None
        index += 1
        produced = 0
        codec = cids.codec_of(cid)
        if codec == cids.RAW:
            produced = len(data)
            yield data
        elif codec == cids.DAG_PB:
            node, meta = decode_file_node(data)
            if meta.data:
                produced += len(meta.data)
                yield meta.data
            children = [link.hash for link in node.links]
            blocksizes = list(meta.blocksizes)
            if children:
                if len(blocksizes) != len(children):
                    raise CorruptDagError("blocksizes and links differ in number")
                async for chunk in _walk(children, source, depth + 1, blocksizes):
                    produced += len(chunk)
                    yield chunk
            if meta.HasField("filesize") and meta.filesize != produced:
                raise CorruptDagError(
                    f"node {cids_str(cid)} claims {meta.filesize} bytes, has {produced}"
                )
        else:
            raise NotAFileError(f"{cids_str(cid)}: codec 0x{codec:x} is not UnixFS")
        if expected is not None and expected != produced:
            raise CorruptDagError(f"{cids_str(cid)}: parent says {expected} bytes, has {produced}")


async def file_size(root: bytes, source: BlockSource) -> int:
    """The size of the file at ``root`` from its root block alone."""
    async for data in source.fetch([root]):
        if cids.codec_of(root) == cids.RAW:
            return len(data)
        _, meta = decode_file_node(data)
        return meta.filesize if meta.HasField("filesize") else len(meta.data)
    raise BlockNotFoundError(cids_str(root))


__all__ = [
    "MAX_DEPTH",
    "BlockNotFoundError",
    "BlockSource",
    "CorruptDagError",
    "NotAFileError",
    "StoreSource",
    "cat",
    "decode_file_node",
    "file_size",
]
