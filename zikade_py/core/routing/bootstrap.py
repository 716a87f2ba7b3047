"""Bootstrap: a lookup of the node's own key, seeded with known nodes.

Rules of the machine (read top to bottom as a table):

* :class:`BootstrapStart` starts one find-closer :class:`~zikade_py.core.query.Query`
  for ``self_key`` over the given seeds, bounded by ``timeout`` (and by the
  start event's own deadline, whichever is earlier). A Start while a run is in
  progress is ignored (it acts as a poll): one bootstrap at a time, and the
  seeds of the running one are already in its query.
* Answers and failures feed the query; it keeps ``request_concurrency``
  requests in flight, each with ``request_timeout``. A request our own
  admission control dropped (:class:`BootstrapFindCloserDropped`) is no
  failure of the node: the query asks it again after a short back-off.
* Every ending is an ordinary :class:`BootstrapFinished` with a reason: DONE,
  TIMEOUT (the run's deadline passed — zikade panicked here, ZIKADE.md §10),
  CANCELLED (:class:`BootstrapStop`) or FAILED (no node to ask, e.g. empty
  seeds). Before it, every request still outstanding is announced with
  :class:`BootstrapCancelRequest`, one per ``advance``.
* After the Finished the machine is idle; answers that arrive late are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.event import Event, FinishReason, State
from zikade_py.core.key import Key
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
from zikade_py.core.trace import Trace

BOOTSTRAP_QUERY_ID: QueryID = "bootstrap"
"""The query id of bootstrap requests, so the coordinator can route their answers here."""


@dataclass(frozen=True, slots=True)
class BootstrapConfig(WalkConfig):
    """Knobs of a bootstrap run (a walk towards our own key)."""


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapStart(Event):
    """Run a self-lookup seeded with ``seeds`` (ignored while a run is in progress)."""

    seeds: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class BootstrapFindCloserResponse(QueryNodeResponse):
    """``node`` answered the FIND_NODE with ``closer_nodes``.

    A query event itself, so the walk's query takes it as it is (one object less
    on the path of every answer).
    """


@dataclass(frozen=True, slots=True)
class BootstrapFindCloserFailure(QueryNodeFailure):
    """The FIND_NODE to ``node`` failed (a query event, passed on as it is)."""


@dataclass(frozen=True, slots=True)
class BootstrapFindCloserDropped(QueryNodeDropped):
    """Our own admission control refused the FIND_NODE to ``node``: ask it again later."""


@dataclass(frozen=True, slots=True)
class BootstrapPoll(Event):
    """Advance on time alone."""


@dataclass(frozen=True, slots=True)
class BootstrapStop(Event):
    """Stop the running bootstrap (it finishes CANCELLED after cancelling its requests)."""


BootstrapEvent = (
    BootstrapStart
    | BootstrapFindCloserResponse
    | BootstrapFindCloserFailure
    | BootstrapFindCloserDropped
    | BootstrapPoll
    | BootstrapStop
)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapFindCloser(State):
    """Send FIND_NODE(``target``) to ``node``; the trace carries the request deadline."""

    query_id: QueryID
    node: Key
    target: Key
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class BootstrapCancelRequest(State):
    """Cancel the request in flight to ``node``."""

    query_id: QueryID
    node: Key


@dataclass(frozen=True, slots=True)
class BootstrapWaiting(State):
    """Requests are in flight; nothing to do until an answer or :meth:`Bootstrap.next_due`."""

    stats: QueryStats


@dataclass(frozen=True, slots=True)
class BootstrapFinished(State):
    """The run ended; ``closest`` are the closest nodes to self that answered."""

    reason: FinishReason
    stats: QueryStats
    closest: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class BootstrapIdle(State):
    """No run in progress."""


BootstrapState = (
    BootstrapFindCloser
    | BootstrapCancelRequest
    | BootstrapWaiting
    | BootstrapFinished
    | BootstrapIdle
)


class Bootstrap:
    """Runs self-lookups on demand; one at a time."""

    def __init__(
        self,
        self_key: Key,
        config: BootstrapConfig | None = None,
        *,
        query_id: QueryID = BOOTSTRAP_QUERY_ID,
    ) -> None:
        self.config = config or BootstrapConfig()
        self.config.validate()
        self.self_key = self_key
        self.query_id = query_id
        self._query: Query | None = None

    @property
    def running(self) -> bool:
        """Whether a run is in progress (it has not yet returned its Finished)."""
        return self._query is not None

    def next_due(self) -> float | None:
        """The running query's earliest request or run deadline."""
        return self._query.next_due() if self._query is not None else None

    def advance(self, event: BootstrapEvent, now: float) -> BootstrapState:
        """Apply ``event`` at ``now`` and return what the bootstrap wants next."""
        qev: QueryEvent
        match event:
            case BootstrapStart(seeds=seeds):
                if self._query is None:
                    self._start(seeds, event.trace, now)
                qev = QueryPoll(trace=event.trace)
            case (
                BootstrapFindCloserResponse()
                | BootstrapFindCloserFailure()
                | BootstrapFindCloserDropped()
            ):
                qev = event
            case BootstrapPoll():
                qev = QueryPoll(trace=event.trace)
            case BootstrapStop():
                qev = QueryCancel(FinishReason.CANCELLED, trace=event.trace)
            case _:
                assert_never(event)
        if self._query is None:
            return BootstrapIdle(trace=event.trace)
        return self._translate(self._query.advance(qev, now))

    def _start(self, seeds: Sequence[Key], trace: Trace, now: float) -> None:
        run_trace = trace.with_deadline(now + self.config.timeout)
        self._query = Query(
            self.query_id,
            self.self_key,
            self.self_key,
            seeds,
            self.config.query_config(),
            trace=run_trace,
        )

    def _translate(self, state: QueryState) -> BootstrapState:
        match state:
            case QueryFindCloser(query_id=qid, node=node, target=target, stats=stats):
                return BootstrapFindCloser(qid, node, target, stats, trace=state.trace)
            case QueryCancelRequest(query_id=qid, node=node):
                return BootstrapCancelRequest(qid, node, trace=state.trace)
            case QueryWaitingAtCapacity(stats=stats) | QueryWaitingWithCapacity(stats=stats):
                return BootstrapWaiting(stats, trace=state.trace)
            case QueryFinished(reason=reason, closest=closest, stats=stats):
                self._query = None
                return BootstrapFinished(reason, stats, closest, trace=state.trace)
            case QuerySendMessage():
                raise AssertionError("a find-closer query never sends messages")
            case _:
                assert_never(state)
