"""The query state machine: one iterative Kademlia lookup.

Rules of the machine (read top to bottom as a table):

* Candidates are kept in ascending XOR distance to the target. Each has a state:
  NOT_CONTACTED → WAITING (request sent) → SUCCEEDED | FAILED, with two detours:
  WAITING → SLOW (no answer within the adaptive wait; still in flight, a late
  answer makes it SUCCEEDED) and a request dropped by our own admission
  control sends the node back to NOT_CONTACTED, to be asked again after a
  short back-off (a local drop says nothing about the remote).
* FAILED means the node itself failed: an error, or no answer within the
  hard ``request_timeout``. Failed nodes are out of the walk; every other
  candidate keeps its place in the distance order.
* **Done is exact.** The query finishes DONE only when the ``num_results``
  closest candidates that have not failed have all answered (or, with fewer
  candidates left, all of them have). Slowness never shortens a walk.
* **The walk is k-bounded.** Requests go only to the ``num_results`` closest
  live candidates, widened by one for every SLOW node, so that slowness may
  widen the walk (more in parallel) but no answer is asked of a node that
  could not be in the result while closer ones are pending.
* ``concurrency`` (α) bounds the WAITING requests; SLOW ones do not hold a slot.
* Once ``num_results`` nodes have answered, any candidate farther than the
  ``num_results``-th answer can no longer be in the result: its request, if
  any, is cancelled at once and it is never asked (state SKIPPED).
* The adaptive wait is ``request_timeout`` until a few nodes have answered,
  then ``adaptive_factor`` × the median answer time (see :class:`QueryConfig`).
* Every ``advance`` applies its event, moves expired waits on (WAITING → SLOW
  at the adaptive wait, → FAILED at the hard timeout), then walks the
  candidates closest first and returns one wish: a request, a cancel, a
  waiting state, or the end. Action states mean "advance me again".
* Finishing (done, deadline, cancel) first emits :class:`QueryCancelRequest`
  for every request still outstanding, one per ``advance``, then a single
  :class:`QueryFinished`, which every later ``advance`` repeats.
* Responses from nodes never asked, and duplicate answers, are ignored.
* :meth:`Query.next_due` has no side effects: it reads what the last
  ``advance`` left.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from typing import assert_never

from zikade_py.core.event import Event, FinishReason, State
from zikade_py.core.key import Key
from zikade_py.core.trace import NO_TRACE, Trace, earliest

QueryID = str
"""Identifies a query within a coordinator (also used for routing walks)."""


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """Knobs of a single lookup; defaults follow go-libp2p-kad-dht (WIRE.md §9)."""

    concurrency: int = 10
    """α: requests kept waiting at once while candidates remain."""
    num_results: int = 20
    """k: the query is done when this many of the closest live candidates have answered."""
    request_timeout: float = 10.0
    """Hard limit: seconds a node has to answer before it counts as failed."""
    max_closer_per_response: int = 40
    """Closer nodes taken from one answer (go takes 2·k); bounds a hostile peer's effect."""
    adaptive_timeout: bool = True
    """Stop holding a concurrency slot for a node much slower than this query's others.

    Once ``adaptive_min_samples`` nodes have answered, a node that has not answered
    within ``adaptive_factor`` × the median answer time (at least
    ``adaptive_floor``) becomes SLOW: it frees its slot, so the walk asks another
    candidate in parallel, but the query still waits for its answer (or its hard
    ``request_timeout``) before it can finish past it.
    """
    adaptive_factor: float = 3.0
    adaptive_floor: float = 1.0
    adaptive_min_samples: int = 3
    drop_retry_delay: float = 0.05
    """Seconds before a node whose request our admission control dropped is asked again;
    doubles with every further drop of the same node, up to ``request_timeout``."""

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
        if self.drop_retry_delay <= 0:
            raise ValueError("drop_retry_delay must be positive")


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
    """A request to a node failed (error, reset, timeout): the node is out of the walk."""

    node: Key
    error: str = ""


@dataclass(frozen=True, slots=True)
class QueryNodeDropped(Event):
    """Our own admission control refused the request: ask the node again later."""

    node: Key


