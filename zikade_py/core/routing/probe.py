"""The probe: periodic liveness checks of the nodes in the routing table.

Rules of the machine (read top to bottom as a table):

* Every node in the table has a next check due ``check_interval`` after it last
  proved alive: :class:`ProbeAdd` schedules it (only if it is in the table;
  :meth:`Probe.add` is the same without an advance, for verified adds); an
  unverified add (a replacement promoted from the cache, which may have gone
  stale while it waited) is due at once. A successful check or
  :class:`ProbeNotifyConnectivity` (any useful answer from it; or
  :meth:`Probe.seen`, the same without an advance, since it never creates
  work) pushes the next check out again. :class:`ProbeNotifyNonConnectivity`
  (a request to it failed) brings its check forward to now instead of
  evicting it on one failure.
* Due checks start in order of due time (ties: higher CPL first, the buckets
  with fewest alternatives), at most ``concurrency`` at a time. A check is a
  FIND_NODE for the node's own key with a deadline of ``now + timeout``.
* A check fails on an error, on an answer the table's one admission rule
  refuses (:meth:`~zikade_py.core.routing_table.RoutingTable.proves_useful`:
  no closer node once the table holds k nodes), or when its deadline passes.
  The probe never writes the table: a failed node is reported with
  :class:`ProbeNodeFailure`, the verdict the routing behaviour applies by
  evicting it. A timed out check is first announced with
  :class:`ProbeCancelCheck` so the driver cancels the request. Deadlines are
  evaluated on every ``advance``.
* :class:`ProbeCheckDropped` (our own admission control refused the check)
  says nothing about the node: it keeps its seat and its check is due again
  ``drop_retry_delay`` later.
* :class:`ProbeRemove` (the node left the table by another path) stops
  checking it, cancelling its check if one is in flight.
* Action states (check, cancel, failure) mean "advance me again"; waiting and
  idle states mean "nothing until an event or :meth:`next_due`".
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.event import Event, State
from zikade_py.core.key import Key
from zikade_py.core.routing_table import RoutingTable
from zikade_py.core.trace import NO_TRACE, Trace, earliest


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
    drop_retry_delay: float = 5.0
    """Seconds before a check refused by our own admission control is due again."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration the probe cannot run with."""
        if self.check_interval <= 0:
            raise ValueError("check_interval must be positive")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.drop_retry_delay <= 0:
            raise ValueError("drop_retry_delay must be positive")


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeAdd(Event):
    """``node`` entered the routing table: start checking it.

    ``verified`` is false for a node nobody heard from lately (a promoted
    replacement): its first check is due at once.
    """

    node: Key
    verified: bool = True


