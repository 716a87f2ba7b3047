"""The blockstore contract, its accounting (size limit, pins, garbage collection), and the
in-memory store used by tests and ephemeral nodes.

A block is immutable bytes under a CID; stores key blocks by the CID's multihash
(:mod:`.cid`), so CIDv0 and CIDv1 of one block are one entry. Stores never
hash: whoever puts a block has checked it (the importer made the CID, the
exchange verified what it received).

**Pins** keep blocks from garbage collection. A pin is named by a root CID and
covers the CIDs given with it (``add`` pins every block of the DAG it made);
``put(..., pin=root)`` stores and pins in one step, so a collection started by
a concurrent put cannot take blocks between the two. A block is pinned while
any pin covers it.

**Size limit**: a put that would pass ``max_bytes`` first collects unpinned
blocks, oldest first; if that is not enough it raises
:class:`BlockstoreFullError` and stores nothing.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from zikade_py.blocks.cid import multihash_of


class BlockstoreFullError(Exception):
    """The block does not fit under the store's size limit, even after collecting garbage."""


@dataclass(frozen=True, slots=True)
class BlockstoreStat:
    """What ``zikade repo stat`` / ``block stat`` show about the store."""

    blocks: int
    bytes: int
    pinned_blocks: int
    pins: int
    max_bytes: int | None


@dataclass(frozen=True, slots=True)
class GcResult:
    """Blocks and bytes a collection removed."""

    blocks: int
    bytes: int


class Blockstore(Protocol):
    """Where blocks live (memory for tests, files under the repo for a node)."""

    async def get(self, cid: bytes) -> bytes | None:
        """The block's bytes, or ``None`` when we do not have it."""
        ...

    def has(self, cid: bytes) -> bool:
        """Whether the block is here (from the in-memory index: never waits)."""
        ...

    def size_of(self, cid: bytes) -> int | None:
        """The block's size if it is here (the engine answers HAVE with it)."""
        ...

    async def put(self, cid: bytes, data: bytes, *, pin: bytes | None = None) -> None:
        """Store a checked block (and add it to pin ``pin``)."""
        ...

    async def put_many(
        self, blocks: Sequence[tuple[bytes, bytes]], *, pin: bytes | None = None
    ) -> None:
        """Store several blocks in one step (one size check, one sync)."""
        ...

    async def delete(self, cid: bytes) -> bool:
        """Remove a block, pinned or not; whether it was here."""
        ...

    async def pin(self, root: bytes, cids: Iterable[bytes]) -> None:
        """Pin ``cids`` under the name ``root`` (adds to an existing pin of ``root``)."""
        ...

    async def unpin(self, root: bytes) -> bool:
        """Drop pin ``root``; its blocks become collectable unless another pin covers them."""
        ...

    def pins(self) -> list[bytes]:
        """Root CIDs of the pins."""
        ...

    def pinned_multihashes(self) -> list[bytes]:
        """Every multihash some pin covers (the blocks a node announces as provider)."""
        ...

    def is_pinned(self, cid: bytes) -> bool:
        """Whether some pin covers the block."""
        ...

    async def gc(self, target_bytes: int | None = None) -> GcResult:
        """Remove unpinned blocks, oldest first, until the store holds at most
        ``target_bytes`` (``None``: every unpinned block)."""
        ...

    def stat(self) -> BlockstoreStat:
        """Counts for status output."""
        ...

    async def close(self) -> None:
        """Release files; a closed store refuses further use."""
        ...


class PinIndex:
    """Pins and the per-block pin counts derived from them (shared by both stores)."""

    __slots__ = ("_counts", "_pins")

    def __init__(self) -> None:
        self._pins: dict[bytes, set[bytes]] = {}
        self._counts: dict[bytes, int] = {}

    def add(self, root: bytes, mhs: Iterable[bytes]) -> list[bytes]:
        """Pin multihashes ``mhs`` under ``root``; the ones newly added to that pin."""
        members = self._pins.setdefault(root, set())
        added = []
        for mh in mhs:
            if mh not in members:
                members.add(mh)
                self._counts[mh] = self._counts.get(mh, 0) + 1
                added.append(mh)
        return added

    def remove(self, root: bytes) -> bool:
        """Drop pin ``root``."""
        members = self._pins.pop(root, None)
        if members is None:
            return False
        for mh in members:
            left = self._counts[mh] - 1
            if left:
                self._counts[mh] = left
            else:
                del self._counts[mh]
        return True

    def roots(self) -> list[bytes]:
        """Every pin's root CID."""
        return list(self._pins)

    def members(self) -> list[bytes]:
        """Every multihash some pin covers (what a node provides under the ``pinned``
        strategy)."""
        return list(self._counts)

    def pinned(self, mh: bytes) -> bool:
        """Whether a pin covers multihash ``mh``."""
        return mh in self._counts

    def __len__(self) -> int:
        return len(self._pins)

    @property
    def pinned_blocks(self) -> int:
        """Distinct multihashes covered by some pin."""
        return len(self._counts)


class SizeIndex:
    """Which blocks a store holds, their sizes and age (GC order), and the total."""

    __slots__ = ("_order", "_seq", "_sizes", "total")

    def __init__(self) -> None:
        self._sizes: dict[bytes, int] = {}
        self._order: dict[bytes, int] = {}
        self._seq = itertools.count()
        self.total = 0

    def add(self, mh: bytes, size: int) -> bool:
        """Record a block; False if it was already there."""
        if mh in self._sizes:
            return False
        self._sizes[mh] = size
        self._order[mh] = next(self._seq)
        self.total += size
        return True

    def remove(self, mh: bytes) -> int | None:
        """Forget a block; its size, or None."""
        size = self._sizes.pop(mh, None)
        if size is not None:
            del self._order[mh]
            self.total -= size
        return size

    def size(self, mh: bytes) -> int | None:
        """A block's size if held."""
        return self._sizes.get(mh)

    def __len__(self) -> int:
        return len(self._sizes)

    def victims(self, pins: PinIndex, target: int | None, keep: set[bytes]) -> list[bytes]:
        """Unpinned blocks to remove, oldest first, to get the total to ``target``."""
        out: list[bytes] = []
        total = self.total
        for mh in sorted(self._order, key=self._order.__getitem__):
            if target is not None and total <= target:
                break
            if pins.pinned(mh) or mh in keep:
                continue
            out.append(mh)
            total -= self._sizes[mh]
        return out


