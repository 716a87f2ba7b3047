"""The include queue: candidates prove themselves before they enter the table.

Rules of the machine (read top to bottom as a table):

* :class:`IncludeAddCandidate` queues a node (FIFO, unique, at most
  ``queue_capacity``) only if it would take a free seat in the table: self,
  nodes already present, nodes the filter refuses and nodes whose bucket is
  full are ignored (a full bucket's replacement cache is fed by nodes that
  answer our requests, which proved themselves already). Candidates already
  queued or being checked are ignored.
  A full queue drops the candidate (counted in :attr:`IncludeStats.dropped`).
* A check is a FIND_NODE for the candidate's own key, sent to the candidate,
  at most ``concurrency`` at a time, each with a deadline of
  ``now + check_timeout`` (zikade had none, ZIKADE.md §10).
* :class:`IncludeCheckSuccess` with at least one closer node adds the node to
  the table (→ :class:`IncludeRoutingUpdated`); a full bucket parks it in the
  replacement cache instead. An answer with no closer node counts as a failure:
  a node that knows nobody cannot help a lookup.
* Every ``advance`` first expires checks whose deadline has passed: each is
  failed and announced with :class:`IncludeCancelCheck` so the driver can
  cancel the request — below capacity as well as at capacity.
* Action states (check, cancel, routing updated) mean "advance me again";
  waiting and idle states mean "nothing until an event or :meth:`next_due`".
* Late or unknown answers are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.event import Event
from zikade_py.core.key import Key
from zikade_py.core.routing_table import AddResult, RoutingTable
from zikade_py.core.trace import Trace, earliest


@dataclass(frozen=True, slots=True)
class IncludeConfig:
    """Knobs of the include queue."""

    queue_capacity: int = 128
    """Candidates waiting for a check (zikade's default); more are dropped."""
    concurrency: int = 3
    """Checks in flight at once (zikade's default; checks are background work)."""
    check_timeout: float = 10.0
    """Seconds a candidate has to answer its check: the per-request timeout of WIRE.md §9."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration the queue cannot run with."""
        if self.queue_capacity < 1:
            raise ValueError("queue_capacity must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.check_timeout <= 0:
            raise ValueError("check_timeout must be positive")


@dataclass(slots=True)
class IncludeStats:
    """Counters of the include queue, for metrics and tests (live, updated in place).

    Mutable on purpose: candidates arrive with every lookup answer, so rebuilding a
    frozen copy per count was the simulator's largest single cost.
    """

    queued: int = 0
    ignored: int = 0
    dropped: int = 0
    checks: int = 0
    added: int = 0
    cached: int = 0
    failures: int = 0
    timeouts: int = 0


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncludeAddCandidate(Event):
    """A node was heard of (a lookup answer, an inbound connection): maybe include it."""

    node: Key


@dataclass(frozen=True, slots=True)
class IncludeCheckSuccess(Event):
    """The candidate answered its check with ``closer_count`` nodes."""

    node: Key
    closer_count: int


@dataclass(frozen=True, slots=True)
class IncludeCheckFailure(Event):
    """The candidate's check failed (error, reset, dropped by admission)."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class IncludePoll(Event):
    """Advance on time alone."""


IncludeEvent = IncludeAddCandidate | IncludeCheckSuccess | IncludeCheckFailure | IncludePoll


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncludeConnectivityCheck(Event):
    """Send FIND_NODE(``target``) to ``node``; ``target`` is the node itself."""

    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class IncludeCancelCheck(Event):
    """The check of ``node`` timed out: cancel its request (it already counts as failed)."""

    node: Key


@dataclass(frozen=True, slots=True)
class IncludeRoutingUpdated(Event):
    """``node`` entered the routing table."""

    node: Key


@dataclass(frozen=True, slots=True)
class IncludeWaitingAtCapacity(Event):
    """``concurrency`` checks are in flight; candidates wait."""


@dataclass(frozen=True, slots=True)
class IncludeWaitingWithCapacity(Event):
    """Checks are in flight, there is room, but no candidate waits."""


@dataclass(frozen=True, slots=True)
class IncludeWaitingFull(Event):
    """At capacity with a full queue: new candidates are being dropped."""


@dataclass(frozen=True, slots=True)
class IncludeIdle(Event):
    """No check in flight and no candidate queued."""


IncludeState = (
    IncludeConnectivityCheck
    | IncludeCancelCheck
    | IncludeRoutingUpdated
    | IncludeWaitingAtCapacity
    | IncludeWaitingWithCapacity
    | IncludeWaitingFull
    | IncludeIdle
)


class Include:
    """Connectivity-checks candidates and adds the ones that answer to the table."""

    def __init__(self, table: RoutingTable, config: IncludeConfig | None = None) -> None:
        self.config = config or IncludeConfig()
        self.config.validate()
        self.table = table
        self._queue: dict[Key, Trace] = {}
        self._checks: dict[Key, Trace] = {}
        self._pending: deque[IncludeCancelCheck] = deque()
        self._stats = IncludeStats()

    @property
    def stats(self) -> IncludeStats:
        """Counters so far (the live object; copy it to keep a snapshot)."""
        return self._stats

    def queued(self) -> list[Key]:
        """Candidates waiting for a check, oldest first."""
        return list(self._queue)

    def checking(self) -> list[Key]:
        """Candidates whose check is in flight."""
        return list(self._checks)

    def next_due(self) -> float | None:
        """The earliest check deadline (nothing else in this machine is timed)."""
        due: float | None = None
        for trace in self._checks.values():
            due = earliest(due, trace.deadline)
        return due

    def advance(self, event: IncludeEvent, now: float) -> IncludeState:
        """Apply ``event`` at ``now`` and return what the queue wants next."""
        updated: IncludeRoutingUpdated | None = None
        match event:
            case IncludePoll():
                pass
            case IncludeAddCandidate():
                self._on_candidate(event)
            case IncludeCheckSuccess():
                updated = self._on_success(event, now)
            case IncludeCheckFailure():
                if self._checks.pop(event.node, None) is not None:
                    self._stats.failures += 1
            case _:
                assert_never(event)
        self._expire(now)
        if updated is not None:
            return updated
        return self._next(now, event.trace)

    def _on_candidate(self, event: IncludeAddCandidate) -> None:
        node = event.node
        if node in self._queue or node in self._checks or not self._worth_checking(node):
            self._stats.ignored += 1
        elif len(self._queue) >= self.config.queue_capacity:
            self._stats.dropped += 1
        else:
            self._queue[node] = event.trace
            self._stats.queued += 1

    def _worth_checking(self, node: Key) -> bool:
        # Only a free seat is worth a check. Checking candidates for a full bucket's
        # replacement cache cost four FIND_NODEs per lookup answer in the simulator
        # (every node named in an answer got one back); the cache is filled for free
        # by nodes that answer our own requests instead.
        return self.table.would_add(node) is AddResult.ADDED

    def _on_success(self, event: IncludeCheckSuccess, now: float) -> IncludeRoutingUpdated | None:
        if self._checks.pop(event.node, None) is None:
            return None  # never asked, timed out already, or a duplicate answer
        if event.closer_count < 1:
            self._stats.failures += 1
            return None
        result = self.table.add(event.node, now)
        if result is AddResult.ADDED:
            self._stats.added += 1
            return IncludeRoutingUpdated(event.node, trace=event.trace)
        if result is AddResult.BUCKET_FULL and self.table.offer_replacement(event.node, now):
            self._stats.cached += 1
        return None

    def _expire(self, now: float) -> None:
        for node, trace in list(self._checks.items()):
            if trace.expired(now):
                del self._checks[node]
                self._stats.failures += 1
                self._stats.timeouts += 1
                self._pending.append(IncludeCancelCheck(node, trace=trace))

    def _next(self, now: float, trace: Trace) -> IncludeState:
        if self._pending:
            return self._pending.popleft()
        cfg = self.config
        while len(self._checks) < cfg.concurrency and self._queue:
            node = next(iter(self._queue))
            queued_trace = self._queue.pop(node)
            if not self._worth_checking(node):  # the table changed while it waited
                self._stats.ignored += 1
                continue
            check_trace = Trace(queued_trace.span_context, now + cfg.check_timeout)
            self._checks[node] = check_trace
            self._stats.checks += 1
            return IncludeConnectivityCheck(node, node, trace=check_trace)
        if len(self._checks) >= cfg.concurrency:
            if len(self._queue) >= cfg.queue_capacity:
                return IncludeWaitingFull(trace=trace)
            return IncludeWaitingAtCapacity(trace=trace)
        if self._checks:
            return IncludeWaitingWithCapacity(trace=trace)
        return IncludeIdle(trace=trace)
