"""Explore: per-CPL random walks that fill the buckets that need it.

Rules of the machine (read top to bottom as a table):

* An :class:`ExploreSchedule` says which CPL is due. When no walk runs, every
  ``advance`` but a Stop asks it (so a late answer acts as a poll).
* A due CPL ``c`` that needs no walk is skipped (and counts as refreshed until
  its next turn): beyond the deepest non-empty bucket (the spec refreshes
  "only up to the last non-empty bucket"; the self-lookup covers that region),
  or a full bucket (a walk finds no free seat to fill; the probe keeps its
  nodes live). Either skip can be switched off in :class:`ExploreConfig`.
* Otherwise ``c`` starts a walk: a find-closer query for a random target
  sharing exactly ``c`` leading bits with ``self_key``, seeded with the
  table's ``num_results`` nodes nearest to that target, sized to the job
  (``request_concurrency`` 3, ``num_results`` 10: it fills one bucket, it
  does not need a lookup's exact k closest).
* The walk's nodes are ordered by XOR distance to the *walk's target* (the
  :class:`~zikade_py.core.query.Query` orders by its own target). zikade built
  its iterator on ``self`` instead (ZIKADE.md §3.3, §10), which walked towards
  the node itself rather than into the bucket being explored.
* A walk whose bucket fills up stops at once (DONE, outstanding requests
  cancelled): it did what it was for.
* :class:`ExploreCovered` reports a self-lookup that ended: every bucket from
  ``from_cpl`` deeper holds all the nodes there are (the lookup found the k
  closest), so those CPLs count as refreshed now, as go's refresh manager
  counts its self-walk; the shallower ones become due now (the node joined or
  rejoined, and they are skipped if full).
* A request our own admission control dropped (:class:`ExploreFindCloserDropped`)
  is no failure of the node: the walk asks it again after a short back-off.
* One walk at a time. Each is bounded by ``timeout``; every ending is an
  :class:`ExploreQueryFinished` with a reason (DONE, TIMEOUT, CANCELLED on
  :class:`ExploreStop`, FAILED when there is no node to ask), preceded by an
  :class:`ExploreCancelRequest` for each request still outstanding.
* Answers for a walk that has ended are ignored.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, assert_never

from zikade_py.core.event import Event, FinishReason, State
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.query import (
    Query,
    QueryCancel,
    QueryCancelRequest,
    QueryEvent,
    QueryFindCloser,
    QueryFinished,
    QueryID,
    QueryNodeDropped,
    QueryNodeFailure,
    QueryNodeResponse,
    QueryPoll,
    QuerySendMessage,
    QueryState,
    QueryStats,
    QueryWaitingAtCapacity,
    QueryWaitingWithCapacity,
)
from zikade_py.core.routing.walk import WalkConfig
from zikade_py.core.routing_table import RoutingTable
from zikade_py.core.trace import Trace

EXPLORE_QUERY_ID: QueryID = "explore"
"""The query id of explore requests, so the coordinator can route their answers here."""


class ExploreSchedule(Protocol):
    """Decides when each CPL is explored."""

    def next_cpl(self, now: float) -> int | None:
        """The CPL due at ``now`` (rescheduling it), or ``None`` if none is due."""
        ...

    def next_due(self) -> float | None:
        """When the next CPL becomes due; ``None`` if never."""
        ...

    def refreshed(self, cpl: int, now: float) -> None:
        """Something else refreshed ``cpl`` at ``now``: its next turn is one interval later."""
        ...

    def due_now(self, cpl: int, now: float) -> None:
        """Make ``cpl`` due at ``now``."""
        ...


class DynamicExploreSchedule:
    """zikade's schedule: deep buckets more often than shallow ones (ZIKADE.md §3.3).

    The interval of CPL ``c`` is ``interval + (max_cpl - c) * interval *
    multiplier + interval * jitter * U(0,1)``. With the defaults CPL 14 is
    explored every 10 min and CPL 0 every 150 min: shallow buckets are crossed
    by almost every lookup and need little help. Every CPL is first due at
    ``start`` (ties go to the lower CPL), so a new node explores right away.
    The jitter comes from the injected ``rng`` so runs are reproducible.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        max_cpl: int = 14,
        start: float = 0.0,
        interval: float = 600.0,
        multiplier: float = 1.0,
        jitter: float = 0.0,
    ) -> None:
        if not 0 <= max_cpl < KEY_BITS:
            raise ValueError(f"max_cpl must be within 0..{KEY_BITS - 1}")
        if interval <= 0:
            raise ValueError("interval must be positive")
        if multiplier < 0:
            raise ValueError("multiplier must not be negative")
        if not 0 <= jitter <= 0.05:
            raise ValueError("jitter must be within 0..0.05")
        self.max_cpl = max_cpl
        self.interval = interval
        self.multiplier = multiplier
        self.jitter = jitter
        self._rng = rng
        self._due: dict[int, float] = dict.fromkeys(range(max_cpl + 1), start)
        self._heap: list[tuple[float, int]] = [(start, cpl) for cpl in range(max_cpl + 1)]
        heapq.heapify(self._heap)

    def interval_for(self, cpl: int) -> float:
        """Seconds until CPL ``cpl`` is explored again (jitter drawn anew each call)."""
        base = self.interval
        spread = (self.max_cpl - cpl) * base * self.multiplier
        return base + spread + base * self.jitter * self._rng.random()

    def next_cpl(self, now: float) -> int | None:
        """The most overdue CPL, rescheduled one interval after ``now``."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, cpl = heapq.heappop(self._heap)
        self._set(cpl, now + self.interval_for(cpl))
        return cpl

    def next_due(self) -> float | None:
        """When the next CPL is due (stale entries are dropped by every change)."""
        return self._heap[0][0] if self._heap else None

    def refreshed(self, cpl: int, now: float) -> None:
        """``cpl`` was refreshed at ``now`` by other means: due one interval later."""
        if cpl in self._due:
            self._set(cpl, now + self.interval_for(cpl))

    def due_now(self, cpl: int, now: float) -> None:
        """Make ``cpl`` due at ``now`` (unless it is due earlier already)."""
        if cpl in self._due and self._due[cpl] > now:
            self._set(cpl, now)

    def due_at(self, cpl: int) -> float | None:
        """When ``cpl`` is due next (for tests and metrics)."""
        return self._due.get(cpl)

    def _set(self, cpl: int, due: float) -> None:
        self._due[cpl] = due
        heapq.heappush(self._heap, (due, cpl))
        if len(self._heap) > 4 * len(self._due):
            self._heap = [(d, c) for c, d in self._due.items()]
            heapq.heapify(self._heap)
        self._drop_stale()

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)


class NoWaitExploreSchedule:
    """Cycles CPL 0..``max_cpl`` with no delay at all: every call returns the next one.

    For tests only: it is always due, so a driver polling on :meth:`next_due`
    would explore without pause.
    """

    def __init__(self, max_cpl: int = 14) -> None:
        if not 0 <= max_cpl < KEY_BITS:
            raise ValueError(f"max_cpl must be within 0..{KEY_BITS - 1}")
        self.max_cpl = max_cpl
        self._next = 0
        self._last = float("-inf")

    def next_cpl(self, now: float) -> int | None:
        """The next CPL in the cycle."""
        cpl = self._next
        self._next = (cpl + 1) % (self.max_cpl + 1)
        self._last = now
        return cpl

    def next_due(self) -> float | None:
        """Always due (the time of the last call)."""
        return self._last

    def refreshed(self, cpl: int, now: float) -> None:
        """Ignored: this schedule never waits."""

    def due_now(self, cpl: int, now: float) -> None:
        """Ignored: this schedule is always due."""


@dataclass(frozen=True, slots=True)
class ExploreConfig(WalkConfig):
    """Knobs of each random walk: smaller than a lookup's, since a walk fills one bucket.

    With go's α=10, k=20 every bucket walk cost ~30 FIND_NODEs and a joining
    node ran one per bucket: ~290 of its ~415 requests in the simulator
    (1,000 nodes). See the module docstring for what a walk is sized to.
    """

    request_concurrency: int = 3
    """α of a walk."""
    num_results: int = 10
    """A walk is done once this many of the nodes closest to its target have answered."""
    skip_beyond_deepest_bucket: bool = True
    """Skip CPLs deeper than the deepest non-empty bucket (the spec's rule)."""
    skip_full_buckets: bool = True
    """Skip CPLs whose bucket is full, and stop a walk once its bucket fills."""


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExplorePoll(Event):
    """Advance on time alone (starts a walk when one is due)."""


@dataclass(frozen=True, slots=True)
class ExploreFindCloserResponse(QueryNodeResponse):
    """``node`` answered the walk's FIND_NODE with ``closer_nodes``.

    A query event itself, so the walk's query takes it as it is (one object less
    on the path of every answer).
    """


@dataclass(frozen=True, slots=True)
class ExploreFindCloserFailure(QueryNodeFailure):
    """The walk's FIND_NODE to ``node`` failed (a query event, passed on as it is)."""


@dataclass(frozen=True, slots=True)
class ExploreFindCloserDropped(QueryNodeDropped):
    """Our own admission control refused the walk's FIND_NODE to ``node``: ask it again later."""


@dataclass(frozen=True, slots=True)
class ExploreCovered(Event):
    """A self-lookup ended: buckets ``from_cpl`` and deeper are refreshed, shallower ones due."""

    from_cpl: int


@dataclass(frozen=True, slots=True)
class ExploreStop(Event):
    """Stop the running walk (finishes CANCELLED); the schedule goes on."""


ExploreEvent = (
    ExplorePoll
    | ExploreFindCloserResponse
    | ExploreFindCloserFailure
    | ExploreFindCloserDropped
    | ExploreCovered
    | ExploreStop
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExploreFindCloser(State):
    """Send FIND_NODE(``target``) to ``node`` for the walk of bucket ``cpl``."""

    cpl: int
    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class ExploreCancelRequest(State):
    """Cancel the walk's request in flight to ``node``."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class ExploreWaiting(State):
    """The walk of ``cpl`` has requests in flight; nothing to do until an answer or a deadline."""

    cpl: int
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class ExploreQueryFinished(State):
    """The walk of ``cpl`` ended, with its reason and the closest nodes that answered."""

    cpl: int
    reason: FinishReason
    stats: QueryStats
    closest: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class ExploreIdle(State):
    """No walk runs and none is due; :meth:`Explore.next_due` tells when one will be."""


ExploreState = (
    ExploreFindCloser | ExploreCancelRequest | ExploreWaiting | ExploreQueryFinished | ExploreIdle
)


class Explore:
    """Runs the scheduled random walks, one at a time."""

    def __init__(
        self,
        self_key: Key,
        table: RoutingTable,
        schedule: ExploreSchedule,
        target_for_cpl: Callable[[int], Key],
        config: ExploreConfig | None = None,
        *,
        query_id: QueryID = EXPLORE_QUERY_ID,
    ) -> None:
        """``target_for_cpl`` makes a random key with an exact CPL (see ``routing.cpl``)."""
        self.config = config or ExploreConfig()
        self.config.validate()
        self.self_key = self_key
        self.table = table
        self.schedule = schedule
        self.target_for_cpl = target_for_cpl
        self.query_id = query_id
        self._walk: Query | None = None
        self._cpl = -1

    @property
    def current_cpl(self) -> int | None:
        """The CPL being explored, ``None`` between walks."""
        return self._cpl if self._walk is not None else None

    @property
    def current_target(self) -> Key | None:
        """The running walk's target, ``None`` between walks."""
        return self._walk.target if self._walk is not None else None

    def next_due(self) -> float | None:
        """The walk's next deadline, or when the next walk is due."""
        if self._walk is not None:
            return self._walk.next_due()
        return self.schedule.next_due()

    def advance(self, event: ExploreEvent, now: float) -> ExploreState:
        """Apply ``event`` at ``now`` and return what exploration wants next."""
        qev: QueryEvent
        match event:
            case ExplorePoll():
                qev = QueryPoll(trace=event.trace)
            case (
                ExploreFindCloserResponse()
                | ExploreFindCloserFailure()
                | ExploreFindCloserDropped()
            ):
                qev = event
            case ExploreCovered(from_cpl=from_cpl):
                self._covered(from_cpl, now)
                qev = QueryPoll(trace=event.trace)
            case ExploreStop():
                qev = QueryCancel(FinishReason.CANCELLED, trace=event.trace)
            case _:
                assert_never(event)
        if (
            self._walk is not None
            and self.config.skip_full_buckets
            and self.table.is_full(self._cpl)
            and not isinstance(qev, QueryCancel)
        ):
            qev = QueryCancel(FinishReason.DONE, trace=event.trace)  # the bucket is filled
        if self._walk is None:
            if isinstance(event, ExploreStop) or not self._start(now):
                return ExploreIdle(trace=event.trace)
            qev = QueryPoll(trace=event.trace)  # whatever came in belonged to no walk
        assert self._walk is not None
        return self._translate(self._walk.advance(qev, now))

    def _covered(self, from_cpl: int, now: float) -> None:
        for cpl in range(KEY_BITS):
            if cpl >= from_cpl:
                self.schedule.refreshed(cpl, now)
            else:
                self.schedule.due_now(cpl, now)

    def _start(self, now: float) -> bool:
        cfg = self.config
        deepest = self.table.deepest_bucket()
        for _ in range(KEY_BITS):  # bounds the skipping of an always-due schedule
            cpl = self.schedule.next_cpl(now)
            if cpl is None:
                return False
            if cfg.skip_beyond_deepest_bucket and (deepest is None or cpl > deepest):
                continue
            if cfg.skip_full_buckets and self.table.is_full(cpl):
                continue
            target = self.target_for_cpl(cpl)
            seeds = self.table.nearest(target, self.config.num_results)
            self._cpl = cpl
            self._walk = Query(
                self.query_id,
                self.self_key,
                target,
                seeds,
                self.config.query_config(),
                trace=Trace(deadline=now + self.config.timeout),
            )
            return True
        return False

    def _translate(self, state: QueryState) -> ExploreState:
        cpl = self._cpl
        match state:
            case QueryFindCloser(query_id=qid, node=node, target=target, stats=stats):
                return ExploreFindCloser(cpl, qid, node, target, stats, trace=state.trace)
            case QueryCancelRequest(query_id=qid, node=node):
                return ExploreCancelRequest(qid, node, trace=state.trace)
            case QueryWaitingAtCapacity(stats=stats) | QueryWaitingWithCapacity(stats=stats):
                return ExploreWaiting(cpl, stats, trace=state.trace)
            case QueryFinished(reason=reason, closest=closest, stats=stats):
                self._walk = None
                return ExploreQueryFinished(cpl, reason, stats, closest, trace=state.trace)
            case QuerySendMessage():
                raise AssertionError("a find-closer walk never sends messages")
            case _:
                assert_never(state)