def plan_put(
    sizes: SizeIndex,
    pins: PinIndex,
    max_bytes: int | None,
    blocks: Sequence[tuple[bytes, int]],
) -> list[bytes]:
    """Blocks to collect so that ``blocks`` (multihash, size) fit; raises when they cannot."""
    new = {mh: n for mh, n in blocks if sizes.size(mh) is None}
    if max_bytes is None:
        return []
    need = sizes.total + sum(new.values())
    if need <= max_bytes:
        return []
    victims = sizes.victims(pins, max_bytes - sum(new.values()), keep=set(new))
    freed = sum(sizes.size(mh) or 0 for mh in victims)
    if need - freed > max_bytes:
        raise BlockstoreFullError(
            f"blockstore full: {need - freed} bytes needed, limit {max_bytes}"
            " (unpin content or raise the limit)"
        )
    return victims


class IndexedBlockstore(abc.ABC):
    """The answers a blockstore gives from its size and pin indexes alone, shared by
    :class:`MemoryBlockstore` and :class:`~.filestore.FileBlockstore` so that the two
    cannot drift apart; subclasses hold the bytes and implement the writes."""

    __slots__ = ("_pins", "_sizes", "max_bytes")

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        """Size limit in bytes (``None``: unlimited)."""
        self._sizes = SizeIndex()
        self._pins = PinIndex()

    def size_of(self, cid: bytes) -> int | None:
        """See :class:`Blockstore`."""
        return self._sizes.size(multihash_of(cid))

    async def put(self, cid: bytes, data: bytes, *, pin: bytes | None = None) -> None:
        """See :class:`Blockstore`."""
        await self.put_many([(cid, data)], pin=pin)

    @abc.abstractmethod
    async def put_many(
        self, blocks: Sequence[tuple[bytes, bytes]], *, pin: bytes | None = None
    ) -> None:
        """See :class:`Blockstore`."""

    def pins(self) -> list[bytes]:
        """See :class:`Blockstore`."""
        return self._pins.roots()

    def pinned_multihashes(self) -> list[bytes]:
        """See :class:`Blockstore`."""
        return self._pins.members()

    def is_pinned(self, cid: bytes) -> bool:
        """See :class:`Blockstore`."""
        return self._pins.pinned(multihash_of(cid))

    def stat(self) -> BlockstoreStat:
        """See :class:`Blockstore`."""
        return BlockstoreStat(
            blocks=len(self._sizes),
            bytes=self._sizes.total,
            pinned_blocks=self._pins.pinned_blocks,
            pins=len(self._pins),
            max_bytes=self.max_bytes,
        )


class MemoryBlockstore(IndexedBlockstore):
    """Blocks in a dict: for tests, the simulator and ephemeral nodes."""

    __slots__ = ("_data",)

    def __init__(self, max_bytes: int | None = None) -> None:
        super().__init__(max_bytes)
        self._data: dict[bytes, bytes] = {}

    async def get(self, cid: bytes) -> bytes | None:
        """See :class:`Blockstore`."""
        return self._data.get(multihash_of(cid))

    def has(self, cid: bytes) -> bool:
        """See :class:`Blockstore`."""
        return multihash_of(cid) in self._data

    async def put_many(
        self, blocks: Sequence[tuple[bytes, bytes]], *, pin: bytes | None = None
    ) -> None:
        """See :class:`Blockstore`."""
        keyed = [(multihash_of(c), bytes(d)) for c, d in blocks]
        for mh in plan_put(self._sizes, self._pins, self.max_bytes,
                           [(mh, len(d)) for mh, d in keyed]):
            self._drop(mh)
        for mh, data in keyed:
            if self._sizes.add(mh, len(data)):
                self._data[mh] = data
        if pin is not None:
            self._pins.add(pin, (mh for mh, _ in keyed))

    def _drop(self, mh: bytes) -> int:
        self._data.pop(mh, None)
        return self._sizes.remove(mh) or 0

    async def delete(self, cid: bytes) -> bool:
        """See :class:`Blockstore`."""
        mh = multihash_of(cid)
        if self._sizes.remove(mh) is None:
            return False
        del self._data[mh]
        return True

    async def pin(self, root: bytes, cids: Iterable[bytes]) -> None:
        """See :class:`Blockstore`."""
        self._pins.add(root, [multihash_of(c) for c in cids])

    async def unpin(self, root: bytes) -> bool:
        """See :class:`Blockstore`."""
        return self._pins.remove(root)

    async def gc(self, target_bytes: int | None = None) -> GcResult:
        """See :class:`Blockstore`."""
        victims = self._sizes.victims(self._pins, target_bytes, keep=set())
        freed = sum(self._drop(mh) for mh in victims)
        return GcResult(len(victims), freed)

    async def close(self) -> None:
        """Nothing to release."""


__all__ = [
    "Blockstore",
    "BlockstoreFullError",
    "BlockstoreStat",
    "GcResult",
    "MemoryBlockstore",
    "PinIndex",
    "SizeIndex",
    "plan_put",
]
