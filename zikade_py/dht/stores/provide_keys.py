"""The keys we provide and the sweep's schedule, sorted by keyspace position.

The reprovide sweep (``core/sweep.py``) never holds all our keys: it asks for
one region's keys at a time, and a region is a contiguous range of the
keyspace. So the keys are stored by their position (the SHA-256 digest of the
multihash, 32 bytes big-endian, which sorts like the key's integer value) next
to the multihash that goes on the wire, and a region is read with one range
scan. A key still waiting for its first announcement is ``pending``: after a
crash the node announces those again soon instead of at their region's slot.

The schedule is one row per region (prefix bit string, last full reprovide,
time it was scheduled) and the cycle's start time, so a restarted node
resumes the cycle where it was (``SweepRestore``).

:class:`MemoryProvideKeys` serves nodes without a repo and tests; the SQLite
store (:mod:`.sqlite_provide`) has the same methods and does its work on the
datastore's writer and reader threads.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Protocol

from zikade_py.core.key import KEY_BITS

POSITION_BYTES = KEY_BITS // 8

KeyRow = tuple[bytes, bytes]
"""``(position, multihash)`` of a provided key."""

RegionRow = tuple[str, float | None, float]
"""``(prefix bits, last full reprovide or None, time scheduled)`` of a scheduled region."""


def position_bytes(value: int) -> bytes:
    """A keyspace position as the 32 bytes that sort like it."""
    return value.to_bytes(POSITION_BYTES, "big")


class ProvideKeyStore(Protocol):
    """Where the sweep's keys and schedule live (memory or the repo's SQLite file)."""

    async def add(self, rows: Sequence[KeyRow], pending: bool) -> list[KeyRow]:
        """Store the keys not stored yet; return those (the new ones)."""
        ...

    async def range(
        self, lo: int, hi: int, limit: int | None = None, pending: bool = False
    ) -> list[KeyRow]:
        """The keys with ``lo <= position < hi``, in position order, the first ``limit``
        of them; ``pending``: only those waiting for their first announcement."""
        ...

    async def count(self, pending: bool = False) -> int:
        """How many keys we provide (``pending``: how many wait for their first announcement)."""
        ...

    async def pending(self, limit: int) -> list[KeyRow]:
        """Up to ``limit`` keys still waiting for their first announcement."""
        ...

    async def mark_announced(self, positions: Sequence[bytes]) -> None:
        """These keys had their first announcement."""
        ...

    async def clear(self) -> int:
        """Forget every key and the schedule; how many keys there were."""
        ...

    async def save_schedule(
        self, cycle_start: float, added: Sequence[RegionRow], removed: Sequence[str]
    ) -> None:
        """Apply one change of the schedule."""
        ...

    async def load_schedule(self) -> tuple[float | None, list[RegionRow]]:
        """The cycle's start (``None``: never started) and every scheduled region."""
        ...


class MemoryProvideKeys:
    """:class:`ProvideKeyStore` in memory (lost at exit): a sorted list and two dicts."""

    __slots__ = ("_cycle_start", "_mh", "_pending", "_positions", "_regions")

    def __init__(self) -> None:
        self._positions: list[bytes] = []
        self._mh: dict[bytes, bytes] = {}
        self._pending: set[bytes] = set()
        self._regions: dict[str, tuple[float | None, float]] = {}
        self._cycle_start: float | None = None

    async def add(self, rows: Sequence[KeyRow], pending: bool) -> list[KeyRow]:
        """See :class:`ProvideKeyStore`."""
        new: list[KeyRow] = []
        for pos, mh in rows:
            if pos in self._mh:
                continue
            self._mh[pos] = mh
            bisect.insort(self._positions, pos)
            if pending:
                self._pending.add(pos)
            new.append((pos, mh))
        return new

    async def range(
        self, lo: int, hi: int, limit: int | None = None, pending: bool = False
    ) -> list[KeyRow]:
        """See :class:`ProvideKeyStore`."""
        i = bisect.bisect_left(self._positions, position_bytes(lo))
        j = (
            len(self._positions)
            if hi >= 1 << KEY_BITS
            else bisect.bisect_left(self._positions, position_bytes(hi))
        )
        out: list[KeyRow] = []
        for p in itertools.islice(self._positions, i, j):
            if limit is not None and len(out) >= limit:
                break
            if not pending or p in self._pending:
                out.append((p, self._mh[p]))
        return out

    async def count(self, pending: bool = False) -> int:
        """See :class:`ProvideKeyStore`."""
        return len(self._pending) if pending else len(self._positions)

    async def pending(self, limit: int) -> list[KeyRow]:
        """See :class:`ProvideKeyStore`."""
        return [(p, self._mh[p]) for p in sorted(self._pending)[:limit]]

    async def mark_announced(self, positions: Sequence[bytes]) -> None:
        """See :class:`ProvideKeyStore`."""
        self._pending.difference_update(positions)

    async def clear(self) -> int:
        """See :class:`ProvideKeyStore`."""
        n = len(self._positions)
        self._positions.clear()
        self._mh.clear()
        self._pending.clear()
        self._regions.clear()
        self._cycle_start = None
        return n

    async def save_schedule(
        self, cycle_start: float, added: Sequence[RegionRow], removed: Sequence[str]
    ) -> None:
        """See :class:`ProvideKeyStore`."""
        self._cycle_start = cycle_start
        for prefix in removed:
            self._regions.pop(prefix, None)
        for prefix, last, when in added:
            self._regions[prefix] = (last, when)

    async def load_schedule(self) -> tuple[float | None, list[RegionRow]]:
        """See :class:`ProvideKeyStore`."""
        return self._cycle_start, [(p, last, when) for p, (last, when) in self._regions.items()]


__all__ = [
    "POSITION_BYTES",
    "KeyRow",
    "MemoryProvideKeys",
    "ProvideKeyStore",
    "RegionRow",
    "position_bytes",
]
