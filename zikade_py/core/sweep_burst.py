"""New keys waiting for their first announcement, counted per region (the sweep's burst).

A node handed a million keys at once must not hold them: the driver stores
them as *pending*, and the sweep (:mod:`zikade_py.core.sweep`) keeps only this
queue — how many new keys wait in each region and when the region's burst is
due (``burst_delay`` after its last keys came, so keys arriving together go
out together). When a burst is due, the sweep reads the region's pending keys
back from the driver a page at a time. The region with the most waiting keys
goes first; a region busy with an announcement waits until it is done.
Counts are estimates (a key read back twice is counted twice): they order the
work and feed the statistics, the store says what is really pending.
"""

from __future__ import annotations

from collections.abc import Collection

from zikade_py.core.sweep_region import Region


class BurstQueue:
    """Regions with new keys, how many, and when their burst is due."""

    __slots__ = ("_at", "_count")

    def __init__(self) -> None:
        self._count: dict[Region, int] = {}
        self._at: dict[Region, float] = {}

    def __len__(self) -> int:
        return len(self._count)

    def add(self, region: Region, count: int, at: float) -> None:
        """``count`` more new keys in ``region``; its burst is due at ``at`` or later."""
        self._count[region] = self._count.get(region, 0) + count
        self._at[region] = max(self._at.get(region, at), at)

    def take(self, now: float, busy: Collection[Region]) -> tuple[Region, int] | None:
        """The due region (not busy) with the most new keys, and their count; dequeued."""
        ready = [r for r, at in self._at.items() if at <= now and r not in busy]
        if not ready:
            return None
        region = max(ready, key=lambda r: self._count[r])
        count = self._count.pop(region)
        del self._at[region]
        return region, count

    def next_at(self, busy: Collection[Region]) -> float | None:
        """When the next burst of a region not busy is due."""
        waiting = [at for r, at in self._at.items() if r not in busy]
        return min(waiting) if waiting else None

    def keys(self) -> int:
        """New keys waiting in all regions."""
        return sum(self._count.values())

    def clear(self) -> None:
        """Forget every waiting burst."""
        self._count.clear()
        self._at.clear()


__all__ = ["BurstQueue"]
