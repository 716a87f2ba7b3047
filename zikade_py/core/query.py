"""The query state machine: one iterative Kademlia lookup.

Rules of the machine (read top to bottom as a table):

* Nodes are kept in ascending XOR distance to the target. Each has a state:
  NOT_CONTACTED → WAITING (request sent) → SUCCEEDED | FAILED | UNRESPONSIVE
  (no answer within the wait timeout; a late answer still makes it SUCCEEDED).
* The wait timeout is ``request_timeout`` until a few nodes have answered, then
  adapts to the query's own answer times (see :class:`QueryConfig`), so one
  silent node does not hold a whole lookup for the full request timeout.
* Every ``advance`` first applies its event, expires overdue waits, then walks
  the nodes closest first: the first NOT_CONTACTED node gets a request while
  fewer than ``concurrency`` are in flight (one request per ``advance``: the
  caller polls again until the state is a waiting one) — or, at capacity, the
  walk stops there and waits; the walk finishes the query once
  ``num_results`` SUCCEEDED nodes are counted with no closer node still
  waiting or not yet asked.
* Finishing (done, deadline, cancel) first emits :class:`QueryCancelRequest`
  for every request still outstanding, one per ``advance``, then a single
  :class:`QueryFinished`, which every later ``advance`` repeats.
* Responses from nodes never asked, and duplicate answers, are ignored.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    """Hard limit: seconds a request may stay in flight (the driver enforces it too)."""
    max_closer_per_response: int = 40
    """Closer nodes taken from one answer (go takes 2·k); bounds a hostile peer's effect."""
    adaptive_timeout: bool = True
    """Stop waiting on a node that is much slower than this query's other nodes.

    Once ``adaptive_min_samples`` nodes have answered, a node that has not answered
    within ``adaptive_factor`` × the median answer time (at least
    ``adaptive_floor``) counts as unresponsive for the walk: it no longer holds up
    the end of the query nor a concurrency slot. Its request stays in flight until
    ``request_timeout`` and a late answer still counts. In the simulator with 10%
    silent nodes this cut the median lookup from the full request timeout (10.1 s)
    to about a second (scripts/bench/sim_timeouts.py).
    """
    adaptive_factor: float = 3.0
    adaptive_floor: float = 1.0
    adaptive_min_samples: int = 3

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
        if self.adaptive_factor <= 1.0:
            raise ValueError("adaptive_factor must be above 1")
        if self.adaptive_floor <= 0:
            raise ValueError("adaptive_floor must be positive")
        if self.adaptive_min_samples < 1:
            raise ValueError("adaptive_min_samples must be at least 1")


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
    sent_at: float = 0.0
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
        self._waiting: deque[_Node] = deque()
        """Nodes in the order their requests were sent: the oldest wait expires first."""
        self._answer_times: list[float] = []
        """Answer times so far, kept sorted (the median sets the adaptive wait)."""
        self._wait_timeout = self.config.request_timeout
        self._in_flight = 0
        self._start: float | None = None
        self._end: float | None = None
        self._requests = 0
        self._success = 0
        self._failure = 0
        self._exhausted = False
        self._finishing: _Finishing | None = None
        for key in seeds:
            self._add_candidate(key)

    # -- public view ---------------------------------------------------------------------

    @property
    def stats(self) -> QueryStats:
        """Counters so far."""
        return QueryStats(
            self._start, self._end, self._requests, self._success, self._failure, self._exhausted
        )

    @property
    def in_flight(self) -> int:
        """Requests the walk still waits for (answered, failed and given-up ones excluded)."""
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

    def wait_timeout(self) -> float:
        """How long the walk waits for a node now (adaptive, see :class:`QueryConfig`)."""
        return self._wait_timeout

    def _record_answer_time(self, elapsed: float) -> None:
        cfg = self.config
        times = self._answer_times
        bisect.insort(times, elapsed)
        if cfg.adaptive_timeout and len(times) >= cfg.adaptive_min_samples:
            median = times[len(times) // 2]
            self._wait_timeout = min(
                cfg.request_timeout, max(cfg.adaptive_floor, cfg.adaptive_factor * median)
            )

    def next_due(self) -> float | None:
        """The earliest wait or query deadline still ahead, if any."""
        if self._finishing is not None:
            return None
        waiting = self._waiting
        while waiting and waiting[0].state is not NodeState.WAITING:
            waiting.popleft()
        due = self.trace.deadline
        if waiting:
            due = earliest(due, waiting[0].sent_at + self.wait_timeout())
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
        if node is None or not node.outstanding:
            return  # never asked, or a duplicate answer
        if node.state is NodeState.WAITING:
            self._in_flight -= 1
        node.state = NodeState.SUCCEEDED
        node.outstanding = False
        self._success += 1
        self._record_answer_time(now - node.sent_at)
        for key in event.closer_nodes[: self.config.max_closer_per_response]:
            self._add_candidate(key)

    def _on_failure(self, event: QueryNodeFailure) -> None:
        node = self._nodes.get(event.node)
        if node is None or not node.outstanding:
            return
        if node.state is NodeState.WAITING:
            self._in_flight -= 1
            self._failure += 1
        node.state = NodeState.FAILED
        node.outstanding = False

    def _add_candidate(self, key: Key) -> None:
        if key == self.self_key or key in self._nodes:
            return
        self._nodes[key] = _Node(key)
        bisect.insort(self._order, (key.value ^ self.target.value, key))

    def _expire(self, now: float) -> None:
        waiting = self._waiting
        timeout = self.wait_timeout()
        while waiting:
            node = waiting[0]
            if node.state is NodeState.WAITING:
                if now < node.sent_at + timeout:
                    return
                node.state = NodeState.UNRESPONSIVE
                self._in_flight -= 1
                self._failure += 1
            waiting.popleft()

    def _walk(self, now: float) -> QueryState:
        self._expire(now)
        cfg = self.config
        successes = 0
        progressing = False
        for _, key in self._order:
            node = self._nodes[key]
            state = node.state
            if state is NodeState.WAITING:
                progressing = True
            elif state is NodeState.SUCCEEDED:
                successes += 1
                if not progressing and successes >= cfg.num_results:
                    return self._finish(FinishReason.DONE, now)
            elif state is NodeState.NOT_CONTACTED:
                # The closest node not asked yet: ask it, or wait for a free slot.
                # Never finish past it, or the k closest would not all have answered.
                if self._in_flight < cfg.concurrency:
                    return self._request(node, now)
                return QueryWaitingAtCapacity(self.query_id, self.stats, trace=self.trace)
        if self._in_flight > 0:
            if self._in_flight >= cfg.concurrency:
                return QueryWaitingAtCapacity(self.query_id, self.stats, trace=self.trace)
            return QueryWaitingWithCapacity(self.query_id, self.stats, trace=self.trace)
        self._exhausted = True
        reason = FinishReason.DONE if successes else FinishReason.FAILED
        return self._finish(reason, now)

    def _request(self, node: _Node, now: float) -> QueryState:
        node.state = NodeState.WAITING
        node.sent_at = now
        node.outstanding = True
        self._waiting.append(node)
        self._in_flight += 1
        if self._start is None:
            self._start = now
        self._requests += 1
        trace = self.trace.with_deadline(now + self.config.request_timeout)
        if self.message is None:
            return QueryFindCloser(self.query_id, node.key, self.target, self.stats, trace=trace)
        return QuerySendMessage(
            self.query_id, node.key, self.target, self.message, self.stats, trace=trace
        )

    def _finish(self, reason: FinishReason, now: float) -> QueryState:
        self._end = now
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
                self.query_id, fin.reason, fin.closest, self.stats, trace=self.trace
            )
        return fin.result
