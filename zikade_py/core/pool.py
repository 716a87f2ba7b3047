"""The query pool: every lookup and broadcast of a node, bounded, each with a timeout.

Rules of the machine:

* The pool runs operations of two kinds — queries (:class:`~zikade_py.core.query.Query`)
  and broadcasts (:class:`~zikade_py.core.broadcast.Broadcast`) — under one bound:
  at most ``max_queries`` are admitted at a time; the others wait in a FIFO queue
  and are admitted, oldest first, as admitted ones finish.
* Every operation, admitted or queued, ends at ``query_timeout`` after it was
  added, or at its caller's deadline if that is earlier: it is stopped with reason
  ``TIMEOUT`` (its outstanding requests are cancelled first). A queued operation
  never sends anything before it is admitted.
* An event for one operation is applied to that operation; anything it wants (a
  request, a cancel, a store report, its end) is returned at once. Action states
  mean "advance me again": the next :class:`PoolPoll` continues the operation that
  returned one before it looks at any other.
* Otherwise a poll advances, oldest first, only operations that need it: newly
  admitted ones, ones whose own due time has come, and ones past their timeout.
  Waiting operations are not touched, so an answer costs one operation's work,
  not the whole pool's.
* Every operation ends with exactly one :class:`PoolQueryFinished` or
  :class:`PoolBroadcastFinished`.
* :meth:`QueryPool.next_due` has no side effects, and names only times at which a
  poll will do something.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import assert_never

from zikade_py.core.broadcast import (
    BcastCancelRequest,
    BcastEvent,
    BcastFindCloser,
    BcastFinished,
    BcastLookupDropped,
    BcastLookupFailure,
    BcastLookupResponse,
    BcastPoll,
    BcastState,
    BcastStop,
    BcastStored,
    BcastStoreDropped,
    BcastStoreFailure,
    BcastStoreRecord,
    BcastStoreSuccess,
    BcastWaiting,
    Broadcast,
    BroadcastConfig,
)
from zikade_py.core.event import Event, FinishReason, State
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
from zikade_py.core.trace import NO_TRACE, Trace, earliest


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Bounds of the pool; per-query knobs live in :class:`QueryConfig`."""

    max_queries: int = 32
    """Operations (queries and broadcasts) admitted at once; more wait their turn."""
    query_timeout: float = 60.0
    """Seconds an operation may exist, queued or running, before it stops with TIMEOUT."""
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
class PoolAddBroadcast(Event):
    """Start a broadcast; ``strategy`` is the :class:`Broadcast` subclass to run."""

    query_id: QueryID
    target: Key
    message: object
    seeds: tuple[Key, ...]
    strategy: type[Broadcast]


@dataclass(frozen=True, slots=True)
class PoolStopQuery(Event):
    """Stop a query or broadcast (unknown ids are ignored: it may have just finished)."""

    query_id: QueryID


@dataclass(frozen=True, slots=True)
class PoolNodeResponse(Event):
    """A node answered a request of ``query_id`` (``store``: a broadcast's store request)."""

    query_id: QueryID
    node: Key
    closer_nodes: tuple[Key, ...] = ()
    response: object = None
    store: bool = False


@dataclass(frozen=True, slots=True)
class PoolNodeFailure(Event):
    """A request of ``query_id`` failed: the node failed."""

    query_id: QueryID
    node: Key
    error: str = ""
    store: bool = False


@dataclass(frozen=True, slots=True)
class PoolNodeDropped(Event):
    """Our own admission control refused a request of ``query_id``: retry it later."""

    query_id: QueryID
    node: Key
    store: bool = False


@dataclass(frozen=True, slots=True)
class PoolPoll(Event):
    """Advance on time alone, or continue the operation that asked for it."""