QueryEvent = QueryPoll | QueryCancel | QueryNodeResponse | QueryNodeFailure | QueryNodeDropped


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryFindCloser(State):
    """Send FIND_NODE(target) to ``node``; the trace carries the request deadline."""

    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QuerySendMessage(State):
    """Send the query's opaque ``message`` to ``node``."""

    query_id: QueryID
    node: Key
    target: Key
    message: object
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryCancelRequest(State):
    """Cancel the request in flight to ``node``: the query no longer wants its answer."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class QueryWaitingAtCapacity(State):
    """α requests are waiting; nothing to do until an answer or a deadline."""

    query_id: QueryID
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryWaitingWithCapacity(State):
    """There is room for requests, but no candidate may be asked now."""

    query_id: QueryID
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryFinished(State):
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
    """Where one candidate stands in a query."""

    NOT_CONTACTED = "not-contacted"
    WAITING = "waiting"
    SLOW = "slow"
    """Past the adaptive wait: still in flight, no longer holding a concurrency slot."""
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    """Farther than ``num_results`` answered nodes: it can no longer be in the result."""


@dataclass(slots=True, eq=False)
class _Node:
    key: Key
    distance: int
    """XOR distance to the target; unique per key, so it orders candidates without ties."""
    state: NodeState = NodeState.NOT_CONTACTED
    sent_at: float = 0.0
    outstanding: bool = False
    """A request was sent and neither an answer nor a failure came back."""
    retry_at: float | None = None
    """Set while a dropped request waits for its retry."""
    drops: int = 0


@dataclass(slots=True)
class _Finishing:
    reason: FinishReason
    closest: tuple[Key, ...]
    result: QueryFinished | None = None
    pending_cancels: deque[Key] = field(default_factory=deque)


class Query:
    """One lookup towards ``target``, as a pure state machine (rules in the module docstring).

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
        self._self_value = self_key.value
        self._target_value = target.value
        self._nodes: dict[int, _Node] = {}
        """Every candidate by its key's int value (a C-level hash, no ``Key.__hash__`` call)."""
        self._distances: list[int] = []
        """Candidates' distances to the target, ascending; ``_order`` holds their nodes."""
        self._order: list[_Node] = []
        self._settled_at = 0
        """Length of the closest-first prefix of ``_order`` known to be settled (each node
        SUCCEEDED, FAILED or SKIPPED): the walk resumes there instead of rescanning it."""
        self._settled_live = 0
        """SUCCEEDED nodes in that prefix (the only live ones a settled prefix holds)."""
        self._stats = QueryStats()
        self._after_request: tuple[float, bool] | None = None
        """Set by a walk that returned a request: when, and whether it saw another node it
        could ask. A poll at the same time that follows needs no walk when it could not."""
        """The counters as last reported: every state carries them, most repeat the last."""
        self._waiting: deque[_Node] = deque()
        """WAITING nodes in the order their requests were sent: the oldest wait expires first."""
        self._slow: deque[_Node] = deque()
        """SLOW nodes in send order: the oldest reaches the hard timeout first."""
        self._retrying: list[_Node] = []
        """Nodes whose dropped request waits for a retry."""
        self._answer_times: list[float] = []
        """Answer times so far, kept sorted (the median sets the adaptive wait)."""
        self._wait_timeout = self.config.request_timeout
        self._in_flight = 0
        """WAITING nodes (SLOW ones excluded): what α bounds."""
        self._slow_count = 0
        self._requested: dict[int, _Node] = {}
        """Nodes with a request sent and neither answered, failed nor cancelled."""
        self._pending_cancels: deque[Key] = deque()
        """Requests to SKIPPED nodes, to be cancelled one per ``advance``."""
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
        last = self._stats
        if (
            last.requests != self._requests
            or last.success != self._success
            or last.failure != self._failure
            or last.start != self._start
            or last.end != self._end
            or last.exhausted != self._exhausted
        ):
            last = self._stats = QueryStats(
                self._start, self._end, self._requests, self._success, self._failure,
                self._exhausted,
            )
        return last

    @property
    def in_flight(self) -> int:
        """Requests holding a concurrency slot (SLOW, answered and failed ones excluded)."""
        return self._in_flight

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered, failed or cancelled."""
        return len(self._requested)

    @property
    def finished(self) -> bool:
        """Whether the terminal state has been reached."""
        return self._finishing is not None and self._finishing.result is not None

    def node_state(self, key: Key) -> NodeState | None:
        """The state of ``key`` in this query, ``None`` if it never heard of it."""
        node = self._nodes.get(key.value)
        return node.state if node else None

    def closest_succeeded(self, n: int | None = None) -> tuple[Key, ...]:
        """The closest nodes that answered, closest first (partial results)."""
        limit = self.config.num_results if n is None else n
        out: list[Key] = []
        for node in self._order:
            if node.state is NodeState.SUCCEEDED:
                out.append(node.key)
                if len(out) >= limit:
                    break
        return tuple(out)

    def wait_timeout(self) -> float:
        """How long a request holds its concurrency slot now (see :class:`QueryConfig`)."""
        return self._wait_timeout

    def next_due(self) -> float | None:
        """The earliest wait, retry or query deadline still ahead, if any (no side effects)."""
        if self._finishing is not None:
            return None
        due = self.trace.deadline
        for node in self._waiting:
            if node.state is NodeState.WAITING:
                due = earliest(due, node.sent_at + self._wait_timeout)
                break
        for node in self._slow:
            if node.state is NodeState.SLOW:
                due = earliest(due, node.sent_at + self.config.request_timeout)
                break
        for node in self._retrying:
            due = earliest(due, node.retry_at)
        return due

    # -- the machine ---------------------------------------------------------------------

    def advance(self, event: QueryEvent, now: float) -> QueryState:
        """Apply ``event`` at time ``now`` and return what the query wants next."""
        if self._finishing is not None:
            return self._continue_finishing()
        after_request, self._after_request = self._after_request, None
        match event:
            case QueryPoll():
                if after_request is not None and after_request[0] == now:
                    # The poll right after a request: only that node changed (it waits now).
                    if self._in_flight >= self.config.concurrency:
                        return QueryWaitingAtCapacity(self.query_id, self.stats, trace=self.trace)
                    if not after_request[1]:
                        return QueryWaitingWithCapacity(self.query_id, self.stats, trace=self.trace)
            case QueryCancel(reason=reason):
                return self._finish(reason, now)
            case QueryNodeResponse():
                self._on_response(event, now)
            case QueryNodeFailure():
                self._on_failure(event.node)
            case QueryNodeDropped():
                self._on_dropped(event.node, now)
            case _:
                assert_never(event)
        if self.trace.expired(now):
            return self._finish(FinishReason.TIMEOUT, now)
        if self._pending_cancels:
            return self._cancel_skipped()
        return self._walk(now)

    def _on_response(self, event: QueryNodeResponse, now: float) -> None:
        node = self._nodes.get(event.node.value)
        if node is None or not node.outstanding:
            return  # never asked, or a duplicate answer
        if node.state is NodeState.FAILED:
            self._settled_at = self._settled_live = 0  # a late answer: the prefix may change
        self._settle(node)
        node.state = NodeState.SUCCEEDED
        self._success += 1
        self._record_answer_time(now - node.sent_at)
        for key in event.closer_nodes[: self.config.max_closer_per_response]:
            self._add_candidate(key)

    def _on_failure(self, key: Key) -> None:
        node = self._nodes.get(key.value)
        if node is None or not node.outstanding:
            return
        if node.state is not NodeState.FAILED:  # not already failed by the hard timeout
            self._failure += 1
        self._settle(node)
        node.state = NodeState.FAILED

    def _on_dropped(self, key: Key, now: float) -> None:
        node = self._nodes.get(key.value)
        if node is None or not node.outstanding:
            return
        self._settle(node)
        self._requests -= 1  # it never left
        node.state = NodeState.NOT_CONTACTED
        delay = min(self.config.drop_retry_delay * (2**node.drops), self.config.request_timeout)
        node.drops += 1
        node.retry_at = now + delay
        self._retrying.append(node)

    def _settle(self, node: _Node) -> None:
        """The request to ``node`` ended (answer, failure or drop): free what it held."""
        if node.state is NodeState.WAITING:
            self._in_flight -= 1
        elif node.state is NodeState.SLOW:
            self._slow_count -= 1
        node.outstanding = False
        del self._requested[node.key.value]

    def _record_answer_time(self, elapsed: float) -> None:
        cfg = self.config
        times = self._answer_times
        bisect.insort(times, elapsed)
        if cfg.adaptive_timeout and len(times) >= cfg.adaptive_min_samples:
            median = times[len(times) // 2]
            self._wait_timeout = min(
                cfg.request_timeout, max(cfg.adaptive_floor, cfg.adaptive_factor * median)
            )

    def _add_candidate(self, key: Key) -> None:
        value = key.value
        if value == self._self_value or value in self._nodes:
            return
        distance = value ^ self._target_value
        node = self._nodes[value] = _Node(key, distance)
        at = bisect.bisect(self._distances, distance)
        self._distances.insert(at, distance)
        self._order.insert(at, node)
        if at < self._settled_at:
            self._settled_at = self._settled_live = 0  # an unasked node now sits inside it

    def _expire(self, now: float) -> None:
        """WAITING → SLOW past the adaptive wait; SLOW → FAILED past the hard timeout."""
        waiting, slow = self._waiting, self._slow
        wait = self._wait_timeout
        while waiting:
            node = waiting[0]
            if node.state is NodeState.WAITING:
                if now < node.sent_at + wait:
                    break
                node.state = NodeState.SLOW
                self._in_flight -= 1
                self._slow_count += 1
                slow.append(node)
            waiting.popleft()
        hard = self.config.request_timeout
        while slow:
            node = slow[0]
            if node.state is NodeState.SLOW:
                if now < node.sent_at + hard:
                    break
                # Failed for the walk; the request stays outstanding (a late answer
                # still counts) until the driver's own deadline or the query's end.
                node.state = NodeState.FAILED
                self._slow_count -= 1
                self._failure += 1
            slow.popleft()
        if self._retrying:
            still: list[_Node] = []
            for node in self._retrying:
                if node.state is not NodeState.NOT_CONTACTED:
                    continue
                if node.retry_at is not None and node.retry_at <= now:
                    node.retry_at = None
                else:
                    still.append(node)
            self._retrying = still

    def _walk(self, now: float) -> QueryState:
        self._expire(now)
        cfg = self.config
        k = cfg.num_results
        window = k + self._slow_count
        # The settled prefix holds only SUCCEEDED (live) and FAILED/SKIPPED nodes.
        settled_at = self._settled_at
        live = successes = self._settled_live
        """Candidates passed that have not failed; those that answered."""
        unsettled = False
        """A candidate closer than the current position has not answered yet."""
        waiting_for_retry = False
        request: _Node | None = None
        another = False
        """A second node could be asked after ``request``."""
        for node in islice(self._order, settled_at, None):
            state = node.state
            if state is NodeState.FAILED or state is NodeState.SKIPPED:
                if not unsettled:
                    settled_at += 1
                continue
            live += 1
            if state is NodeState.SUCCEEDED:
                successes += 1
                if successes >= k:
                    if not unsettled:
                        return self._finish(FinishReason.DONE, now)
                    self._skip_beyond(node.distance)
                    break
                if not unsettled:
                    settled_at += 1
                continue
            if not unsettled:
                unsettled = True
                self._settled_at, self._settled_live = settled_at, successes
            if state is NodeState.NOT_CONTACTED:
                if node.retry_at is not None:
                    waiting_for_retry = True
                elif live <= window and self._in_flight < cfg.concurrency:
                    if request is None:
                        request = node
                    else:
                        another = True
            if live >= window:
                break  # nothing farther may be asked, and the query cannot be done
        if not unsettled:
            self._settled_at, self._settled_live = settled_at, successes
        if self._pending_cancels:
            return self._cancel_skipped()
        if request is not None:
            self._after_request = (now, another)
            return self._request(request, now)
        if unsettled or waiting_for_retry or self._in_flight or self._slow_count:
            if self._in_flight >= cfg.concurrency:
                return QueryWaitingAtCapacity(self.query_id, self.stats, trace=self.trace)
            return QueryWaitingWithCapacity(self.query_id, self.stats, trace=self.trace)
        self._exhausted = True
        return self._finish(FinishReason.DONE if successes else FinishReason.FAILED, now)

    def _skip_beyond(self, distance: int) -> None:
        """Cancel requests to nodes farther than ``distance`` (the k-th answer's)."""
        for node in [n for n in self._requested.values() if n.distance > distance]:
            if node.state is not NodeState.SUCCEEDED:
                self._settle(node)
                node.state = NodeState.SKIPPED
                self._pending_cancels.append(node.key)

    def _cancel_skipped(self) -> QueryState:
        return QueryCancelRequest(self.query_id, self._pending_cancels.popleft(), trace=self.trace)

    def _request(self, node: _Node, now: float) -> QueryState:
        node.state = NodeState.WAITING
        node.sent_at = now
        node.outstanding = True
        self._requested[node.key.value] = node
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
        pending = self._pending_cancels
        for node in list(self._requested.values()):
            self._settle(node)
            if node.state is NodeState.WAITING or node.state is NodeState.SLOW:
                node.state = NodeState.FAILED
            pending.append(node.key)
        self._pending_cancels = deque()
        self._finishing = _Finishing(reason, self.closest_succeeded(), pending_cancels=pending)
        return self._continue_finishing()

    def _continue_finishing(self) -> QueryState:
        fin = self._finishing
        assert fin is not None
        if fin.pending_cancels:
            node = fin.pending_cancels.popleft()
            return QueryCancelRequest(self.query_id, node, trace=self.trace)
        if fin.result is None:
            fin.result = QueryFinished(
                self.query_id, fin.reason, fin.closest, self.stats, trace=self.trace
            )
        return fin.result
