"""Files to UnixFS DAGs, byte-for-byte as ``ipfs-unixfs-importer`` builds them.

The settings that decide a root CID are a :class:`Profile`: chunk size, links
per node, raw leaves and CID version. Two profiles exist:

* ``default`` — ``ipfs-unixfs-importer``'s defaults (and Kubo's with
  ``--cid-version=1``): 256 KiB chunks, 174 links, raw leaves, CIDv1;
* ``unixfs-v1-2025`` — what ``@helia/unixfs`` uses by default now: 1 MiB chunks,
  1024 links, raw leaves, CIDv1.

The layout is the importer's *balanced* one: chunks become raw leaves; every run
of ``max_links`` consecutive nodes of a level gets a parent (the last run may be
shorter, even a single node); levels are built until one node is left. A file
of a single chunk is that raw leaf (an empty file is the raw block of no
bytes). A parent is a dag-pb node whose links are nameless (``Name: ""``) and
carry the child's cumulative size, and whose UnixFS data is
``{Type: File, filesize, blocksizes}`` (unpacked varints).

The builder is streaming: levels keep at most ``max_links`` pending nodes each,
and a run is reduced as soon as it is complete, which gives the same grouping
as the reference's level-by-level batching. Memory stays at one chunk plus a
few link lists, whatever the file size.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from zikade_py.blocks import cid as cids
from zikade_py.unixfs import dagpb
from zikade_py.unixfs.pb import unixfs_pb2


@dataclass(frozen=True, slots=True)
class Profile:
    """Import settings that decide the root CID."""

    name: str
    chunk_size: int
    max_links: int
    raw_leaves: bool = True
    cid_version: int = 1

    def validate(self) -> None:
        """Refuse settings the builder does not implement."""
        if self.chunk_size < 1 or self.chunk_size > 2 * 1024 * 1024:
            raise ValueError("chunk size must be 1 B … 2 MiB (peers refuse bigger blocks)")
        if self.max_links < 2:
            raise ValueError("a node needs room for at least two links")
        if not self.raw_leaves or self.cid_version != 1:
            raise ValueError("only raw leaves with CIDv1 are implemented")


DEFAULT_PROFILE: Final = Profile("default", 262_144, 174)
"""ipfs-unixfs-importer's defaults (= Kubo ``--cid-version=1``)."""
HELIA_2025_PROFILE: Final = Profile("unixfs-v1-2025", 1_048_576, 1024)
"""@helia/unixfs's default (ipfs-unixfs-importer ``profile: 'unixfs-v1-2025'``)."""
PROFILES: Final = {p.name: p for p in (DEFAULT_PROFILE, HELIA_2025_PROFILE)}
"""Profiles by the name ``--profile`` takes."""


@dataclass(frozen=True, slots=True)
class Block:
    """A block the importer made: its CID and bytes."""

    cid: bytes
    data: bytes


@dataclass(slots=True)
class _Node:
    cid: bytes
    tsize: int
    """Cumulative size: the block and everything below it."""
    filesize: int
    """File bytes under this node."""


@dataclass(slots=True)
class _Builder:
    profile: Profile
    levels: list[list[_Node]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    """Nodes ever placed on each level (the reference recurses only past 1)."""
    leaves: int = 0

    def _place(self, level: int, node: _Node) -> Iterator[Block]:
        while len(self.levels) <= level:
            self.levels.append([])
            self.counts.append(0)
        self.levels[level].append(node)
        self.counts[level] += 1
        if len(self.levels[level]) == self.profile.max_links:
            run, self.levels[level] = self.levels[level], []
            yield from self._parent(level + 1, run)

    def _parent(self, level: int, children: list[_Node]) -> Iterator[Block]:
        data = unixfs_pb2.Data(Type=unixfs_pb2.Data.File)
        links = []
        for child in children:
            if child.filesize == 0:  # the reference drops empty children
                continue
            data.blocksizes.append(child.filesize)
            links.append(dagpb.PBLink(child.cid, "", child.tsize))
        filesize = sum(data.blocksizes)
        data.filesize = filesize
        block = dagpb.encode(dagpb.PBNode(tuple(links), data.SerializeToString()))
        cid = cids.make(block, cids.DAG_PB)
        yield Block(cid, block)
        yield from self._place(
            level, _Node(cid, len(block) + sum(link.tsize or 0 for link in links), filesize)
        )

    def leaf(self, chunk: bytes) -> Iterator[Block]:
        cid = cids.make(chunk, cids.RAW)
        self.leaves += 1
        yield Block(cid, chunk)
        yield from self._place(0, _Node(cid, len(chunk), len(chunk)))

    def finish(self) -> Iterator[Block]:
        """Reduce the partial runs bottom-up; the last block yielded is the root."""
        if self.leaves == 1:
            return  # a single chunk is its own root (already yielded)
        level = 0
        while True:
            pending = self.levels[level]
            if self.counts[level] == 1 and level + 1 >= len(self.levels):
                return  # this level's only node is the root, already yielded
            if pending:
                self.levels[level] = []
                yield from self._parent(level + 1, pending)
            level += 1
            if level >= len(self.levels):
                return


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    """Fixed-size chunks; an empty input is one empty chunk (as the reference chunker)."""
    if not data:
        yield b""
        return
    for i in range(0, len(data), size):
        yield data[i : i + size]


def import_chunks(chunks: Iterable[bytes], profile: Profile = DEFAULT_PROFILE) -> Iterator[Block]:
    """Blocks of a file given as chunks of ``profile.chunk_size`` (the last may be shorter);
    the last block is the root."""
    profile.validate()
    builder = _Builder(profile)
    any_chunk = False
    for chunk in chunks:
        any_chunk = True
        yield from builder.leaf(chunk)
    if not any_chunk:
        yield from builder.leaf(b"")
    yield from builder.finish()


def import_bytes(data: bytes, profile: Profile = DEFAULT_PROFILE) -> list[Block]:
    """Every block of ``data``'s DAG; the root is last."""
    return list(import_chunks(chunks_of(data, profile.chunk_size), profile))


class Rechunker:
    """Turns reads of any size into chunks of exactly ``size`` bytes (the last shorter)."""

    __slots__ = ("_buf", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Whole chunks now available."""
        self._buf += data
        while len(self._buf) >= self.size:
            yield bytes(self._buf[: self.size])
            del self._buf[: self.size]

    def rest(self) -> bytes:
        """The final partial chunk (possibly empty)."""
        out, self._buf = bytes(self._buf), bytearray()
        return out


async def import_stream(
    reads: AsyncIterable[bytes], profile: Profile = DEFAULT_PROFILE
) -> AsyncIterator[Block]:
    """Blocks of a file read as a stream of byte strings of any size; the root is last."""
    profile.validate()
    builder = _Builder(profile)
    chunker = Rechunker(profile.chunk_size)
    for_leaf = 0
    async for data in reads:
        for chunk in chunker.feed(data):
            for_leaf += 1
            for block in builder.leaf(chunk):
                yield block
    rest = chunker.rest()
    if rest or for_leaf == 0:
        for block in builder.leaf(rest):
            yield block
    for block in builder.finish():
        yield block


__all__ = [
    "DEFAULT_PROFILE",
    "HELIA_2025_PROFILE",
    "PROFILES",
    "Block",
    "Profile",
    "Rechunker",
    "chunks_of",
    "import_bytes",
    "import_chunks",
    "import_stream",
]
