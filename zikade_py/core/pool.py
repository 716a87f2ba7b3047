"""The query pool: many queries at once, bounded, each with a timeout.

Rules of the machine:

* Queries run in the order they were added: older queries are advanced first,
  so running work progresses before new work starts (zikade's stated goal).
* At most ``max_queries`` queries have requests in flight; the rest wait.
* An event for one query is applied to that query; anything it wants (a request,
  a cancel, its end) is returned at once. Otherwise every query is polled in
  order and the first that wants something wins.
* A query running longer than ``query_timeout`` is stopped with reason
  ``TIMEOUT``: its outstanding requests are cancelled, then it finishes. A
  query's own trace deadline ends it the same way. Every query ends with
  exactly one :class:`PoolQueryFinished`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import assert_never

from zikade_py.core.event import Event, FinishReason
from zikade_py.core.key import Key
from zikade_py.core.query import (
    Query,
    QueryCancel,
    QueryCancelRequest,
    QueryConfig,
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
from zikade_py.core.trace import earliest


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Bounds of the pool; per-query knobs live in :class:`QueryConfig`."""

    max_queries: int = 32
    """Queries allowed to have requests in flight at once."""
    query_timeout: float = 60.0
    """Seconds a query may run before it is stopped with reason timeout."""
    query: QueryConfig = field(default_factory=QueryConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` for a pool that could never run a query."""
        if self.max_queries < 1:
            raise ValueError("max_queries must be at least 1")
        if self.query_timeout <= 0:
            raise ValueError("query_timeout must be positive")
        self.query.validate()


class DuplicateQueryError(ValueError):
    """A query id was used twice: the caller misused the API."""


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolAddQuery(Event):
    """Start a query; ``message`` ``None`` makes it a find-closer query."""

    query_id: QueryID
    target: Key
    seeds: tuple[Key, ...]
    message: object = None
    num_results: int | None = None


@dataclass(frozen=True, slots=True)
class PoolStopQuery(Event):
    """Stop a query (unknown ids are ignored: it may have just finished)."""

    query_id: QueryID


@dataclass(frozen=True, slots=True)
class PoolNodeResponse(Event):
    """A node answered a request of ``query_id``."""

    query_id: QueryID
    node: Key
    closer_nodes: tuple[Key, ...] = ()
    response: object = None


@dataclass(frozen=True, slots=True)
class PoolNodeFailure(Event):
    """A request of ``query_id`` failed."""

    query_id: QueryID
    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class PoolPoll(Event):
    """Advance on time alone."""


PoolEvent = PoolAddQuery | PoolStopQuery | PoolNodeResponse | PoolNodeFailure | PoolPoll


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolFindCloser(Event):
    """Send FIND_NODE(target) to ``node`` for ``query_id``."""

    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class PoolSendMessage(Event):
    """Send the query's message to ``node``."""

    query_id: QueryID
    node: Key
    target: Key
    message: object
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class PoolCancelRequest(Event):
    """Cancel the request of ``query_id`` in flight to ``node``."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class PoolWaitingAtCapacity(Event):
    """Every running query is at capacity, or the pool is."""


@dataclass(frozen=True, slots=True)
class PoolWaitingWithCapacity(Event):
    """Queries are waiting for answers; there is room for more work."""


@dataclass(frozen=True, slots=True)
class PoolIdle(Event):
    """No query is running."""


@dataclass(frozen=True, slots=True)
class PoolQueryFinished(Event):
    """A query ended (done, timeout, cancelled or failed) with its closest nodes."""

    query_id: QueryID
    reason: FinishReason
    closest: tuple[Key, ...]
    stats: QueryStats


PoolState = (
    PoolFindCloser
    | PoolSendMessage
    | PoolCancelRequest
    | PoolWaitingAtCapacity
    | PoolWaitingWithCapacity
    | PoolIdle
    | PoolQueryFinished
)


class QueryPool:
    """Runs many :class:`Query` machines fairly within one bound."""

    def __init__(self, self_key: Key, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self.config.validate()
        self.self_key = self_key
        self._queries: dict[QueryID, Query] = {}
        self._started: dict[QueryID, float] = {}

    def __len__(self) -> int:
        return len(self._queries)

    def __contains__(self, query_id: object) -> bool:
        return query_id in self._queries

    def query(self, query_id: QueryID) -> Query | None:
        """The running query with this id, if any (for progress and partial results)."""
        return self._queries.get(query_id)

    def next_due(self) -> float | None:
        """Earliest request deadline, query deadline or pool timeout among running queries."""
        due: float | None = None
        for qid, query in self._queries.items():
            due = earliest(due, query.next_due(), self._started[qid] + self.config.query_timeout)
        return due

    def advance(self, event: PoolEvent, now: float) -> PoolState:
        """Apply ``event`` at ``now`` and return the pool's next wish."""
        match event:
            case PoolAddQuery():
                self._add(event, now)
            case PoolStopQuery(query_id=qid):
                query = self._queries.get(qid)
                if query is not None:
                    return self._step(query, QueryCancel(trace=event.trace), now)
            case PoolNodeResponse(query_id=qid):
                query = self._queries.get(qid)
                if query is not None:
                    qev = QueryNodeResponse(
                        event.node, event.closer_nodes, event.response, trace=event.trace
                    )
                    state = self._step(query, qev, now)
                    if not _is_waiting(state):
                        return state
            case PoolNodeFailure(query_id=qid):
                query = self._queries.get(qid)
                if query is not None:
                    state = self._step(query, QueryNodeFailure(event.node, event.error), now)
                    if not _is_waiting(state):
                        return state
            case PoolPoll():
                pass
            case _:
                assert_never(event)
        return self._poll_all(now)

    def _add(self, event: PoolAddQuery, now: float) -> None:
        if event.query_id in self._queries:
            raise DuplicateQueryError(f"query {event.query_id!r} is already running")
        qcfg = self.config.query
        if event.num_results is not None and event.num_results != qcfg.num_results:
            qcfg = replace(qcfg, num_results=event.num_results)
        self._queries[event.query_id] = Query(
            event.query_id,
            self.self_key,
            event.target,
            event.seeds,
            qcfg,
            message=event.message,
            trace=event.trace,
        )
        self._started[event.query_id] = now

    def _poll_all(self, now: float) -> PoolState:
        running = 0
        any_capacity = False
        for qid in list(self._queries):
            query = self._queries[qid]
            if now >= self._started[qid] + self.config.query_timeout:
                return self._step(query, QueryCancel(FinishReason.TIMEOUT), now)
            if query.in_flight == 0 and running >= self.config.max_queries:
                continue  # not started yet and the pool is full: wait its turn
            state = self._step(query, QueryPoll(), now)
            match state:
                case PoolWaitingAtCapacity():
                    running += 1
                case PoolWaitingWithCapacity():
                    running += 1
                    any_capacity = True
                case _:
                    return state
            if running >= self.config.max_queries:
                break
        if not self._queries:
            return PoolIdle()
        if any_capacity or running < self.config.max_queries:
            return PoolWaitingWithCapacity()
        return PoolWaitingAtCapacity()

    def _step(self, query: Query, event: QueryEvent, now: float) -> PoolState:
        return self._translate(query.advance(event, now))

    def _translate(self, state: QueryState) -> PoolState:
        match state:
            case QueryFindCloser():
                return PoolFindCloser(
                    state.query_id, state.node, state.target, state.stats, trace=state.trace
                )
            case QuerySendMessage():
                return PoolSendMessage(
                    state.query_id,
                    state.node,
                    state.target,
                    state.message,
                    state.stats,
                    trace=state.trace,
                )
            case QueryCancelRequest():
                return PoolCancelRequest(state.query_id, state.node, trace=state.trace)
            case QueryFinished():
                self._queries.pop(state.query_id, None)
                self._started.pop(state.query_id, None)
                return PoolQueryFinished(
                    state.query_id, state.reason, state.closest, state.stats, trace=state.trace
                )
            case QueryWaitingAtCapacity():
                return PoolWaitingAtCapacity(trace=state.trace)
            case QueryWaitingWithCapacity():
                return PoolWaitingWithCapacity(trace=state.trace)
            case _:
                assert_never(state)


def _is_waiting(state: PoolState) -> bool:
    return isinstance(state, PoolWaitingAtCapacity | PoolWaitingWithCapacity | PoolIdle)
