"""The include queue: candidates prove themselves before they enter the table.

Rules of the machine (read top to bottom as a table):

* :class:`IncludeAddCandidates` offers the nodes named in one answer (or one
  inbound server). Each is queued (FIFO, unique, at most ``queue_capacity``)
  only if it would take a free seat in the table: self, nodes already present,
  nodes the filter refuses and nodes whose bucket is full are ignored (a full
  bucket's replacement cache is fed by nodes that answer our requests, which
  proved themselves already), and so are candidates already queued, being
  checked or waiting to retry. A full queue drops the candidate (counted in
  :attr:`IncludeStats.dropped`). :meth:`Include.offer` does the same for nodes
  the caller filtered through the table already, without an advance.
* A check is a FIND_NODE for the candidate's own key, sent to the candidate,
  at most ``concurrency`` at a time, each with a deadline of
  ``now + check_timeout`` (zikade had none, ZIKADE.md §10). A candidate whose
  seat was taken while it waited is skipped, and so is one that a request of
  ours (a walk's, a lookup's) is waiting on already (``asked``): that answer
  admits it by the same rule a check would (counted in
  :attr:`IncludeStats.answering`); one check less per such node.
* Seats are reserved: a candidate whose bucket's free seats are all spoken for
  by checks in flight for that bucket waits aside (counted in
  :attr:`IncludeStats.parked`) until one of them ends, then goes back to the
  head of the queue. Checking it at once would, if those checks succeed, only
  feed the replacement cache (7 of ~100 checks per joining node at 2,000 nodes).
* The machine never writes the table. An answer to a check ends the check;
  whether the node gets a seat is the routing behaviour's one admission rule
  (:meth:`~zikade_py.core.routing_table.RoutingTable.proves_useful`), applied
  to every answer from every request alike. An error ends it as failed.
* :class:`IncludeCheckDropped` (our own admission control refused the request:
  it says nothing about the candidate) puts the candidate back in the queue
  after ``drop_retry_delay``, at most ``max_drop_retries`` times; after that it
  is forgotten (counted in :attr:`IncludeStats.abandoned`), so a saturated
  network cannot make it spin.
* Every ``advance`` first expires checks whose deadline has passed: each is
  failed and announced with :class:`IncludeCancelCheck` so the driver can
  cancel the request — below capacity as well as at capacity.
* Action states (check, cancel) mean "advance me again"; waiting and idle
  states mean "nothing until an event or :meth:`next_due`".
* Late or unknown answers are ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.event import Event, State
from zikade_py.core.key import Key
from zikade_py.core.routing_table import AddResult, RoutingTable
from zikade_py.core.trace import NO_TRACE, Trace, earliest


@dataclass(frozen=True, slots=True)
class IncludeConfig:
    """Knobs of the include queue."""

    queue_capacity: int = 128
    """Candidates waiting for a check (zikade's default); more are dropped."""
    concurrency: int = 3
    """Checks in flight at once (zikade's default; checks are background work)."""
    check_timeout: float = 10.0
    """Seconds a candidate has to answer its check: the per-request timeout of WIRE.md §9."""
    drop_retry_delay: float = 1.0
    """Seconds before a check refused by our own admission control is tried again."""
    max_drop_retries: int = 3
    """Refusals after which a candidate is forgotten (bounds the retrying)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration the queue cannot run with."""
        if self.queue_capacity < 1:
            raise ValueError("queue_capacity must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.check_timeout <= 0:
            raise ValueError("check_timeout must be positive")
        if self.drop_retry_delay <= 0:
            raise ValueError("drop_retry_delay must be positive")
        if self.max_drop_retries < 0:
            raise ValueError("max_drop_retries must not be negative")


@dataclass(slots=True)
class IncludeStats:
    """Counters of the include queue, for metrics and tests (live, updated in place).

    Mutable on purpose: candidates arrive with every lookup answer, so rebuilding a
    frozen copy per count was the simulator's largest single cost.
    """

    queued: int = 0
    ignored: int = 0
    dropped: int = 0
    """Candidates refused because the queue was full."""
    checks: int = 0
    answered: int = 0
    failures: int = 0
    timeouts: int = 0
    retries: int = 0
    """Checks refused by our admission control and queued again."""
    abandoned: int = 0
    """Candidates forgotten after ``max_drop_retries`` refusals."""
    answering: int = 0
    """Candidates not checked because a request of ours to them was in flight."""
    parked: int = 0
    """Checks put off because the checks in flight could fill the bucket's free seats."""


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncludeAddCandidates(Event):
    """Nodes were heard of (named in one answer, or an inbound server): maybe include them.

    One event per answer, not per node: this path runs for every node named in
    every answer, the simulator's hottest.
    """

    nodes: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class IncludeCheckSuccess(Event):
    """The candidate answered its check with ``closer_count`` nodes."""

    node: Key
    closer_count: int


@dataclass(frozen=True, slots=True)
class IncludeCheckFailure(Event):
    """The candidate's check failed (error, reset): it is not included."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class IncludeCheckDropped(Event):
    """Our own admission control refused the check: try the candidate again later."""

    node: Key


@dataclass(frozen=True, slots=True)
class IncludePoll(Event):
    """Advance on time alone."""


IncludeEvent = (
    IncludeAddCandidates
    | IncludeCheckSuccess
    | IncludeCheckFailure
    | IncludeCheckDropped
    | IncludePoll
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncludeConnectivityCheck(State):
    """Send FIND_NODE(``target``) to ``node``; ``target`` is the node itself."""

    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class IncludeCancelCheck(State):
    """The check of ``node`` timed out: cancel its request (it already counts as failed)."""

    node: Key


@dataclass(frozen=True, slots=True)
class IncludeWaitingAtCapacity(State):
    """``concurrency`` checks are in flight; candidates wait."""


@dataclass(frozen=True, slots=True)
class IncludeWaitingWithCapacity(State):
    """Checks are in flight, there is room, but no candidate waits."""


@dataclass(frozen=True, slots=True)
class IncludeWaitingFull(State):
    """At capacity with a full queue: new candidates are being dropped."""


@dataclass(frozen=True, slots=True)
class IncludeIdle(State):
    """No check in flight and no candidate queued."""


_FULL = IncludeWaitingFull()
_AT_CAPACITY = IncludeWaitingAtCapacity()
_WITH_CAPACITY = IncludeWaitingWithCapacity()
_IDLE = IncludeIdle()
"""The waiting states of untraced events (most are): immutable, so shared, not rebuilt."""

IncludeState = (
    IncludeConnectivityCheck
    | IncludeCancelCheck
    | IncludeWaitingAtCapacity
    | IncludeWaitingWithCapacity
    | IncludeWaitingFull
    | IncludeIdle
)


class Include:
    """Connectivity-checks candidates so that the ones that answer can enter the table."""

    def __init__(
        self,
        table: RoutingTable,
        config: IncludeConfig | None = None,
        *,
        asked: Callable[[Key], bool] | None = None,
    ) -> None:
        """``table`` is only read (free seats); the routing behaviour writes it.

        ``asked(node)`` tells whether a request of ours to ``node`` is in flight
        (any machine's or query's): such a candidate needs no check of its own.
        """
        self.config = config or IncludeConfig()
        self.config.validate()
        self.table = table
        self._asked = asked
        # Candidates are keyed by their key's int value: membership tests run for every
        # node named in every answer, and an int hashes in C (a Key calls Python).
        self._queue: dict[int, tuple[Key, Trace]] = {}
        self._checks: dict[int, tuple[Key, Trace]] = {}
        self._checking: dict[int, int] = {}
        """Checks in flight by bucket (CPL)."""
        self._parked: dict[int, dict[int, tuple[Key, Trace]]] = {}
        """By bucket: candidates whose free seats the checks in flight may all take."""
        self._parked_at: dict[int, int] = {}
        """The bucket of every parked candidate (by key value)."""
        self._retry: deque[tuple[float, Key, Trace]] = deque()
        """Dropped checks waiting out ``drop_retry_delay`` (in due order: the delay is fixed)."""
        self._drops: dict[int, int] = {}
        self._pending: deque[IncludeCancelCheck] = deque()
        self._deadline_floor: float | None = None
        """No check deadline is earlier (checks that ended may have left it low): every
        advance expires checks, and most need not look at them."""
        self._stats = IncludeStats()

    @property
    def stats(self) -> IncludeStats:
        """Counters so far (the live object; copy it to keep a snapshot)."""
        return self._stats

    def queued(self) -> list[Key]:
        """Candidates waiting for a check, oldest first (retries not yet due excluded)."""
        parked = [node for bucket in self._parked.values() for node, _ in bucket.values()]
        return parked + [node for node, _ in self._queue.values()]

    def checking(self) -> list[Key]:
        """Candidates whose check is in flight."""
        return [node for node, _ in self._checks.values()]

    def retrying(self) -> list[Key]:
        """Candidates whose dropped check waits to be tried again."""
        return [node for _, node, _ in self._retry]

    def next_due(self) -> float | None:
        """The earliest check deadline or retry time."""
        due: float | None = self._retry[0][0] if self._retry else None
        for _, trace in self._checks.values():
            due = earliest(due, trace.deadline)
        return due

    def advance(self, event: IncludeEvent, now: float) -> IncludeState:
        """Apply ``event`` at ``now`` and return what the queue wants next."""
        match event:
            case IncludePoll():
                pass
            case IncludeAddCandidates(nodes=nodes):
                self._on_candidates(nodes, event.trace)
            case IncludeCheckSuccess(node=node, closer_count=count):
                if self._end_check(node.value) is not None:
                    self._drops.pop(node.value, None)
                    if self.table.proves_useful(count):
                        self._stats.answered += 1
                    else:
                        self._stats.failures += 1
            case IncludeCheckFailure(node=node):
                if self._end_check(node.value) is not None:
                    self._drops.pop(node.value, None)
                    self._stats.failures += 1
            case IncludeCheckDropped(node=node):
                check = self._end_check(node.value)
                if check is not None:
                    self._on_dropped(node, check[1], now)
            case _:
                assert_never(event)
        self._expire(now)
        return self._next(now, event.trace)

    def offer(self, seatable: Iterable[Key], trace: Trace = NO_TRACE) -> bool:
        """Queue candidates that the table would seat now, without an advance.

        :class:`IncludeAddCandidates` without its table filter: the routing
        behaviour runs :meth:`~zikade_py.core.routing_table.RoutingTable.seatable`
        over every answer anyway (to skip the include machine when nothing in it
        could take a seat), and asking the table twice was the simulator's
        largest single cost. ``True`` when a candidate was queued: the machine
        must then be advanced (with :class:`IncludePoll`) to start its check.
        Queueing only adds waiting work, so nothing else is due because of it.
        """
        queue, checks, drops, stats = self._queue, self._checks, self._drops, self._stats
        parked = self._parked_at
        capacity = self.config.queue_capacity
        queued = False
        for node in seatable:
            value = node.value
            if value in queue or value in checks or value in drops or value in parked:
                stats.ignored += 1
            elif len(queue) + len(parked) >= capacity:  # parked ones are queued ones
                stats.dropped += 1
            else:
                queue[value] = (node, trace)
                stats.queued += 1
                queued = True
        return queued

    def _on_candidates(self, nodes: tuple[Key, ...], trace: Trace) -> None:
        # One table call sorts out the nodes that are seated already or have no seat.
        seatable = self.table.seatable(nodes)
        self._stats.ignored += len(nodes) - len(seatable)
        self.offer(seatable, trace)

    def _worth_checking(self, node: Key) -> bool:
        # Only a free seat is worth a check. Checking candidates for a full bucket's
        # replacement cache cost four FIND_NODEs per lookup answer in the simulator
        # (every node named in an answer got one back); the cache is filled for free
        # by nodes that answer our own requests instead.
        return self.table.would_add(node) is AddResult.ADDED

    def _seats_spoken_for(self, cpl: int) -> bool:
        """Whether the checks in flight for bucket ``cpl`` could fill all its free seats."""
        pending = self._checking.get(cpl)
        if pending is None:
            return False
        table = self.table
        return len(table.bucket(cpl)) + pending >= table.bucket_size

    def _end_check(self, value: int) -> tuple[Key, Trace] | None:
        """End the check of the candidate with key ``value``; ``None`` if none was in flight.

        The candidates parked for its bucket go back to the head of the queue: the
        seat is taken or free again.
        """
        check = self._checks.pop(value, None)
        if check is None:
            return None
        cpl = self.table.cpl(check[0])
        left = self._checking[cpl] - 1
        if left:
            self._checking[cpl] = left
        else:
            del self._checking[cpl]
        parked = self._parked.pop(cpl, None)
        if parked:
            for parked_value in parked:
                del self._parked_at[parked_value]
            self._queue = {**parked, **self._queue}
        return check

    def _on_dropped(self, node: Key, trace: Trace, now: float) -> None:
        drops = self._drops.get(node.value, 0) + 1
        if drops > self.config.max_drop_retries:
            self._drops.pop(node.value, None)
            self._stats.abandoned += 1
            return
        self._drops[node.value] = drops
        self._stats.retries += 1
        self._retry.append((now + self.config.drop_retry_delay, node, trace))

    def _expire(self, now: float) -> None:
        checks = self._checks
        floor = self._deadline_floor
        if floor is not None and now >= floor:
            expired = [value for value, (_, trace) in checks.items() if trace.expired(now)]
            self._deadline_floor = earliest(
                *(trace.deadline for value, (_, trace) in checks.items() if value not in expired)
            )
        else:
            expired = []
        for value in expired:
            check = self._end_check(value)
            assert check is not None
            node, trace = check
            self._drops.pop(value, None)
            self._stats.failures += 1
            self._stats.timeouts += 1
            self._pending.append(IncludeCancelCheck(node, trace=trace))
        retry = self._retry
        while retry and retry[0][0] <= now:
            _, node, trace = retry.popleft()
            # Back at the head of the line: it was first before its check was refused.
            self._queue = {node.value: (node, trace), **self._queue}

    def _next(self, now: float, trace: Trace) -> IncludeState:
        if self._pending:
            return self._pending.popleft()
        cfg = self.config
        while len(self._checks) < cfg.concurrency and self._queue:
            value = next(iter(self._queue))
            node, queued_trace = self._queue.pop(value)
            if not self._worth_checking(node):  # the table changed while it waited
                self._drops.pop(value, None)
                self._stats.ignored += 1
                continue
            if self._asked is not None and self._asked(node):
                # Its answer to that request is filed by the one admission rule: it is
                # the check. (Measured at 2,000 nodes: 6 of ~100 checks per joining node.)
                self._drops.pop(value, None)
                self._stats.answering += 1
                continue
            cpl = self.table.cpl(node)
            if self._seats_spoken_for(cpl):
                self._parked.setdefault(cpl, {})[value] = (node, queued_trace)
                self._parked_at[value] = cpl
                self._stats.parked += 1
                continue
            self._checking[cpl] = self._checking.get(cpl, 0) + 1
            deadline = now + cfg.check_timeout
            check_trace = Trace(queued_trace.span_context, deadline)
            self._checks[value] = (node, check_trace)
            self._deadline_floor = earliest(self._deadline_floor, deadline)
            self._stats.checks += 1
            return IncludeConnectivityCheck(node, node, trace=check_trace)
        untraced = trace is NO_TRACE
        if len(self._checks) >= cfg.concurrency:
            if len(self._queue) + len(self._parked_at) >= cfg.queue_capacity:
                return _FULL if untraced else IncludeWaitingFull(trace=trace)
            return _AT_CAPACITY if untraced else IncludeWaitingAtCapacity(trace=trace)
        if self._checks or self._retry:
            return _WITH_CAPACITY if untraced else IncludeWaitingWithCapacity(trace=trace)
        return _IDLE if untraced else IncludeIdle(trace=trace)
