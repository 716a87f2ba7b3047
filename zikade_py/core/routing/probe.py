"""The probe: periodic liveness checks of the nodes in the routing table.

Rules of the machine (read top to bottom as a table):

* Every node in the table has a next check due ``check_interval`` after it last
  proved alive: :class:`ProbeAdd` schedules it (only if it is in the table);
  a successful check or :class:`ProbeNotifyConnectivity` (any successful
  exchange with it) pushes the next check out again.
  :class:`ProbeNotifyNonConnectivity` (a request to it failed) brings its
  check forward to now instead of evicting it on one failure.
* Due checks start in order of due time (ties: higher CPL first, the buckets
  with fewest alternatives), at most ``concurrency`` at a time. A check is a
  FIND_NODE for the node's own key with a deadline of ``now + timeout``.
* A check fails on an error, on an answer without closer nodes, or when its
  deadline passes. A failed node is removed from the table and reported with
  :class:`ProbeNodeFailure`, which also names any replacement the table
  promoted into the free seat (those are scheduled like added nodes). A timed
  out check is first announced with :class:`ProbeCancelCheck` so the driver
  cancels the request. Deadlines are evaluated on every ``advance``.
* :class:`ProbeRemove` removes a node from the table and from the schedule at
  once (cancelling its check if one is in flight).
* Action states (check, cancel, failure) mean "advance me again"; waiting and
  idle states mean "nothing until an event or :meth:`next_due`".
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.event import Event
from zikade_py.core.key import Key
from zikade_py.core.routing_table import RoutingTable
from zikade_py.core.trace import Trace, earliest


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Knobs of the probe.

    ``check_interval`` is 10 minutes: the spec's refresh interval, in which it
    checks "peers not heard from recently", and js's ``LAST_PING_THRESHOLD``
    (WIRE.md §8.6, §8.10). zikade's 6 h left dead nodes in the table for hours
    (its own later branch cut it to 15 min); go evicts only after its ~86 min
    usefulness threshold. Nodes we talk to anyway are never probed, because
    every successful exchange pushes their check out, so the cost falls on
    idle entries only: about one FIND_NODE per entry per 10 minutes.
    """

    check_interval: float = 600.0
    """Seconds of silence after which a node's liveness is checked."""
    concurrency: int = 3
    """Checks in flight at once."""
    timeout: float = 10.0
    """Seconds a node has to answer its check (the per-request timeout, WIRE.md §9)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration the probe cannot run with."""
        if self.check_interval <= 0:
            raise ValueError("check_interval must be positive")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeAdd(Event):
    """``node`` entered the routing table: start checking it."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeRemove(Event):
    """Remove ``node`` from the table and stop checking it."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeCheckSuccess(Event):
    """``node`` answered its check with ``closer_count`` nodes."""

    node: Key
    closer_count: int


@dataclass(frozen=True, slots=True)
class ProbeCheckFailure(Event):
    """``node``'s check failed."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProbeNotifyConnectivity(Event):
    """An exchange with ``node`` succeeded: it is alive, push its next check out."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeNotifyNonConnectivity(Event):
    """A request to ``node`` failed: check it now rather than evict it on one failure."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbePoll(Event):
    """Advance on time alone."""


ProbeEvent = (
    ProbeAdd
    | ProbeRemove
    | ProbeCheckSuccess
    | ProbeCheckFailure
    | ProbeNotifyConnectivity
    | ProbeNotifyNonConnectivity
    | ProbePoll
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeConnectivityCheck(Event):
    """Send FIND_NODE(``target``) to ``node``; ``target`` is the node itself."""

    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class ProbeCancelCheck(Event):
    """Cancel the request of ``node``'s check (timed out or node removed)."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeNodeFailure(Event):
    """``node`` left the routing table; ``promoted`` replacements took its seat."""

    node: Key
    promoted: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeWaitingAtCapacity(Event):
    """``concurrency`` checks are in flight."""


@dataclass(frozen=True, slots=True)
class ProbeWaitingWithCapacity(Event):
    """Checks are in flight, there is room, but no other check is due."""


@dataclass(frozen=True, slots=True)
class ProbeIdle(Event):
    """No check in flight; :meth:`Probe.next_due` tells when the next one is due."""


ProbeState = (
    ProbeConnectivityCheck
    | ProbeCancelCheck
    | ProbeNodeFailure
    | ProbeWaitingAtCapacity
    | ProbeWaitingWithCapacity
    | ProbeIdle
)


