"""Broadcast state machines: put a record on the nodes that should hold it.

Three strategies share one shape (events ``Bcast*``, states ``Bcast*``):

* :class:`FollowUp` — look up the ``num_replicas`` closest nodes, then store the
  record with each of them (what go-libp2p-kad-dht does for provide / put).
* :class:`Static` — store with the given nodes, no lookup (corrective puts).
* :class:`Optimistic` — like FollowUp, but a node that answered the lookup and
  already ranks among the ``num_replicas`` closest answered nodes gets the
  record at once, while the lookup goes on; when the lookup ends, the final
  closest that were not stored yet get it too. Most stores overlap the lookup,
  so the broadcast ends soon after it (zikade declared this and panicked).

Rules common to all: stores run at most ``store_concurrency`` at a time; every
successful store is reported with :class:`BcastStored` (an action state: advance
again), whose ``settled`` turns true once, when the strategy lets the caller
return (Optimistic: ``optimistic_return_ratio`` of the replicas stored, as go's
optimistic provide returns after 75 %); a request dropped by our own admission
control is retried after a back-off, never counted as the node's failure; a stop
cancels every outstanding request (lookup and store) before the single
:class:`BcastFinished`; a broadcast with nobody to store to finishes FAILED.
Events derived from an input carry that input's trace.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import ClassVar, assert_never

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
    QueryStats,
    QueryWaitingAtCapacity,
    QueryWaitingWithCapacity,
)
from zikade_py.core.trace import NO_TRACE, Trace, earliest


@dataclass(frozen=True, slots=True)
class BroadcastConfig:
    """Knobs of a broadcast; the lookup uses ``query``."""

    num_replicas: int = 20
    """k: how many of the closest nodes get the record."""
    store_concurrency: int = 10
    """Store requests in flight at once."""
    store_timeout: float = 10.0
    """Seconds a store request may take before it counts as failed."""
    optimistic_return_ratio: float = 0.75
    """Share of ``num_replicas`` an optimistic broadcast stores before it reports
    ``settled`` (go-libp2p-kad-dht's ``optProvReturnRatio``); the rest goes on."""
    query: QueryConfig = field(default_factory=QueryConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` for a broadcast that could never store anything."""
        if self.num_replicas < 1:
            raise ValueError("num_replicas must be at least 1")
        if self.store_concurrency < 1:
            raise ValueError("store_concurrency must be at least 1")
        if self.store_timeout <= 0:
            raise ValueError("store_timeout must be positive")
        if not 0.0 < self.optimistic_return_ratio <= 1.0:
            raise ValueError("optimistic_return_ratio must be within (0, 1]")
        self.query.validate()


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BcastPoll(Event):
    """Advance on time alone."""


@dataclass(frozen=True, slots=True)
class BcastStop(Event):
    """Stop the broadcast: cancel what is in flight, then finish."""

    reason: FinishReason = FinishReason.CANCELLED


@dataclass(frozen=True, slots=True)
class BcastLookupResponse(Event):
    """A node answered the broadcast's lookup."""

    node: Key
    closer_nodes: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class BcastLookupFailure(Event):
    """A lookup request failed."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class BcastLookupDropped(Event):
    """Our admission control refused a lookup request: the node is asked again later."""

    node: Key


@dataclass(frozen=True, slots=True)
class BcastStoreDropped(Event):
    """Our admission control refused a store request: it is retried later."""

    node: Key


@dataclass(frozen=True, slots=True)
class BcastStoreSuccess(Event):
    """A node took the record."""

    node: Key


@dataclass(frozen=True, slots=True)
class BcastStoreFailure(Event):
    """Storing with a node failed."""

    node: Key
    error: str = ""


BcastEvent = (
    BcastPoll
    | BcastStop
    | BcastLookupResponse
    | BcastLookupFailure
    | BcastLookupDropped
    | BcastStoreSuccess
    | BcastStoreFailure
    | BcastStoreDropped
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BcastFindCloser(State):
    """Lookup request: FIND_NODE(target) to ``node``."""

    query_id: QueryID
    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class BcastStoreRecord(State):
    """Store request: send the record ``message`` to ``node``."""

    query_id: QueryID
    node: Key
    message: object


@dataclass(frozen=True, slots=True)
class BcastCancelRequest(State):
    """Cancel the outstanding request to ``node`` (``store`` tells which of the two kinds)."""

    query_id: QueryID
    node: Key
    store: bool


@dataclass(frozen=True, slots=True)
class BcastStored(State):
    """``node`` took the record: ``stored`` so far; ``settled`` once the caller may return."""

    query_id: QueryID
    node: Key
    stored: int
    settled: bool


@dataclass(frozen=True, slots=True)
class BcastWaiting(State):
    """Requests are in flight; nothing to send now."""

    query_id: QueryID


@dataclass(frozen=True, slots=True)
class BcastFinished(State):
    """The single end of a broadcast: who took the record and who failed."""

    query_id: QueryID
    reason: FinishReason
    contacted: tuple[Key, ...]
    errors: tuple[tuple[Key, str], ...]


BcastState = (
    BcastFindCloser
    | BcastStoreRecord
    | BcastCancelRequest
    | BcastStored
    | BcastWaiting
    | BcastFinished
)


@dataclass(slots=True)
class _Store:
    node: Key
    deadline: float = 0.0
    retry_at: float | None = None
    """Set while a dropped store waits for its retry."""
    drops: int = 0


class Broadcast:
    """The shared machinery; the strategies (subclasses) differ in when stores start."""

    LOOKUP: ClassVar[bool] = True
    """Whether the strategy looks up the closest nodes (else it stores with the seeds)."""
    OPTIMISTIC: ClassVar[bool] = False
    """Whether stores start while the lookup still runs."""

    def __init__(
        self,
        query_id: QueryID,
        self_key: Key,
        target: Key,
        message: object,
        seeds: Iterable[Key],
        config: BroadcastConfig | None = None,
        *,
        trace: Trace = NO_TRACE,
    ) -> None:
        self.config = config or BroadcastConfig()
        self.config.validate()
        self.query_id = query_id
        self.target = target
        self.message = message
        self.trace = trace
        self._optimistic = self.OPTIMISTIC
        self._query: Query | None = None
        self._todo: dict[Key, _Store] = {}
        self._waiting: dict[Key, _Store] = {}
        self._done: set[Key] = set()
        self._contacted: list[Key] = []
        self._errors: list[tuple[Key, str]] = []
        self._cancels: deque[BcastCancelRequest] = deque()
        self._settle_at = (
            math.ceil(self.config.optimistic_return_ratio * self.config.num_replicas)
            if self.OPTIMISTIC
            else None
        )
        """Successful stores after which the caller may return (None: only at the end)."""
        self._stop_reason: FinishReason | None = None
        self._result: BcastFinished | None = None
        if self.LOOKUP:
            qcfg = self.config.query
            if qcfg.num_results != self.config.num_replicas:
                qcfg = replace(qcfg, num_results=self.config.num_replicas)
            self._query = Query(query_id, self_key, target, seeds, qcfg, trace=trace)
        else:
            for node in seeds:
                if node != self_key:
                    self._plan_store(node)

    @property
    def finished(self) -> bool:
        """Whether the terminal state was reached."""
        return self._result is not None

    @property
    def lookup_stats(self) -> QueryStats:
        """Counters of the lookup (empty for a static broadcast)."""
        return self._query.stats if self._query is not None else QueryStats()

    def next_due(self) -> float | None:
        """Earliest lookup or store deadline, or the broadcast's own deadline."""
        if self._result is not None:
            return None
        due = self.trace.deadline
        if self._query is not None:
            due = earliest(due, self._query.next_due())
        for store in self._waiting.values():
            due = earliest(due, store.deadline)
        if self._stop_reason is None and len(self._waiting) < self.config.store_concurrency:
            # At capacity a due retry waits for a free slot, which an answer brings.
            for store in self._todo.values():
                due = earliest(due, store.retry_at)
        return due

    def advance(self, event: BcastEvent, now: float) -> BcastState:
        """Apply ``event`` at ``now`` and return the broadcast's next wish."""
        if self._result is not None:
            return self._result
        match event:
            case BcastPoll():
                pass
            case BcastStop(reason=reason):
                self._stop(reason)
            case BcastLookupResponse(node=node, closer_nodes=closer):
                qev = QueryNodeResponse(node, closer, trace=event.trace)
                state = self._advance_query(qev, now)
                if state is not None:
                    return state
            case BcastLookupFailure(node=node, error=error):
                state = self._advance_query(QueryNodeFailure(node, error, trace=event.trace), now)
                if state is not None:
                    return state
            case BcastLookupDropped(node=node):
                state = self._advance_query(QueryNodeDropped(node, trace=event.trace), now)
                if state is not None:
                    return state
            case BcastStoreSuccess(node=node):
                if self._waiting.pop(node, None) is not None:
                    self._contacted.append(node)
                    stored = len(self._contacted)
                    settled = stored == self._settle_at
                    return BcastStored(self.query_id, node, stored, settled, trace=self.trace)
            case BcastStoreFailure(node=node, error=error):
                if self._waiting.pop(node, None) is not None:
                    self._errors.append((node, error or "store failed"))
            case BcastStoreDropped(node=node):
                store = self._waiting.pop(node, None)
                if store is not None and self._stop_reason is None:
                    self._done.discard(node)
                    delay = min(
                        self.config.query.drop_retry_delay * (2**store.drops),
                        self.config.store_timeout,
                    )
                    store.drops += 1
                    store.retry_at = now + delay
                    self._todo[node] = store
            case _:
                assert_never(event)
        if self._stop_reason is None and self.trace.expired(now):
            self._stop(FinishReason.TIMEOUT)
        return self._step(now)

    # -- internals --------------------------------------------------------------------------

    def _plan_store(self, node: Key) -> None:
        if node in self._done or node in self._todo or node in self._waiting:
            return
        self._todo[node] = _Store(node)

    def _next_ready_store(self, now: float) -> _Store | None:
        for store in self._todo.values():
            if store.retry_at is None or store.retry_at <= now:
                return store
        return None

    def _advance_query(self, event: QueryEvent, now: float) -> BcastState | None:
        if self._query is None or self._query.finished:
            return None
        qstate = self._query.advance(event, now)
        if self._optimistic and isinstance(event, QueryNodeResponse):
            self._plan_optimistic()
        return self._translate(qstate)

    def _plan_optimistic(self) -> None:
        assert self._query is not None
        closest = self._query.closest_succeeded(self.config.num_replicas)
        if len(closest) >= self.config.num_replicas:
            for node in closest:
                self._plan_store(node)

    def _translate(self, qstate: object) -> BcastState | None:
        match qstate:
            case QueryFindCloser(node=node, target=target, trace=trace):
                return BcastFindCloser(self.query_id, node, target, trace=trace)
            case QuerySendMessage():
                raise AssertionError("broadcast lookups are find-closer queries")
            case QueryCancelRequest(node=node):
                return BcastCancelRequest(self.query_id, node, store=False, trace=self.trace)
            case QueryFinished(reason=reason, closest=closest):
                if self._stop_reason is None:
                    if reason is FinishReason.TIMEOUT:
                        self._stop_reason = FinishReason.TIMEOUT
                    for node in closest:
                        self._plan_store(node)
                return None
            case QueryWaitingAtCapacity() | QueryWaitingWithCapacity():
                return None
        return None

    def _stop(self, reason: FinishReason) -> None:
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        for node in self._waiting:
            self._cancels.append(BcastCancelRequest(self.query_id, node, True, trace=self.trace))
            self._errors.append((node, reason.value))
        self._waiting.clear()
        for node in self._todo:
            self._errors.append((node, reason.value))
        self._todo.clear()

    def _step(self, now: float) -> BcastState:
        if self._cancels:
            return self._cancels.popleft()
        if self._query is not None and not self._query.finished:
            qevent: QueryEvent = QueryPoll()
            if self._stop_reason is not None:
                qevent = QueryCancel(self._stop_reason)
            state = self._translate(self._query.advance(qevent, now))
            if state is not None:
                return state
            if self._query.finished and self._stop_reason is not None:
                return self._step(now)
        for node, store in list(self._waiting.items()):
            if now >= store.deadline:
                del self._waiting[node]
                self._errors.append((node, "timeout"))
                return BcastCancelRequest(self.query_id, node, True, trace=self.trace)
        if self._stop_reason is None and len(self._waiting) < self.config.store_concurrency:
            ready = self._next_ready_store(now)
            if ready is not None:
                del self._todo[ready.node]
                ready.retry_at = None
                ready.deadline = now + self.config.store_timeout
                self._waiting[ready.node] = ready
                self._done.add(ready.node)
                trace = self.trace.with_deadline(ready.deadline)
                return BcastStoreRecord(self.query_id, ready.node, self.message, trace=trace)
        lookup_running = self._query is not None and not self._query.finished
        if self._waiting or lookup_running or (self._todo and self._stop_reason is None):
            return BcastWaiting(self.query_id, trace=self.trace)
        reason = self._stop_reason
        if reason is None:
            reason = FinishReason.DONE if self._contacted else FinishReason.FAILED
        self._result = BcastFinished(
            self.query_id, reason, tuple(self._contacted), tuple(self._errors), trace=self.trace
        )
        return self._result


class FollowUp(Broadcast):
    """Look up the closest nodes, then store with all of them."""

    LOOKUP = True


class Static(Broadcast):
    """Store with exactly the given nodes."""

    LOOKUP = False


class Optimistic(Broadcast):
    """Store with likely-final closest nodes while the lookup still runs."""

    LOOKUP = True
    OPTIMISTIC = True
