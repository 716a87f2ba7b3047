"""The query state machine: one iterative Kademlia lookup.

Rules of the machine (read top to bottom as a table):

* Nodes are kept in ascending XOR distance to the target. Each has a state:
  NOT_CONTACTED → WAITING (request sent, deadline armed) → SUCCEEDED | FAILED |
  UNRESPONSIVE (deadline passed without an answer; a late answer still makes
  it SUCCEEDED).
* Every ``advance`` first applies its event, then walks the nodes closest
  first: an expired WAITING node becomes UNRESPONSIVE; a NOT_CONTACTED node gets
  a request while fewer than ``concurrency`` are in flight (one request per
  ``advance``: the caller polls again until the state is a waiting one); the
  walk finishes the query once ``num_results`` SUCCEEDED nodes are counted with
  no closer node still waiting.
* Finishing (done, deadline, cancel) first emits :class:`QueryCancelRequest`
  for every request still outstanding, one per ``advance``, then a single
  :class:`QueryFinished`, which every later ``advance`` repeats.
* Responses from nodes never asked, and duplicate answers, are ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import assert_never

from zikade_py.core.event import Event, FinishReason
from zikade_py.core.key import Key
from zikade_py.core.trace import NO_TRACE, Trace, earliest

QueryID = str
"""Identifies a query within a coordinator (also used for routing walks)."""


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """Knobs of a single lookup; defaults follow go-libp2p-kad-dht (WIRE.md §9)."""

    concurrency: int = 10
    """α: requests kept in flight while candidates remain."""
    num_results: int = 20
    """k: the query is done when this many of the closest nodes have answered."""
    request_timeout: float = 10.0
    """Seconds a node has to answer before it counts as unresponsive."""
    max_closer_per_response: int = 40
    """Closer nodes taken from one answer (go takes 2·k); bounds a hostile peer's effect."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration no query could run with."""
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.num_results < 1:
            raise ValueError("num_results must be at least 1")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if self.max_closer_per_response < 1:
            raise ValueError("max_closer_per_response must be at least 1")


@dataclass(frozen=True, slots=True)
class QueryStats:
    """Counters of one query, reported with progress and with its end."""

    start: float | None = None
    end: float | None = None
    requests: int = 0
    success: int = 0
    failure: int = 0
    exhausted: bool = False


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryPoll(Event):
    """Advance on time alone (a timer fired, or the caller wants the next request)."""


@dataclass(frozen=True, slots=True)
class QueryCancel(Event):
    """Stop the query; outstanding requests are cancelled before it finishes."""

    reason: FinishReason = FinishReason.CANCELLED


@dataclass(frozen=True, slots=True)
class QueryNodeResponse(Event):
    """A node answered; ``closer_nodes`` are new candidates, ``response`` is opaque."""

    node: Key
    closer_nodes: tuple[Key, ...] = ()
    response: object = None


@dataclass(frozen=True, slots=True)
class QueryNodeFailure(Event):
    """A request to a node failed (error, reset, dropped by admission)."""

    node: Key
    error: str = ""


