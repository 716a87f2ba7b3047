"""The reprovide sweep's schedule: which regions are in the cycle, when each is due.

Rules (the sweep, :mod:`zikade_py.core.sweep`, asks; this answers):

* Each region has a slot in the ``interval`` cycle (its prefix XOR our key,
  evenly spread: :func:`~.sweep_region.slot_offset`), counted from the
  cycle's start (the moment the first region entered, or the start a restart
  restored).
* A region reprovided in full at ``t`` is next due at its first slot after
  ``t + interval / 2``; a new one at its first slot after it entered plus half
  an interval when its keys were just announced (a burst), else at its first
  slot from now. So a restored region whose slot passed while the node was
  down is due at once, before every region whose slot lies ahead: overdue
  regions go first.
* Regions never overlap: a new region is made longer while a scheduled one
  lies under it, and a restored region inside a scheduled one is skipped.
* Due regions come out of a heap in due order; stale heap entries (a region
  rescheduled or removed) are skipped, and a due region that is busy (being
  announced as a burst) is put back ``retry`` seconds later.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from zikade_py.core.key import KEY_BITS
from zikade_py.core.sweep_region import Region, next_slot, slot_offset
from zikade_py.core.trace import earliest

ScheduleRow = tuple[Region, float | None, float]
"""``(region, last full reprovide or None, time it entered)``: what is persisted."""


@dataclass(slots=True)
class Entry:
    """A scheduled region."""

    due: float
    last_done: float | None
    added: float


class Schedule:
    """The regions of the cycle and their due times (see the module docstring)."""

    def __init__(self, order: int, interval: float, max_bits: int) -> None:
        self._order = order
        self._interval = interval
        self._max_bits = max_bits
        self.cycle_start: float | None = None
        self.entries: dict[Region, Entry] = {}
        self._lengths: Counter[int] = Counter()
        self._ancestors: Counter[Region] = Counter()
        """For each prefix, how many scheduled regions lie strictly under it."""
        self._heap: list[tuple[float, int, Region]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self.entries)

    # -- placing regions ----------------------------------------------------------------------

    def region_of(self, value: int) -> Region | None:
        """The scheduled region holding the key value ``value``, if any."""
        for length in self._lengths:
            region = Region.of(value, length)
            if region in self.entries:
                return region
        return None

    def new_region(self, value: int, length: int) -> Region:
        """A region of ``length`` bits holding ``value``, longer if shorter would overlap."""
        region = Region.of(value, length)
        while self._ancestors.get(region, 0) and region.length < KEY_BITS:
            region = Region.of(value, region.length + 1)
        return region

    def add(
        self, region: Region, last_done: float | None, added: float, now: float, burst: bool
    ) -> None:
        """Put ``region`` in the cycle (see the module docstring for its due time)."""
        if self.cycle_start is None:
            self.cycle_start = now
        half = self._interval / 2
        if last_done is not None:
            due = self.slot(region, last_done + half)
        elif burst:
            due = self.slot(region, added + half)
        else:
            due = self.slot(region, now)
        self.entries[region] = Entry(due, last_done, added)
        self._lengths[region.length] += 1
        parent = region
        while parent.length > 0:
            parent = parent.parent()
            self._ancestors[parent] += 1
        self.push(region, due)

    def remove(self, region: Region) -> None:
        """Take ``region`` out of the cycle (its heap entries go stale)."""
        if self.entries.pop(region, None) is None:
            return
        self._lengths[region.length] -= 1
        if not self._lengths[region.length]:
            del self._lengths[region.length]
        parent = region
        while parent.length > 0:
            parent = parent.parent()
            self._ancestors[parent] -= 1
            if not self._ancestors[parent]:
                del self._ancestors[parent]

    def restore(self, cycle_start: float | None, rows: Iterable[ScheduleRow], now: float) -> None:
        """Take back a persisted schedule (regions overlapping a scheduled one are skipped)."""
        if cycle_start is not None:
            self.cycle_start = cycle_start
        for region, last_done, added in rows:
            if region in self.entries or self.region_of(region.lo) is not None:
                continue
            self.add(region, last_done, added, now, burst=True)

    def reschedule(
        self, wide: Region, parts: list[Region], filled: Collection[Region], now: float
    ) -> tuple[list[ScheduleRow], tuple[Region, ...], float | None]:
        """``wide`` was reprovided in full at ``now``: its ``parts`` that held keys take the
        place of every region it covers. Returns the rows added, the regions removed, and
        the earliest next due time among the parts."""
        removed: list[Region] = []
        for region in list(self.covered_by(wide)):
            self.remove(region)
            removed.append(region)
        added: list[ScheduleRow] = []
        first: float | None = None
        for part in parts:
            if part not in filled:
                continue  # no keys there: nothing to schedule
            self.add(part, now, now, now, burst=True)
            added.append((part, now, now))
            first = earliest(first, self.entries[part].due)
        kept = {p for p, _, _ in added}
        return added, tuple(r for r in removed if r not in kept), first

    def clear(self) -> None:
        """Forget every region (the cycle's start stays)."""
        self.entries.clear()
        self._lengths.clear()
        self._ancestors.clear()
        self._heap.clear()

    # -- questions ---------------------------------------------------------------------------

    def slot(self, region: Region, after: float) -> float:
        """``region``'s first slot not before ``after``."""
        assert self.cycle_start is not None
        offset = slot_offset(region, self._order, self._interval, self._max_bits)
        return next_slot(offset, self.cycle_start, self._interval, after)

    def covered_by(self, wide: Region) -> list[Region]:
        """The scheduled regions inside ``wide`` (or ``wide`` itself)."""
        if self._ancestors.get(wide, 0):
            return [r for r in self.entries if wide.covers(r)]
        return [wide] if wide in self.entries else []

    def recent_within(self, wide: Region, own: Region, now: float) -> bool:
        """Whether ``wide`` covers another scheduled region done less than half an interval
        ago (merging with it would announce its keys again long before they are due)."""
        half = self._interval / 2
        for region in self.covered_by(wide):
            if own.covers(region):
                continue
            last = self.entries[region].last_done
            if last is not None and now - last < half:
                return True
        return False

    def rows(self) -> list[tuple[Region, float, float | None]]:
        """Each scheduled region with its due time and last full reprovide, in due order."""
        rows = [(r, e.due, e.last_done) for r, e in self.entries.items()]
        return sorted(rows, key=lambda row: row[1])

    # -- the heap of due times ---------------------------------------------------------------

    def push(self, region: Region, due: float) -> None:
        """``region`` is due at ``due`` (an entry for the heap; earlier ones go stale)."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, region))

    def set_due(self, region: Region, due: float) -> None:
        """Move a scheduled region's due time."""
        self.entries[region].due = due
        self.push(region, due)

    def top(self) -> float | None:
        """The earliest due time in the heap (a valid one after :meth:`clean`)."""
        return self._heap[0][0] if self._heap else None

    def _valid(self, at: float, region: Region) -> bool:
        entry = self.entries.get(region)
        return entry is not None and entry.due == at

    def clean(self, now: float, busy: Collection[Region], retry: float) -> None:
        """Drop stale entries from the heap's top; push a busy due region back a little."""
        while self._heap:
            at, _, region = self._heap[0]
            if not self._valid(at, region):
                heapq.heappop(self._heap)
            elif at <= now and region in busy:
                heapq.heappop(self._heap)
                self.set_due(region, now + retry)
            else:
                return

    def pop_due(self, now: float, busy: Collection[Region], retry: float) -> Region | None:
        """The region due earliest if it is due by ``now`` (taken off the heap)."""
        while self._heap:
            at, _, region = self._heap[0]
            if not self._valid(at, region):
                heapq.heappop(self._heap)
                continue
            if at > now:
                return None
            heapq.heappop(self._heap)
            if region in busy:
                # Being announced right now (a burst): its turn comes after that.
                self.set_due(region, now + retry)
                continue
            return region
        return None


__all__ = ["Entry", "Schedule", "ScheduleRow"]
