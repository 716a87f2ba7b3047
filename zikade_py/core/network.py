"""Admission to the network: how many requests may be in flight, globally and per node.

The coordinator asks :meth:`Admission.admit` before emitting a request. A refusal
does not block or queue anything (DESIGN.md §2 rule 5): the coordinator turns it
into an ordinary failure event for the machine that wanted the request, with
the error :data:`DROPPED`, and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.core.key import Key

DROPPED = "dropped: network admission at capacity"
"""Error text of a request refused by admission."""


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Bounds on requests in flight."""

    max_in_flight: int = 512
    """Requests in flight across all nodes."""
    max_per_node: int = 8
    """Requests in flight to one node (several queries may ask it at once)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for bounds that admit nothing."""
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.max_per_node < 1:
            raise ValueError("max_per_node must be at least 1")


class Admission:
    """Counts requests in flight and refuses those over the bounds."""

    __slots__ = ("_per_node", "config", "dropped", "in_flight")

    def __init__(self, config: NetworkConfig | None = None) -> None:
        self.config = config or NetworkConfig()
        self.config.validate()
        self.in_flight = 0
        self.dropped = 0
        self._per_node: dict[int, int] = {}
        """Requests in flight by node (keyed by the key's int value: hashed in C)."""

    def admit(self, node: Key) -> bool:
        """Take a slot for a request to ``node``; ``False`` (and counted) when over a bound."""
        value = node.value
        count = self._per_node.get(value, 0)
        if self.in_flight >= self.config.max_in_flight or count >= self.config.max_per_node:
            self.dropped += 1
            return False
        self._per_node[value] = count + 1
        self.in_flight += 1
        return True

    def release(self, node: Key) -> None:
        """Give back the slot of a request that ended; idle nodes are forgotten."""
        value = node.value
        count = self._per_node.get(value, 0)
        if count <= 1:
            self._per_node.pop(value, None)
        else:
            self._per_node[value] = count - 1
        self.in_flight = max(0, self.in_flight - 1)

    def in_flight_to(self, node: Key) -> int:
        """Requests in flight to ``node``."""
        return self._per_node.get(node.value, 0)