@dataclass(frozen=True, slots=True)
class ProbeRemove(Event):
    """``node`` left the table by another path: stop checking it."""

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
class ProbeCheckDropped(Event):
    """Our own admission control refused ``node``'s check: it keeps its seat, retry later."""

    node: Key


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
    | ProbeCheckDropped
    | ProbeNotifyConnectivity
    | ProbeNotifyNonConnectivity
    | ProbePoll
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeConnectivityCheck(State):
    """Send FIND_NODE(``target``) to ``node``; ``target`` is the node itself."""

    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class ProbeCancelCheck(State):
    """Cancel the request of ``node``'s check (timed out or node removed)."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeNodeFailure(State):
    """``node`` failed its check: the verdict is to evict it from the table."""

    node: Key


@dataclass(frozen=True, slots=True)
class ProbeWaitingAtCapacity(State):
    """``concurrency`` checks are in flight."""


@dataclass(frozen=True, slots=True)
class ProbeWaitingWithCapacity(State):
    """Checks are in flight, there is room, but no other check is due."""


@dataclass(frozen=True, slots=True)
class ProbeIdle(State):
    """No check in flight; :meth:`Probe.next_due` tells when the next one is due."""


_AT_CAPACITY = ProbeWaitingAtCapacity()
_WITH_CAPACITY = ProbeWaitingWithCapacity()
_IDLE = ProbeIdle()
"""The waiting states of untraced events (most are): immutable, so shared, not rebuilt."""

ProbeState = (
    ProbeConnectivityCheck
    | ProbeCancelCheck
    | ProbeNodeFailure
    | ProbeWaitingAtCapacity
    | ProbeWaitingWithCapacity
    | ProbeIdle
)


class Probe:
    """Schedules and runs liveness checks; reports the nodes that fail them."""

    def __init__(self, table: RoutingTable, config: ProbeConfig | None = None) -> None:
        """``table`` is only read (membership, CPLs); the routing behaviour writes it."""
        self.config = config or ProbeConfig()
        self.config.validate()
        self.table = table
        self._due: dict[Key, float] = {}
        # Lazy heap: every scheduled node has an entry due no later than _due[node];
        # pushing a check out only updates _due (an answer arrives with every
        # request, so that path must stay a dict write), and _peek_due re-files
        # entries that turn out early.
        self._heap: list[tuple[float, int, int, Key]] = []
        self._seq = 0
        self._checks: dict[Key, Trace] = {}
        self._pending: deque[ProbeState] = deque()

    def seen(self, node: Key, now: float) -> None:
        """``node`` proved alive at ``now``: :class:`ProbeNotifyConnectivity` without an advance.

        Pushing a check out never creates work (it cannot make a check due or a
        deadline pass), so there is no state to return; the routing behaviour
        applies it this way on its hottest path, every answer and every inbound
        request from a seated node. Same effect as advancing with the event.
        """
        if node not in self._checks and self.table.contains(node):
            self._schedule(node, now + self.config.check_interval)

    def add(self, node: Key, now: float) -> None:
        """``node`` entered the table verified: :class:`ProbeAdd` without an advance.

        Its first check is ``check_interval`` away, so adding it never creates
        work now (only :meth:`next_due` may move earlier, which the caller reads);
        the routing behaviour applies it this way for every node an answer seats.
        Same effect as advancing with ``ProbeAdd(node)``.
        """
        if node not in self._due and node not in self._checks and self.table.contains(node):
            self._schedule(node, now + self.config.check_interval)

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
            due = earliest(due, self._earliest_scheduled())
        return due

    def advance(self, event: ProbeEvent, now: float) -> ProbeState:
        """Apply ``event`` at ``now`` and return what the probe wants next."""
        cfg = self.config
        match event:  # most frequent first: every answer from a seated node
            case ProbeNotifyConnectivity(node=node):
                self.seen(node, now)
            case ProbePoll():
                pass
            case ProbeAdd(node=node, verified=verified):
                tracked = node in self._due or node in self._checks
                if not tracked and self.table.contains(node):
                    self._schedule(node, now + cfg.check_interval if verified else now)
            case ProbeRemove(node=node):
                self._due.pop(node, None)
                if self._checks.pop(node, None) is not None:
                    self._pending.append(ProbeCancelCheck(node, trace=event.trace))
            case ProbeCheckSuccess(node=node, closer_count=count):
                if self._checks.pop(node, None) is not None:
                    if not self.table.proves_useful(count):
                        self._fail(node, event.trace)
                    elif self.table.contains(node):
                        self._schedule(node, now + cfg.check_interval)
            case ProbeCheckFailure(node=node):
                if self._checks.pop(node, None) is not None:
                    self._fail(node, event.trace)
            case ProbeCheckDropped(node=node):
                if self._checks.pop(node, None) is not None and self.table.contains(node):
                    self._schedule(node, now + cfg.drop_retry_delay)
            case ProbeNotifyNonConnectivity(node=node):
                if node in self._due:
                    self._schedule(node, min(now, self._due[node]))
            case _:
                assert_never(event)
        self._expire(now)
        return self._next(now, event.trace)

    def _expire(self, now: float) -> None:
        expired = [node for node, trace in self._checks.items() if trace.expired(now)]
        for node in expired:
            trace = self._checks.pop(node)
            self._pending.append(ProbeCancelCheck(node, trace=trace))
            self._fail(node, trace)

    def _fail(self, node: Key, trace: Trace) -> None:
        self._due.pop(node, None)
        if self.table.contains(node):
            self._pending.append(ProbeNodeFailure(node, trace=trace))

    def _next(self, now: float, trace: Trace) -> ProbeState:
        if self._pending:
            return self._pending.popleft()
        cfg = self.config
        if len(self._checks) >= cfg.concurrency:
            return ProbeWaitingAtCapacity(trace=trace) if trace is not NO_TRACE else _AT_CAPACITY
        while True:
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
            if trace is NO_TRACE:
                return _WITH_CAPACITY
            return ProbeWaitingWithCapacity(trace=trace)
        return ProbeIdle(trace=trace) if trace is not NO_TRACE else _IDLE

    def _schedule(self, node: Key, due: float) -> None:
        old = self._due.get(node)
        self._due[node] = due
        if old is not None and old <= due:
            return  # its heap entry is early; _peek_due re-files it when it surfaces
        self._seq += 1
        heapq.heappush(self._heap, (due, -self.table.cpl(node), self._seq, node))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def _peek_due(self) -> float | None:
        """Due time of the first scheduled node, re-filing early and dropping stale entries."""
        heap = self._heap
        while heap:
            due, neg_cpl, _, node = heap[0]
            actual = self._due.get(node)
            if actual == due:
                return due
            if actual is not None and actual > due:
                self._seq += 1
                heapq.heapreplace(heap, (actual, neg_cpl, self._seq, node))
            else:
                heapq.heappop(heap)  # unscheduled, or a later duplicate of an earlier entry
        return None

    def _earliest_scheduled(self) -> float | None:
        """The heap's first due time, without touching the heap (for :meth:`next_due`).

        Every ``advance`` that leaves room for a check ends in :meth:`_peek_due`,
        which leaves the top entry exact; in between it is a lower bound, so at
        worst the probe is advanced early once.
        """
        return self._heap[0][0] if self._heap else None

    def _compact(self) -> None:
        self._heap = [
            (due, -self.table.cpl(node), i, node) for i, (node, due) in enumerate(self._due.items())
        ]
        heapq.heapify(self._heap)
