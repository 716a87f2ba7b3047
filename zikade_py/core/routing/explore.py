"""Explore: per-CPL random walks that keep every bucket of the table filled.

Rules of the machine (read top to bottom as a table):

* An :class:`ExploreSchedule` says which CPL is due. When no walk runs, every
  ``advance`` but a Stop asks it (so a late answer acts as a poll). A due CPL
  ``c`` starts a walk: a find-closer query for a random target sharing exactly
  ``c`` leading bits with ``self_key``, seeded with the table's
  ``num_results`` nodes nearest to that target.
* The walk's nodes are ordered by XOR distance to the *walk's target* (the
  :class:`~zikade_py.core.query.Query` orders by its own target). zikade built
  its iterator on ``self`` instead (ZIKADE.md §3.3, §10), which walked towards
  the node itself rather than into the bucket being explored.
* CPLs beyond the deepest non-empty bucket are skipped (the spec refreshes
  "only up to the last non-empty bucket"; the self-lookup covers that region),
  unless ``skip_beyond_deepest_bucket`` is off.
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

from zikade_py.core.event import Event, FinishReason
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.query import (
    Query,
    QueryCancel,
    QueryCancelRequest,
    QueryEvent,
    QueryFindCloser,
    QueryFinished,
    QueryID,
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
        self._heap: list[tuple[float, int]] = [(start, cpl) for cpl in range(max_cpl + 1)]
        heapq.heapify(self._heap)

    def interval_for(self, cpl: int) -> float:
        """Seconds until CPL ``cpl`` is explored again (jitter drawn anew each call)."""
        base = self.interval
        spread = (self.max_cpl - cpl) * base * self.multiplier
        return base + spread + base * self.jitter * self._rng.random()

    def next_cpl(self, now: float) -> int | None:
        """The most overdue CPL, rescheduled one interval after ``now``."""
        if not self._heap or self._heap[0][0] > now:
            return None
        _, cpl = heapq.heappop(self._heap)
        heapq.heappush(self._heap, (now + self.interval_for(cpl), cpl))
        return cpl

    def next_due(self) -> float | None:
        """When the next CPL is due."""
        return self._heap[0][0] if self._heap else None


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


@dataclass(frozen=True, slots=True)
class ExploreConfig(WalkConfig):
    """Knobs of each random walk."""

    skip_beyond_deepest_bucket: bool = True
    """Skip CPLs deeper than the deepest non-empty bucket (the spec's rule)."""


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExplorePoll(Event):
    """Advance on time alone (starts a walk when one is due)."""


@dataclass(frozen=True, slots=True)
class ExploreFindCloserResponse(Event):
    """``node`` answered the walk's FIND_NODE with ``closer`` nodes."""

    node: Key
    closer: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class ExploreFindCloserFailure(Event):
    """The walk's FIND_NODE to ``node`` failed."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class ExploreStop(Event):
    """Stop the running walk (finishes CANCELLED); the schedule goes on."""


ExploreEvent = ExplorePoll | ExploreFindCloserResponse | ExploreFindCloserFailure | ExploreStop


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExploreFindCloser(Event):
    """Send FIND_NODE(``target``) to ``node`` for the walk of bucket ``cpl``."""

    cpl: int
    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class ExploreCancelRequest(Event):
    """Cancel the walk's request in flight to ``node``."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class ExploreWaiting(Event):
    """The walk of ``cpl`` has requests in flight; nothing to do until an answer or a deadline."""

    cpl: int
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class ExploreQueryFinished(Event):
    """The walk of ``cpl`` ended, with its reason and the closest nodes that answered."""

    cpl: int
    reason: FinishReason
    stats: QueryStats
    closest: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class ExploreIdle(Event):
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
            case ExploreFindCloserResponse(node=node, closer=closer):
                qev = QueryNodeResponse(node, closer, trace=event.trace)
            case ExploreFindCloserFailure(node=node, error=error):
                qev = QueryNodeFailure(node, error, trace=event.trace)
            case ExploreStop():
                qev = QueryCancel(FinishReason.CANCELLED, trace=event.trace)
            case _:
                assert_never(event)
        if self._walk is None:
            if isinstance(event, ExploreStop) or not self._start(now):
                return ExploreIdle(trace=event.trace)
            qev = QueryPoll(trace=event.trace)  # whatever came in belonged to no walk
        assert self._walk is not None
        return self._translate(self._walk.advance(qev, now))

    def _start(self, now: float) -> bool:
        deepest = self.table.deepest_bucket()
        for _ in range(KEY_BITS):  # bounds the skipping of an always-due schedule
            cpl = self.schedule.next_cpl(now)
            if cpl is None:
                return False
            if self.config.skip_beyond_deepest_bucket and (deepest is None or cpl > deepest):
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