QueryEvent = QueryPoll | QueryCancel | QueryNodeResponse | QueryNodeFailure


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryFindCloser(Event):
    """Send FIND_NODE(target) to ``node``; the trace carries the request deadline."""

    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QuerySendMessage(Event):
    """Send the query's opaque ``message`` to ``node``."""

    query_id: QueryID
    node: Key
    target: Key
    message: object
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryCancelRequest(Event):
    """Cancel the request in flight to ``node``: the query no longer wants its answer."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class QueryWaitingAtCapacity(Event):
    """α requests are in flight; nothing to do until an answer or a deadline."""

    query_id: QueryID
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryWaitingWithCapacity(Event):
    """Requests are in flight, there is room, but no candidate is left to ask."""

    query_id: QueryID
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryFinished(Event):
    """The terminal state: why it ended and the closest nodes that answered."""

    query_id: QueryID
    reason: FinishReason
    closest: tuple[Key, ...]
    stats: QueryStats


QueryState = (
    QueryFindCloser
    | QuerySendMessage
    | QueryCancelRequest
    | QueryWaitingAtCapacity
    | QueryWaitingWithCapacity
    | QueryFinished
)


class NodeState(Enum):
    """Where one node stands in a query."""

    NOT_CONTACTED = "not-contacted"
    WAITING = "waiting"
    UNRESPONSIVE = "unresponsive"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


@dataclass(slots=True)
class _Node:
    key: Key
    state: NodeState = NodeState.NOT_CONTACTED
    deadline: float = 0.0
    outstanding: bool = False
    """A request was sent and neither an answer nor a failure came back."""


@dataclass(slots=True)
class _Finishing:
    reason: FinishReason
    closest: tuple[Key, ...]
    result: QueryFinished | None = None
    pending_cancels: list[Key] = field(default_factory=list)


class Query:
    """One lookup towards ``target``, as a pure state machine.

    ``message`` ``None`` makes it a find-closer query (FIND_NODE requests);
    otherwise every request carries ``message`` (GET_PROVIDERS, GET_VALUE…)
    and the answers' closer nodes drive the walk the same way.
    """

    def __init__(
        self,
        query_id: QueryID,
        self_key: Key,
        target: Key,
        seeds: Iterable[Key],
        config: QueryConfig | None = None,
        *,
        message: object = None,
        trace: Trace = NO_TRACE,
    ) -> None:
        self.config = config or QueryConfig()
        self.config.validate()
        self.query_id = query_id
        self.self_key = self_key
        self.target = target
        self.message = message
        self.trace = trace
        self._nodes: dict[Key, _Node] = {}
        self._order: list[tuple[int, Key]] = []
        self._in_flight = 0
        self._stats = QueryStats()
        self._finishing: _Finishing | None = None
        for key in seeds:
            self._add_candidate(key)

    # -- public view ---------------------------------------------------------------------

    @property
    def stats(self) -> QueryStats:
        """Counters so far."""
        return self._stats

    @property
    def in_flight(self) -> int:
        """Requests currently waiting for an answer within their deadline."""
        return self._in_flight

    @property
    def finished(self) -> bool:
        """Whether the terminal state has been reached."""
        return self._finishing is not None and self._finishing.result is not None

    def node_state(self, key: Key) -> NodeState | None:
        """The state of ``key`` in this query, ``None`` if it never heard of it."""
        node = self._nodes.get(key)
        return node.state if node else None

    def closest_succeeded(self, n: int | None = None) -> tuple[Key, ...]:
        """The closest nodes that answered, closest first (partial results)."""
        limit = self.config.num_results if n is None else n
        out: list[Key] = []
        for _, key in self._order:
            if self._nodes[key].state is NodeState.SUCCEEDED:
                out.append(key)
                if len(out) >= limit:
                    break
        return tuple(out)

    def next_due(self) -> float | None:
        """The earliest request or query deadline still ahead, if any."""
        if self._finishing is not None:
            return None
        due = self.trace.deadline
        for node in self._nodes.values():
            if node.state is NodeState.WAITING:
                due = earliest(due, node.deadline)
        return due

    # -- the machine ---------------------------------------------------------------------

    def advance(self, event: QueryEvent, now: float) -> QueryState:
        """Apply ``event`` at time ``now`` and return what the query wants next."""
        if self._finishing is not None:
            return self._continue_finishing(now)
        match event:
            case QueryPoll():
                pass
            case QueryCancel(reason=reason):
                return self._finish(reason, now)
            case QueryNodeResponse():
                self._on_response(event, now)
            case QueryNodeFailure():
                self._on_failure(event)
            case _:
                assert_never(event)
        if self.trace.expired(now):
            return self._finish(FinishReason.TIMEOUT, now)
        return self._walk(now)

    def _on_response(self, event: QueryNodeResponse, now: float) -> None:
        node = self._nodes.get(event.node)
        if node is None or node.state not in (NodeState.WAITING, NodeState.UNRESPONSIVE):
            return  # never asked, or a duplicate answer
        if node.state is NodeState.WAITING:
            self._in_flight -= 1
        node.state = NodeState.SUCCEEDED
        node.outstanding = False
        self._stats = replace(self._stats, success=self._stats.success + 1)
        for key in event.closer_nodes[: self.config.max_closer_per_response]:
            self._add_candidate(key)

    def _on_failure(self, event: QueryNodeFailure) -> None:
        node = self._nodes.get(event.node)
        if node is None or not node.outstanding:
            return
        if node.state is NodeState.WAITING:
            self._in_flight -= 1
            self._stats = replace(self._stats, failure=self._stats.failure + 1)
        node.state = NodeState.FAILED
        node.outstanding = False

    def _add_candidate(self, key: Key) -> None:
        if key == self.self_key or key in self._nodes:
            return
        self._nodes[key] = _Node(key)
        bisect.insort(self._order, (key.value ^ self.target.value, key))

    def _walk(self, now: float) -> QueryState:
        cfg = self.config
        successes = 0
        progressing = False
        at_capacity = False
        for _, key in self._order:
            node = self._nodes[key]
            state = node.state
            if state is NodeState.WAITING:
                if now >= node.deadline:
                    node.state = NodeState.UNRESPONSIVE
                    self._in_flight -= 1
                    self._stats = replace(self._stats, failure=self._stats.failure + 1)
                else:
                    progressing = True
            elif state is NodeState.SUCCEEDED:
                successes += 1
                if not progressing and successes >= cfg.num_results:
                    return self._finish(FinishReason.DONE, now)
            elif state is NodeState.NOT_CONTACTED:
                if self._in_flight < cfg.concurrency:
                    return self._request(node, now)
                at_capacity = True
        if self._in_flight > 0:
            if at_capacity or self._in_flight >= cfg.concurrency:
                return QueryWaitingAtCapacity(self.query_id, self._stats, trace=self.trace)
            return QueryWaitingWithCapacity(self.query_id, self._stats, trace=self.trace)
        self._stats = replace(self._stats, exhausted=True)
        reason = FinishReason.DONE if successes else FinishReason.FAILED
        return self._finish(reason, now)

    def _request(self, node: _Node, now: float) -> QueryState:
        deadline = now + self.config.request_timeout
        node.state = NodeState.WAITING
        node.deadline = deadline
        node.outstanding = True
        self._in_flight += 1
        start = self._stats.start if self._stats.start is not None else now
        self._stats = replace(self._stats, start=start, requests=self._stats.requests + 1)
        trace = self.trace.with_deadline(deadline)
        if self.message is None:
            return QueryFindCloser(self.query_id, node.key, self.target, self._stats, trace=trace)
        return QuerySendMessage(
            self.query_id, node.key, self.target, self.message, self._stats, trace=trace
        )

    def _finish(self, reason: FinishReason, now: float) -> QueryState:
        self._stats = replace(self._stats, end=now)
        pending = [key for _, key in self._order if self._nodes[key].outstanding]
        self._finishing = _Finishing(reason, self.closest_succeeded(), pending_cancels=pending)
        return self._continue_finishing(now)

    def _continue_finishing(self, now: float) -> QueryState:
        fin = self._finishing
        assert fin is not None
        if fin.pending_cancels:
            key = fin.pending_cancels.pop(0)
            node = self._nodes[key]
            if node.state is NodeState.WAITING:
                self._in_flight -= 1
                node.state = NodeState.FAILED
            node.outstanding = False
            return QueryCancelRequest(self.query_id, key, trace=self.trace)
        if fin.result is None:
            fin.result = QueryFinished(
                self.query_id, fin.reason, fin.closest, self._stats, trace=self.trace
            )
        return fin.result
