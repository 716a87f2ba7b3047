"""What the simulator needs from a coordinator, as a protocol.

The simulator drives :class:`zikade_py.core.coordinator.Coordinator`, but it
only relies on the sans-IO surface below (the driver contract of
:mod:`zikade_py.core.coordinator_events`), so tests can hand it a stand-in and
the engine never reaches into a coordinator's internals.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from zikade_py.core.coordinator_events import CoordinatorInput, CoordinatorOutput
from zikade_py.core.key import Key
from zikade_py.core.routing_table import AddResult


class RoutingTableView(Protocol):
    """The parts of a routing table the simulator reads (answers, prefill, metrics)."""

    def add(self, node: Key, now: float) -> object:
        """Put ``node`` in the table if its bucket has room (prefill)."""
        ...

    def nearest(self, target: Key, n: int, exclude: Key | None = None) -> list[Key]:
        """The ``n`` entries closest to ``target`` but ``exclude`` (a FIND_NODE answer)."""
        ...

    def would_add(self, node: Key) -> AddResult:
        """What adding ``node`` would do now, changing nothing."""
        ...

    def __len__(self) -> int: ...


class CoordinatorLike(Protocol):
    """A sans-IO coordinator: notify it, poll it dry, wake it at ``next_due``."""

    @property
    def routing_table(self) -> RoutingTableView:
        """The node's routing table."""
        ...

    def notify(self, event: CoordinatorInput, now: float) -> None:
        """Feed one input event."""
        ...

    def poll(self, now: float) -> CoordinatorOutput | None:
        """The next output, ``None`` when there is nothing to do at ``now``."""
        ...

    def next_due(self) -> float | None:
        """When the coordinator must be polled again even if nothing happens."""
        ...


CoordinatorFactory = Callable[[Key, random.Random, float], CoordinatorLike]
"""Builds the coordinator of one simulated node from its key, its seeded RNG and ``now``."""
