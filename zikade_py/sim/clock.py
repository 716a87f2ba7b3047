"""Virtual time: a clock that jumps from one scheduled event to the next.

The simulator never sleeps. Everything that will happen (a message arriving, a
coordinator's timer, the next lookup) is a record on one binary heap ordered by
``(time, seq)``; popping the earliest entry *is* the passage of time. ``seq`` is
a counter that breaks ties in scheduling order, so equal times never compare
the records and a run is fully reproducible.

Heap entries are ``(time, seq, record)``: the record is one of the named,
slotted classes of :mod:`zikade_py.sim.events`, so the engine dispatches on its
type and reads its fields by name.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from zikade_py.sim.events import SimEvent

Entry = tuple[float, int, SimEvent]
"""``(time, seq, record)``."""


class VirtualClock:
    """The current virtual time and the heap of everything scheduled after it."""

    __slots__ = ("heap", "next_seq", "now")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        """Virtual seconds; advanced only by :meth:`pop`."""
        self.heap: list[Entry] = []
        """The pending entries; hot loops may read ``heap[0]`` and pop with :meth:`pop`."""
        self.next_seq: Callable[[], int] = itertools.count(1).__next__
        """The next tie-breaking number. A hot loop that knows ``at >= now`` may push
        ``(at, next_seq(), record)`` onto :attr:`heap` itself, sparing the call."""

    def schedule(self, at: float, record: SimEvent) -> None:
        """Handle ``record`` at time ``at`` (clamped to now: the past cannot be scheduled)."""
        heapq.heappush(self.heap, (at if at > self.now else self.now, self.next_seq(), record))

    def peek(self) -> float | None:
        """Time of the earliest entry, ``None`` when nothing is scheduled."""
        return self.heap[0][0] if self.heap else None

    def pop(self) -> Entry:
        """Remove the earliest entry and move the clock to its time."""
        entry = heapq.heappop(self.heap)
        self.now = entry[0]
        return entry

    def advance_to(self, at: float) -> None:
        """Move the clock forward to ``at`` with nothing happening (never backwards)."""
        if at > self.now:
            self.now = at

    def __len__(self) -> int:
        return len(self.heap)
