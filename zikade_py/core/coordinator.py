"""The coordinator: one sans-IO object that runs every behaviour of a node.

It holds the query pool, the broadcasts, the routing behaviour (table,
bootstrap, include, probe, explore) and network admission, and dispatches
events between them. Its whole interface to the outside world is:

* ``notify(event, now)`` — queue an input (:data:`CoordinatorInput`);
* ``poll(now)`` — the next output (:data:`CoordinatorOutput`) or ``None`` when
  there is nothing to do until new input arrives or ``next_due()`` passes;
* ``next_due()`` — the one time a driver's single timer must be armed for.

Rules (DESIGN.md §2):

* Inputs are handled in arrival order; each may produce several outputs, which
  ``poll`` returns one at a time. Machines are advanced only when an event
  reaches them or their own due time has come, never in a busy loop.
* Every request gets a ``request_id``. A request refused by admission never
  leaves: its machine receives a failure with :data:`~zikade_py.core.network.DROPPED`.
* A query or broadcast that stops for any reason first emits
  :class:`CancelRequest` for every request it has in flight, then exactly one
  terminal output (:class:`QueryFinished` / :class:`BroadcastFinished`).
* Outputs carry the trace of the event that caused them; routing work found by
  a query (candidates, table updates) starts with a fresh trace.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import assert_never

from zikade_py.core.broadcast import (
    BcastCancelRequest,
    BcastEvent,
    BcastFindCloser,
    BcastFinished,
    BcastLookupFailure,
    BcastLookupResponse,
    BcastPoll,
    BcastState,
    BcastStop,
    BcastStoreFailure,
    BcastStoreRecord,
    BcastStoreSuccess,
    BcastWaiting,
    Broadcast,
    BroadcastConfig,
    FollowUp,
    Optimistic,
    Static,
)
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BroadcastFinished,
    BroadcastStrategy,
    CancelRequest,
    CoordinatorInput,
    CoordinatorOutput,
    NodeConnected,
    NodeUnreachable,
    QueryFinished,
    QueryProgressed,
    RequestFailed,
    RequestID,
    RequestSucceeded,
    SendFindNode,
    SendMessage,
    StartBootstrap,
    StartBroadcast,
    StartFindCloserQuery,
    StartMessageQuery,
    StopQuery,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.network import DROPPED, Admission, NetworkConfig
from zikade_py.core.pool import (
    PoolAddQuery,
    PoolCancelRequest,
    PoolConfig,
    PoolEvent,
    PoolFindCloser,
    PoolIdle,
    PoolNodeFailure,
    PoolNodeResponse,
    PoolPoll,
    PoolQueryFinished,
    PoolSendMessage,
    PoolState,
    PoolStopQuery,
    PoolWaitingAtCapacity,
    PoolWaitingWithCapacity,
    QueryPool,
)
from zikade_py.core.query import QueryID, QueryStats
from zikade_py.core.routing.behaviour import (
    RoutingBehaviour,
    RoutingCancel,
    RoutingConfig,
    RoutingRequest,
)
from zikade_py.core.routing_table import NodeFilter, RoutingTable
from zikade_py.core.trace import Trace, earliest


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """Everything a node's core can be tuned with; defaults follow go-libp2p-kad-dht."""

    bucket_size: int = 20
    """k: bucket size, and how many nodes seed a query."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.bucket_size < 1:
            raise ValueError("bucket_size must be at least 1")
        self.pool.validate()
        self.broadcast.validate()
        self.network.validate()
        self.routing.validate()


class _Owner(Enum):
    QUERY = "query"
    BROADCAST_LOOKUP = "broadcast-lookup"
    BROADCAST_STORE = "broadcast-store"
    ROUTING = "routing"


@dataclass(frozen=True, slots=True)
class _Request:
    owner: _Owner
    query_id: QueryID
    node: Key
    kind: str = ""
    """For routing requests: which routing machine asked."""


class Coordinator:
    """A node's Kademlia logic as one pure object (see the module docstring)."""

    def __init__(
        self,
        self_key: Key,
        config: CoordinatorConfig | None = None,
        *,
        rng: random.Random | None = None,
        node_filter: NodeFilter | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or CoordinatorConfig()
        self.config.validate()
        self.self_key = self_key
        self.routing_table = RoutingTable(
            self_key, self.config.bucket_size, node_filter=node_filter
        )
        self._rng = rng or random.Random()
        self._pool = QueryPool(self_key, self.config.pool)
        self._broadcasts: dict[QueryID, Broadcast] = {}
        self._routing = RoutingBehaviour(
            self_key, self.routing_table, self.config.routing, rng=self._rng, now=now
        )
        self._admission = Admission(self.config.network)
        self._requests: dict[RequestID, _Request] = {}
        self._request_ids: dict[_Request, RequestID] = {}
        self._next_request_id = 1
        self._inbox: deque[CoordinatorInput] = deque()
        self._outbox: deque[CoordinatorOutput] = deque()

    # -- the interface -----------------------------------------------------------------------

    def notify(self, event: CoordinatorInput, now: float) -> None:
        """Queue an input; it is handled by the next :meth:`poll`."""
        self._inbox.append(event)

    def poll(self, now: float) -> CoordinatorOutput | None:
        """The next output, or ``None`` when idle until new input or :meth:`next_due`."""
        for _ in range(1_000_000):
            if self._outbox:
                return self._outbox.popleft()
            if self._inbox:
                self._handle(self._inbox.popleft(), now)
                continue
            if not self._advance_due(now):
                return None
        raise RuntimeError("coordinator did not settle")  # a bug, never a peer's doing

    def next_due(self) -> float | None:
        """When the coordinator must be polled again even if nothing arrives."""
        if self._inbox or self._outbox:
            return float("-inf")
        due = earliest(self._pool.next_due(), self._routing.next_due())
        for bcast in self._broadcasts.values():
            due = earliest(due, bcast.next_due())
        return due

    # -- views -------------------------------------------------------------------------------

    @property
    def requests_in_flight(self) -> int:
        """Requests emitted and neither answered nor cancelled."""
        return len(self._requests)

    @property
    def requests_dropped(self) -> int:
        """Requests refused by network admission so far."""
        return self._admission.dropped

    @property
    def running_queries(self) -> int:
        """Queries and broadcasts not yet finished."""
        return len(self._pool) + len(self._broadcasts)

    @property
    def routing(self) -> RoutingBehaviour:
        """The routing behaviour (its machines' statistics, for metrics)."""
        return self._routing

    # -- inputs ------------------------------------------------------------------------------

    def _handle(self, event: CoordinatorInput, now: float) -> None:
        match event:
            case StartFindCloserQuery():
                seeds = event.seeds if event.seeds is not None else self._seeds(event.target)
                self._drive_pool(
                    PoolAddQuery(
                        event.query_id,
                        event.target,
                        seeds,
                        num_results=event.num_results,
                        trace=event.trace,
                    ),
                    now,
                )
            case StartMessageQuery():
                seeds = event.seeds if event.seeds is not None else self._seeds(event.target)
                self._drive_pool(
                    PoolAddQuery(
                        event.query_id,
                        event.target,
                        seeds,
                        message=event.message,
                        num_results=event.num_results,
                        trace=event.trace,
                    ),
                    now,
                )
            case StartBroadcast():
                self._start_broadcast(event, now)
            case StopQuery(query_id=qid):
                if qid in self._pool:
                    self._drive_pool(PoolStopQuery(qid, trace=event.trace), now)
                elif qid in self._broadcasts:
                    self._drive_broadcast(qid, BcastStop(trace=event.trace), now)
            case RequestSucceeded():
                self._on_success(event, now)
            case RequestFailed():
                self._on_failure(event, now)
            case AddCandidates() | StartBootstrap() | NodeConnected() | NodeUnreachable():
                self._routing.notify(event, now)
                self._drain_routing(now)
            case _:
                assert_never(event)

    def _seeds(self, target: Key) -> tuple[Key, ...]:
        return tuple(self.routing_table.nearest(target, self.config.bucket_size))

    def _start_broadcast(self, event: StartBroadcast, now: float) -> None:
        if event.query_id in self._broadcasts or event.query_id in self._pool:
            raise ValueError(f"query {event.query_id!r} is already running")
        seeds = event.seeds if event.seeds is not None else self._seeds(event.target)
        cls: type[FollowUp] | type[Static] | type[Optimistic]
        match event.strategy:
            case BroadcastStrategy.FOLLOW_UP:
                cls = FollowUp
            case BroadcastStrategy.STATIC:
                cls = Static
            case BroadcastStrategy.OPTIMISTIC:
                cls = Optimistic
            case _:
                assert_never(event.strategy)
        self._broadcasts[event.query_id] = cls(
            event.query_id,
            self.self_key,
            event.target,
            event.message,
            seeds,
            self.config.broadcast,
            trace=event.trace,
        )
        self._drive_broadcast(event.query_id, BcastPoll(), now)

    def _on_success(self, event: RequestSucceeded, now: float) -> None:
        req = self._requests.pop(event.request_id, None)
        if req is None:
            return  # cancelled before the answer came
        self._forget(req)
        # A node that answered a request is a live server: routing learns from it,
        # with a fresh trace so the caller's cancellation cannot undo it.
        self._routing.node_responded(req.node, event.closer_nodes, now)
        match req.owner:
            case _Owner.QUERY:
                query = self._pool.query(req.query_id)
                stats = query.stats if query is not None else QueryStats()
                progress = QueryProgressed(
                    req.query_id, req.node, event.response, stats, trace=event.trace
                )
                self._outbox.append(progress)
                self._drive_pool(
                    PoolNodeResponse(
                        req.query_id, req.node, event.closer_nodes, event.response,
                        trace=event.trace,
                    ),
                    now,
                )
            case _Owner.BROADCAST_LOOKUP:
                bcast = self._broadcasts.get(req.query_id)
                if bcast is not None:
                    # The lookup of a broadcast is progress the caller may show too.
                    self._outbox.append(
                        QueryProgressed(
                            req.query_id, req.node, event.response, bcast.lookup_stats,
                            trace=event.trace,
                        )
                    )
                self._drive_broadcast(
                    req.query_id, BcastLookupResponse(req.node, event.closer_nodes), now
                )
            case _Owner.BROADCAST_STORE:
                self._drive_broadcast(req.query_id, BcastStoreSuccess(req.node), now)
            case _Owner.ROUTING:
                self._routing.on_result(req.kind, req.node, event.closer_nodes, None, now)
        self._drain_routing(now)

    def _on_failure(self, event: RequestFailed, now: float) -> None:
        req = self._requests.pop(event.request_id, None)
        if req is None:
            return
        self._forget(req)
        self._fail(req, event.error or "failed", now)
        self._drain_routing(now)

    def _fail(self, req: _Request, error: str, now: float) -> None:
        if req.owner is not _Owner.ROUTING:
            self._routing.node_failed(req.node)
        match req.owner:
            case _Owner.QUERY:
                self._drive_pool(PoolNodeFailure(req.query_id, req.node, error), now)
            case _Owner.BROADCAST_LOOKUP:
                self._drive_broadcast(req.query_id, BcastLookupFailure(req.node, error), now)
            case _Owner.BROADCAST_STORE:
                self._drive_broadcast(req.query_id, BcastStoreFailure(req.node, error), now)
            case _Owner.ROUTING:
                self._routing.on_result(req.kind, req.node, (), error, now)

    # -- requests ----------------------------------------------------------------------------

    def _send(
        self, req: _Request, target: Key | None, message: object, trace: Trace
    ) -> bool:
        """Emit a request; ``False`` when admission refused it."""
        if req in self._request_ids or not self._admission.admit(req.node):
            return False
        rid = self._next_request_id
        self._next_request_id += 1
        self._requests[rid] = req
        self._request_ids[req] = rid
        if target is not None:
            self._outbox.append(SendFindNode(rid, req.node, target, req.query_id, trace=trace))
        else:
            self._outbox.append(SendMessage(rid, req.node, message, req.query_id, trace=trace))
        return True

    def _cancel(self, req: _Request, trace: Trace) -> None:
        rid = self._request_ids.get(req)
        if rid is None:
            return
        del self._requests[rid]
        self._forget(req)
        self._outbox.append(CancelRequest(rid, trace=trace))

    def _forget(self, req: _Request) -> None:
        self._request_ids.pop(req, None)
        self._admission.release(req.node)

    # -- the query pool ----------------------------------------------------------------------

    def _drive_pool(self, event: PoolEvent, now: float) -> None:
        state = self._pool.advance(event, now)
        for _ in range(1_000_000):
            nxt = self._on_pool_state(state, now)
            if nxt is None:
                return
            state = self._pool.advance(nxt, now)

    def _on_pool_state(self, state: PoolState, now: float) -> PoolEvent | None:
        match state:
            case PoolFindCloser(query_id=qid, node=node, target=target):
                if self._send(_Request(_Owner.QUERY, qid, node), target, None, state.trace):
                    return PoolPoll()
                return PoolNodeFailure(qid, node, DROPPED)
            case PoolSendMessage(query_id=qid, node=node, message=message):
                if self._send(_Request(_Owner.QUERY, qid, node), None, message, state.trace):
                    return PoolPoll()
                return PoolNodeFailure(qid, node, DROPPED)
            case PoolCancelRequest(query_id=qid, node=node):
                self._cancel(_Request(_Owner.QUERY, qid, node), state.trace)
                return PoolPoll()
            case PoolQueryFinished():
                self._outbox.append(
                    QueryFinished(
                        state.query_id, state.reason, state.closest, state.stats,
                        trace=state.trace,
                    )
                )
                return PoolPoll()
            case PoolWaitingAtCapacity() | PoolWaitingWithCapacity() | PoolIdle():
                return None
            case _:
                assert_never(state)

    # -- broadcasts --------------------------------------------------------------------------

    def _drive_broadcast(self, qid: QueryID, event: BcastEvent, now: float) -> None:
        bcast = self._broadcasts.get(qid)
        if bcast is None:
            return
        state = bcast.advance(event, now)
        for _ in range(1_000_000):
            nxt = self._on_broadcast_state(bcast, state, now)
            if nxt is None:
                return
            state = bcast.advance(nxt, now)

    def _on_broadcast_state(
        self, bcast: Broadcast, state: BcastState, now: float
    ) -> BcastEvent | None:
        qid = bcast.query_id
        match state:
            case BcastFindCloser(node=node, target=target):
                req = _Request(_Owner.BROADCAST_LOOKUP, qid, node)
                if self._send(req, target, None, state.trace):
                    return BcastPoll()
                return BcastLookupFailure(node, DROPPED)
            case BcastStoreRecord(node=node, message=message):
                req = _Request(_Owner.BROADCAST_STORE, qid, node)
                if self._send(req, None, message, state.trace):
                    return BcastPoll()
                return BcastStoreFailure(node, DROPPED)
            case BcastCancelRequest(node=node, store=store):
                owner = _Owner.BROADCAST_STORE if store else _Owner.BROADCAST_LOOKUP
                self._cancel(_Request(owner, qid, node), state.trace)
                return BcastPoll()
            case BcastFinished():
                del self._broadcasts[qid]
                self._outbox.append(
                    BroadcastFinished(
                        qid, state.reason, state.contacted, state.errors, trace=state.trace
                    )
                )
                return None
            case BcastWaiting():
                return None
            case _:
                assert_never(state)

    # -- routing -----------------------------------------------------------------------------

    def _drain_routing(self, now: float) -> None:
        for _ in range(1_000_000):
            out = self._routing.poll(now)
            if out is None:
                return
            match out:
                case RoutingRequest(kind=kind, node=node, target=target):
                    req = _Request(_Owner.ROUTING, kind, node, kind)
                    if not self._send(req, target, None, out.trace):
                        self._routing.on_result(kind, node, (), DROPPED, now)
                case RoutingCancel(kind=kind, node=node):
                    self._cancel(_Request(_Owner.ROUTING, kind, node, kind), out.trace)
                case _:
                    self._outbox.append(out)

    def _advance_due(self, now: float) -> bool:
        """Advance machines whose due time has come; ``True`` if that produced output."""
        due = self._pool.next_due()
        if due is not None and due <= now:
            self._drive_pool(PoolPoll(), now)
        for qid in list(self._broadcasts):
            bcast = self._broadcasts.get(qid)
            if bcast is None:
                continue
            bdue = bcast.next_due()
            if bdue is not None and bdue <= now:
                self._drive_broadcast(qid, BcastPoll(), now)
        rdue = self._routing.next_due()
        if rdue is not None and rdue <= now:
            self._drain_routing(now)
        return bool(self._outbox)


__all__ = ["Coordinator", "CoordinatorConfig", "FinishReason"]