class Probe:
    """Schedules and runs liveness checks; evicts nodes that fail them."""

    def __init__(self, table: RoutingTable, config: ProbeConfig | None = None) -> None:
        self.config = config or ProbeConfig()
        self.config.validate()
        self.table = table
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, int, int, Key]] = []
        self._seq = 0
        self._checks: dict[Key, Trace] = {}
        self._pending: deque[ProbeState] = deque()

    def scheduled(self, node: Key) -> float | None:
        """When ``node``'s next check is due; ``None`` if none is scheduled."""
        return self._due.get(node)

    def checking(self) -> list[Key]:
        """Nodes whose check is in flight."""
        return list(self._checks)

    def next_due(self) -> float | None:
        """The earliest check deadline, or the next check due if there is room to start it."""
        due: float | None = None
        for trace in self._checks.values():
            due = earliest(due, trace.deadline)
        if len(self._checks) < self.config.concurrency:
            due = earliest(due, self._peek_due())
        return due

    def advance(self, event: ProbeEvent, now: float) -> ProbeState:
        """Apply ``event`` at ``now`` and return what the probe wants next."""
        match event:
            case ProbePoll():
                pass
            case ProbeAdd(node=node):
                tracked = node in self._due or node in self._checks
                if not tracked and self.table.contains(node):
                    self._schedule(node, now + self.config.check_interval)
            case ProbeRemove(node=node):
                self._due.pop(node, None)
                check = self._checks.pop(node, None)
                if check is not None:
                    self._pending.append(ProbeCancelCheck(node, trace=event.trace))
                self._evict(node, now, event.trace)
            case ProbeCheckSuccess(node=node, closer_count=count):
                if self._checks.pop(node, None) is not None:
                    if count >= 1 and self.table.mark_seen(node, now):
                        self._schedule(node, now + self.config.check_interval)
                    elif count < 1:
                        self._evict(node, now, event.trace)
            case ProbeCheckFailure(node=node):
                if self._checks.pop(node, None) is not None:
                    self._evict(node, now, event.trace)
            case ProbeNotifyConnectivity(node=node):
                if self.table.mark_seen(node, now) and node not in self._checks:
                    self._schedule(node, now + self.config.check_interval)
            case ProbeNotifyNonConnectivity(node=node):
                if node in self._due:
                    self._schedule(node, min(now, self._due[node]))
            case _:
                assert_never(event)
        self._expire(now)
        return self._next(now, event.trace)

    def _expire(self, now: float) -> None:
        for node, trace in list(self._checks.items()):
            if trace.expired(now):
                del self._checks[node]
                self._pending.append(ProbeCancelCheck(node, trace=trace))
                self._evict(node, now, trace)

    def _evict(self, node: Key, now: float, trace: Trace) -> None:
        self._due.pop(node, None)
        if not self.table.remove(node):
            return
        promoted = tuple(self.table.take_promoted())
        for key in promoted:
            self._schedule(key, now + self.config.check_interval)
        self._pending.append(ProbeNodeFailure(node, promoted, trace=trace))

    def _next(self, now: float, trace: Trace) -> ProbeState:
        if self._pending:
            return self._pending.popleft()
        cfg = self.config
        if len(self._checks) >= cfg.concurrency:
            return ProbeWaitingAtCapacity(trace=trace)
        while self._heap:
            due = self._peek_due()
            if due is None or due > now:
                break
            node = heapq.heappop(self._heap)[3]
            del self._due[node]
            if not self.table.contains(node):
                continue  # left the table by another path; nothing to check
            check_trace = Trace(deadline=now + cfg.timeout)
            self._checks[node] = check_trace
            return ProbeConnectivityCheck(node, node, trace=check_trace)
        if self._checks:
            return ProbeWaitingWithCapacity(trace=trace)
        return ProbeIdle(trace=trace)

    def _schedule(self, node: Key, due: float) -> None:
        self._due[node] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, -self.table.cpl(node), self._seq, node))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def _peek_due(self) -> float | None:
        """Due time of the heap's first live entry, dropping stale entries on the way."""
        heap = self._heap
        while heap:
            due, _, _, node = heap[0]
            if self._due.get(node) == due:
                return due
            heapq.heappop(heap)
        return None

    def _compact(self) -> None:
        self._heap = [
            (due, -self.table.cpl(node), i, node) for i, (node, due) in enumerate(self._due.items())
        ]
        heapq.heapify(self._heap)