PoolEvent = (
    PoolAddQuery
    | PoolAddBroadcast
    | PoolStopQuery
    | PoolNodeResponse
    | PoolNodeFailure
    | PoolNodeDropped
    | PoolPoll
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolFindCloser(State):
    """Send FIND_NODE(target) to ``node`` for ``query_id``."""

    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class PoolSendMessage(State):
    """Send ``message`` to ``node``: a query's request, or a broadcast's store (``store``)."""

    query_id: QueryID
    node: Key
    target: Key
    message: object
    stats: QueryStats
    store: bool = False


@dataclass(frozen=True, slots=True)
class PoolCancelRequest(State):
    """Cancel the request of ``query_id`` in flight to ``node``."""

    query_id: QueryID
    node: Key
    store: bool = False


@dataclass(frozen=True, slots=True)
class PoolBroadcastStored(State):
    """A broadcast's record was taken by ``node``; ``settled``: the caller may return now."""

    query_id: QueryID
    node: Key
    stored: int
    settled: bool


@dataclass(frozen=True, slots=True)
class PoolWaitingAtCapacity(State):
    """``max_queries`` operations are admitted and all of them wait."""


@dataclass(frozen=True, slots=True)
class PoolWaitingWithCapacity(State):
    """Operations wait for answers; there is room to admit more."""


@dataclass(frozen=True, slots=True)
class PoolIdle(State):
    """No operation exists."""


@dataclass(frozen=True, slots=True)
class PoolQueryFinished(State):
    """A query ended (done, timeout, cancelled or failed) with its closest nodes."""

    query_id: QueryID
    reason: FinishReason
    closest: tuple[Key, ...]
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class PoolBroadcastFinished(State):
    """A broadcast ended: who took the record and who failed."""

    query_id: QueryID
    reason: FinishReason
    contacted: tuple[Key, ...]
    errors: tuple[tuple[Key, str], ...]


PoolState = (
    PoolFindCloser
    | PoolSendMessage
    | PoolCancelRequest
    | PoolBroadcastStored
    | PoolWaitingAtCapacity
    | PoolWaitingWithCapacity
    | PoolIdle
    | PoolQueryFinished
    | PoolBroadcastFinished
)

_WAITING = (PoolWaitingAtCapacity, PoolWaitingWithCapacity, PoolIdle)


# -- the two kinds of operation, behind one face -----------------------------------------------


class _Operation:
    """What the pool needs of an operation: its events built for it, its states translated."""

    __slots__ = ("admitted", "deadline", "query_id", "ready")

    def __init__(self, query_id: QueryID, deadline: float) -> None:
        self.query_id = query_id
        self.deadline = deadline
        """When the pool stops it: ``query_timeout`` after it was added, or the caller's
        deadline if earlier."""
        self.admitted = False
        self.ready = False
        """It returned an action state: the next poll continues it."""

    def poll(self, now: float) -> PoolState:
        raise NotImplementedError

    def stop(self, reason: FinishReason, trace: Trace, now: float) -> PoolState:
        raise NotImplementedError

    def response(self, event: PoolNodeResponse, now: float) -> PoolState:
        raise NotImplementedError

    def failure(self, event: PoolNodeFailure, now: float) -> PoolState:
        raise NotImplementedError

    def dropped(self, event: PoolNodeDropped, now: float) -> PoolState:
        raise NotImplementedError

    def next_due(self) -> float | None:
        raise NotImplementedError

    @property
    def stats(self) -> QueryStats:
        raise NotImplementedError


class _QueryOperation(_Operation):
    __slots__ = ("query",)

    def __init__(self, query: Query, deadline: float) -> None:
        super().__init__(query.query_id, deadline)
        self.query = query

    def _advance(self, event: QueryEvent, now: float) -> PoolState:
        return _translate_query(self.query.advance(event, now))

    def poll(self, now: float) -> PoolState:
        return self._advance(QueryPoll(), now)

    def stop(self, reason: FinishReason, trace: Trace, now: float) -> PoolState:
        return self._advance(QueryCancel(reason, trace=trace), now)

    def response(self, event: PoolNodeResponse, now: float) -> PoolState:
        qev = QueryNodeResponse(event.node, event.closer_nodes, event.response, trace=event.trace)
        return self._advance(qev, now)

    def failure(self, event: PoolNodeFailure, now: float) -> PoolState:
        return self._advance(QueryNodeFailure(event.node, event.error, trace=event.trace), now)

    def dropped(self, event: PoolNodeDropped, now: float) -> PoolState:
        return self._advance(QueryNodeDropped(event.node, trace=event.trace), now)

    def next_due(self) -> float | None:
        return self.query.next_due()

    @property
    def stats(self) -> QueryStats:
        return self.query.stats


class _BroadcastOperation(_Operation):
    __slots__ = ("broadcast",)

    def __init__(self, broadcast: Broadcast, deadline: float) -> None:
        super().__init__(broadcast.query_id, deadline)
        self.broadcast = broadcast

    def _advance(self, event: BcastEvent, now: float) -> PoolState:
        return _translate_broadcast(self.broadcast.advance(event, now), self.stats)

    def poll(self, now: float) -> PoolState:
        return self._advance(BcastPoll(), now)

    def stop(self, reason: FinishReason, trace: Trace, now: float) -> PoolState:
        return self._advance(BcastStop(reason, trace=trace), now)

    def response(self, event: PoolNodeResponse, now: float) -> PoolState:
        if event.store:
            return self._advance(BcastStoreSuccess(event.node, trace=event.trace), now)
        bev = BcastLookupResponse(event.node, event.closer_nodes, trace=event.trace)
        return self._advance(bev, now)

    def failure(self, event: PoolNodeFailure, now: float) -> PoolState:
        if event.store:
            return self._advance(BcastStoreFailure(event.node, event.error, trace=event.trace), now)
        return self._advance(BcastLookupFailure(event.node, event.error, trace=event.trace), now)

    def dropped(self, event: PoolNodeDropped, now: float) -> PoolState:
        if event.store:
            return self._advance(BcastStoreDropped(event.node, trace=event.trace), now)
        return self._advance(BcastLookupDropped(event.node, trace=event.trace), now)

    def next_due(self) -> float | None:
        return self.broadcast.next_due()

    @property
    def stats(self) -> QueryStats:
        return self.broadcast.lookup_stats


def _translate_query(state: QueryState) -> PoolState:
    match state:
        case QueryFindCloser():
            return PoolFindCloser(
                state.query_id, state.node, state.target, state.stats, trace=state.trace
            )
        case QuerySendMessage():
            return PoolSendMessage(
                state.query_id, state.node, state.target, state.message, state.stats,
                trace=state.trace,
            )
        case QueryCancelRequest():
            return PoolCancelRequest(state.query_id, state.node, trace=state.trace)
        case QueryFinished():
            return PoolQueryFinished(
                state.query_id, state.reason, state.closest, state.stats, trace=state.trace
            )
        case QueryWaitingAtCapacity():
            return PoolWaitingAtCapacity(trace=state.trace)
        case QueryWaitingWithCapacity():
            return PoolWaitingWithCapacity(trace=state.trace)
        case _:
            assert_never(state)


def _translate_broadcast(state: BcastState, stats: QueryStats) -> PoolState:
    match state:
        case BcastFindCloser():
            return PoolFindCloser(
                state.query_id, state.node, state.target, stats, trace=state.trace
            )
        case BcastStoreRecord():
            return PoolSendMessage(
                state.query_id, state.node, state.node, state.message, stats, store=True,
                trace=state.trace,
            )
        case BcastCancelRequest():
            return PoolCancelRequest(state.query_id, state.node, state.store, trace=state.trace)
        case BcastStored():
            return PoolBroadcastStored(
                state.query_id, state.node, state.stored, state.settled, trace=state.trace
            )
        case BcastWaiting():
            return PoolWaitingWithCapacity(trace=state.trace)
        case BcastFinished():
            return PoolBroadcastFinished(
                state.query_id, state.reason, state.contacted, state.errors, trace=state.trace
            )
        case _:
            assert_never(state)


# -- the pool -----------------------------------------------------------------------------------


class QueryPool:
    """Runs many queries and broadcasts fairly within one bound (rules in the module docstring)."""

    def __init__(
        self,
        self_key: Key,
        config: PoolConfig | None = None,
        broadcast: BroadcastConfig | None = None,
    ) -> None:
        self.config = config or PoolConfig()
        self.config.validate()
        self.broadcast_config = broadcast or BroadcastConfig()
        self.broadcast_config.validate()
        self.self_key = self_key
        self._ops: dict[QueryID, _Operation] = {}
        """Every operation, oldest first."""
        self._admitted = 0
        self._current: _Operation | None = None
        """The operation that returned an action state last: a poll continues it first."""

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, query_id: object) -> bool:
        return query_id in self._ops

    @property
    def admitted(self) -> int:
        """Operations admitted (running); the rest are queued."""
        return self._admitted

    def query(self, query_id: QueryID) -> Query | None:
        """The query with this id, if it is one and still exists (for partial results)."""
        op = self._ops.get(query_id)
        return op.query if isinstance(op, _QueryOperation) else None

    def stats(self, query_id: QueryID) -> QueryStats | None:
        """The lookup counters of an operation (a broadcast's are its lookup's)."""
        op = self._ops.get(query_id)
        return op.stats if op is not None else None

    def next_due(self) -> float | None:
        """The earliest time a poll will act: a timeout, or an admitted operation's due time."""
        due: float | None = None
        for op in self._ops.values():
            due = earliest(due, op.deadline)
            if op.admitted:
                due = earliest(due, op.next_due())
        return due

    def advance(self, event: PoolEvent, now: float) -> PoolState:
        """Apply ``event`` at ``now`` and return the pool's next wish."""
        state: PoolState | None = None
        match event:
            case PoolAddQuery():
                self._add_query(event, now)
            case PoolAddBroadcast():
                self._add_broadcast(event, now)
            case PoolStopQuery(query_id=qid):
                op = self._ops.get(qid)
                if op is not None:
                    return self._record(op, op.stop(FinishReason.CANCELLED, event.trace, now))
            case PoolNodeResponse():
                if op := self._admitted_op(event.query_id):
                    state = self._record(op, op.response(event, now))
            case PoolNodeFailure():
                if op := self._admitted_op(event.query_id):
                    state = self._record(op, op.failure(event, now))
            case PoolNodeDropped():
                if op := self._admitted_op(event.query_id):
                    state = self._record(op, op.dropped(event, now))
            case PoolPoll():
                pass
            case _:
                assert_never(event)
        if state is not None and not isinstance(state, _WAITING):
            return state
        return self._poll(now)

    # -- internals ---------------------------------------------------------------------------

    def _add_query(self, event: PoolAddQuery, now: float) -> None:
        qcfg = self.config.query
        if event.num_results is not None and event.num_results != qcfg.num_results:
            qcfg = replace(qcfg, num_results=event.num_results)
        query = Query(
            event.query_id, self.self_key, event.target, event.seeds, qcfg,
            message=event.message, trace=event.trace,
        )
        self._insert(_QueryOperation(query, self._deadline(event.trace, now)))

    def _add_broadcast(self, event: PoolAddBroadcast, now: float) -> None:
        bcfg = self.broadcast_config
        bcast = event.strategy(
            event.query_id, self.self_key, event.target, event.message, event.seeds, bcfg,
            trace=event.trace,
        )
        self._insert(_BroadcastOperation(bcast, self._deadline(event.trace, now)))

    def _deadline(self, trace: Trace, now: float) -> float:
        timeout = now + self.config.query_timeout
        return timeout if trace.deadline is None else min(timeout, trace.deadline)

    def _insert(self, op: _Operation) -> None:
        if op.query_id in self._ops:
            raise DuplicateQueryError(f"query {op.query_id!r} is already running")
        self._ops[op.query_id] = op

    def _admitted_op(self, query_id: QueryID) -> _Operation | None:
        """The operation an answer is for; ``None`` if it ended already (a late answer)."""
        op = self._ops.get(query_id)
        return op if op is not None and op.admitted else None

    def _record(self, op: _Operation, state: PoolState) -> PoolState:
        """Book what ``op`` answered: its end, or whether the next poll must continue it."""
        if isinstance(state, PoolQueryFinished | PoolBroadcastFinished):
            del self._ops[op.query_id]
            if op.admitted:
                self._admitted -= 1
            op.ready = False
        else:
            op.ready = not isinstance(state, _WAITING)
        self._current = op if op.ready else None
        return state

    def _poll(self, now: float) -> PoolState:
        current = self._current
        if current is not None and current.ready and current.query_id in self._ops:
            state = self._record(current, current.poll(now))
            if not isinstance(state, _WAITING):
                return state
        limit = self.config.max_queries
        for op in list(self._ops.values()):
            if now >= op.deadline:
                return self._record(op, op.stop(FinishReason.TIMEOUT, NO_TRACE, now))
            if not op.admitted:
                if self._admitted >= limit:
                    continue  # queued: waits for a slot, but still times out above
                op.admitted = True
                op.ready = True
                self._admitted += 1
            due = op.next_due()
            if op.ready or (due is not None and due <= now):
                state = self._record(op, op.poll(now))
                if not isinstance(state, _WAITING):
                    return state
        if not self._ops:
            return PoolIdle()
        if self._admitted >= limit:
            return PoolWaitingAtCapacity()
        return PoolWaitingWithCapacity()
