"""The coordinator: one sans-IO object that runs every behaviour of a node.

It holds the query pool (every lookup and broadcast, bounded), the routing
behaviour (table, bootstrap, include, probe, explore) and network admission,
and dispatches events between them. Its whole interface to the outside world is:

* ``notify(event, now)`` — queue an input (:data:`CoordinatorInput`);
* ``poll(now)`` — the next output (:data:`CoordinatorOutput`) or ``None`` when
  there is nothing to do until new input arrives or ``next_due()`` passes;
* ``next_due()`` — the one time a driver's single timer must be armed for.

Rules (DESIGN.md §2):

* Inputs are handled in arrival order; each may produce several outputs, which
  ``poll`` returns one at a time. Machines are advanced only when an event
  reaches them or their own due time has come, never in a busy loop.
* Every request gets a ``request_id``. A request refused by admission never
  leaves: its machine is told it was *dropped* and asks again later. A local
  drop is never counted as the node's failure (no eviction, no failed candidate).
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
    Broadcast,
    BroadcastConfig,
    FollowUp,
    Optimistic,
    Static,
)
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BroadcastFinished,
    BroadcastStored,
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
from zikade_py.core.network import Admission, NetworkConfig
from zikade_py.core.pool import (
    PoolAddBroadcast,
    PoolAddQuery,
    PoolBroadcastFinished,
    PoolBroadcastStored,
    PoolCancelRequest,
    PoolConfig,
    PoolEvent,
    PoolFindCloser,
    PoolIdle,
    PoolNodeDropped,
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
    RoutingMachine,
    RoutingRequest,
)
from zikade_py.core.routing_table import NodeFilter, RoutingTable
from zikade_py.core.sweep import Sweep, SweepConfig
from zikade_py.core.sweep_events import (
    ProvideBatch,
    SweepAddKeys,
    SweepClear,
    SweepEvent,
    SweepKeys,
    SweepLoadKeys,
    SweepLookup,
    SweepLookupDone,
    SweepLookupSeen,
    SweepPoll,
    SweepRegionDone,
    SweepReprovideNow,
    SweepRestore,
    SweepScheduleChanged,
    SweepSend,
    SweepSendDone,
    SweepWaiting,
)
from zikade_py.core.trace import NO_TRACE, Trace, earliest


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """Everything a node's core can be tuned with; defaults follow go-libp2p-kad-dht."""

    bucket_size: int = 20
    """k: bucket size, and how many nodes seed a query."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    """The reprovide sweep (created with the first sweep input; idle costs nothing)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.bucket_size < 1:
            raise ValueError("bucket_size must be at least 1")
        self.pool.validate()
        self.broadcast.validate()
        self.network.validate()
        self.routing.validate()
        self.sweep.validate()


class _Owner(Enum):
    QUERY = "query"
    """A lookup request of a query or of a broadcast (both run in the pool)."""
    STORE = "store"
    """A broadcast's store request."""
    ROUTING = "routing"
    SWEEP = "sweep"
    """A batch of ADD_PROVIDER sent by the reprovide sweep."""

    # Members are singletons: identity hashing (in C) is exact, and Enum's own __hash__
    # is a Python call on the path of every request.
    __hash__ = object.__hash__


@dataclass(slots=True, eq=False)
class _Request:
    """A request in flight: who asked (mutable on purpose, it is made for every request
    and never shared; a frozen dataclass costs three times as much to build)."""

    owner: _Owner
    query_id: QueryID
    node: Key
    machine: RoutingMachine | None = None
    """For routing requests: which routing machine asked."""


_ROUTING_QUERY_IDS: dict[RoutingMachine, QueryID] = {m: m.value for m in RoutingMachine}
"""The query id of each routing machine's requests (``.value`` is a Python-level property)."""


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
        self._pool = QueryPool(self_key, self.config.pool, self.config.broadcast)
        self._admission = admission = Admission(self.config.network)
        self._routing = RoutingBehaviour(
            self_key, self.routing_table, self.config.routing, rng=self._rng, now=now,
            asked=lambda node: admission.in_flight_to(node) > 0,
        )
        self._requests: dict[RequestID, _Request] = {}
        self._request_ids: dict[tuple[_Owner, QueryID, int], RequestID] = {}
        """Request ids by owner, query and node (the node's int value: hashed in C)."""
        self._next_request_id = 1
        self._inbox: deque[CoordinatorInput] = deque()
        self._outbox: deque[CoordinatorOutput] = deque()
        self._now = now
        """The latest time the driver gave us: when queued work is due."""
        self._idle_due: float | None = None
        self._idle_known = False
        """Set by a poll that found nothing due: ``_idle_due`` is then what :meth:`next_due`
        computes, until the next input or poll (a driver asks right after that poll)."""
        self._sweep: Sweep | None = None
        self._sweep_inbox: deque[SweepEvent] = deque()
        """Answers for the sweep, fed to it by the next poll (never re-entrantly)."""
        self._sweep_ids: dict[QueryID, int] = {}
        """Pool queries and requests of the sweep: query id → its lookup or send id."""
        self._followup_targets: dict[QueryID, Key] = {}
        """Targets of running follow-up broadcasts: their lookups size the network for the
        sweep (SweepLookupSeen), which then makes no calibration lookups of its own."""

    # -- the interface -----------------------------------------------------------------------

    def notify(self, event: CoordinatorInput, now: float) -> None:
        """Queue an input; it is handled by the next :meth:`poll`."""
        self._now = max(self._now, now)
        self._idle_known = False
        self._inbox.append(event)

    def poll(self, now: float) -> CoordinatorOutput | None:
        """The next output, or ``None`` when idle until new input or :meth:`next_due`."""
        self._now = max(self._now, now)
        self._idle_known = False
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
        """When the coordinator must be polled again even if nothing arrives (no side effects).

        Input or output still queued is due at once: at the latest time seen.
        """
        if self._inbox or self._outbox or self._sweep_inbox:
            return self._now
        if self._idle_known:
            return self._idle_due
        sweep = self._sweep.next_due() if self._sweep is not None else None
        return earliest(self._pool.next_due(), self._routing.next_due(), sweep)

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
        """Queries and broadcasts not yet finished (admitted or queued)."""
        return len(self._pool)

    @property
    def routing(self) -> RoutingBehaviour:
        """The routing behaviour (its machines' statistics, for metrics)."""
        return self._routing

    @property
    def sweep(self) -> Sweep | None:
        """The reprovide sweep, once a sweep input created it (for its statistics)."""
        return self._sweep

    # -- inputs ------------------------------------------------------------------------------

    def _handle(self, event: CoordinatorInput, now: float) -> None:
        match event:
            case StartFindCloserQuery() | StartMessageQuery():
                message = event.message if isinstance(event, StartMessageQuery) else None
                seeds = event.seeds if event.seeds is not None else self._seeds(event.target)
                add = PoolAddQuery(
                    event.query_id, event.target, seeds, message, event.num_results,
                    trace=event.trace,
                )
                self._drive_pool(add, now)
            case StartBroadcast():
                self._start_broadcast(event, now)
            case StopQuery(query_id=qid):
                if qid in self._pool:
                    self._drive_pool(PoolStopQuery(qid, trace=event.trace), now)
            case RequestSucceeded():
                self._on_success(event, now)
            case RequestFailed():
                self._on_failure(event, now)
            case AddCandidates() | StartBootstrap() | NodeConnected() | NodeUnreachable():
                self._routing.notify(event, now)
                self._drain_routing(now)
            case SweepAddKeys() | SweepRestore() | SweepClear() | SweepKeys() | SweepReprovideNow():
                if self._sweep is None:
                    self._sweep = Sweep(self.self_key, self.config.sweep, rng=self._rng, now=now)
                self._sweep_inbox.append(event)
            case _:
                assert_never(event)

    def _seeds(self, target: Key) -> tuple[Key, ...]:
        return tuple(self.routing_table.nearest(target, self.config.bucket_size))

    def _start_broadcast(self, event: StartBroadcast, now: float) -> None:
        seeds = event.seeds if event.seeds is not None else self._seeds(event.target)
        cls: type[Broadcast]
        match event.strategy:
            case BroadcastStrategy.FOLLOW_UP:
                cls = FollowUp
                self._followup_targets[event.query_id] = event.target
            case BroadcastStrategy.STATIC:
                cls = Static
            case BroadcastStrategy.OPTIMISTIC:
                cls = Optimistic
            case _:
                assert_never(event.strategy)
        self._drive_pool(
            PoolAddBroadcast(
                event.query_id, event.target, event.message, seeds, cls, trace=event.trace
            ),
            now,
        )

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
                self._on_lookup_answer(req, event, now)
            case _Owner.STORE:
                answer = PoolNodeResponse(req.query_id, req.node, store=True, trace=event.trace)
                self._drive_pool(answer, now)
            case _Owner.ROUTING:
                assert req.machine is not None
                self._routing.on_response(req.machine, req.node, event.closer_nodes, now)
            case _Owner.SWEEP:
                self._sweep_answer(req.query_id, True)
        self._drain_routing(now)

    def _on_lookup_answer(self, req: _Request, event: RequestSucceeded, now: float) -> None:
        """Feed a lookup answer to its query or broadcast and report it as progress.

        The progress carries the counters *after* the answer was applied and comes
        before anything the answer caused (including the operation's end).
        """
        if req.query_id not in self._pool:
            return
        if req.query_id in self._sweep_ids:  # the sweep's own lookup: no caller to tell
            answer = PoolNodeResponse(req.query_id, req.node, event.closer_nodes, trace=event.trace)
            self._drive_pool(answer, now)
            return
        mark = len(self._outbox)
        answer = PoolNodeResponse(
            req.query_id, req.node, event.closer_nodes, event.response, trace=event.trace
        )
        stats = self._drive_pool(answer, now, stats_of=req.query_id)
        progress = QueryProgressed(req.query_id, req.node, event.response, stats, trace=event.trace)
        self._outbox.insert(mark, progress)

    def _on_failure(self, event: RequestFailed, now: float) -> None:
        req = self._requests.pop(event.request_id, None)
        if req is None:
            return
        self._forget(req)
        self._fail(req, event.error or "failed", event.trace, now)
        self._drain_routing(now)

    def _fail(self, req: _Request, error: str, trace: Trace, now: float) -> None:
        # Drops never get here: admission refuses before a request leaves (see _send).
        if req.owner is not _Owner.ROUTING:
            self._routing.node_failed(req.node)
        match req.owner:
            case _Owner.QUERY | _Owner.STORE:
                store = req.owner is _Owner.STORE
                failure = PoolNodeFailure(req.query_id, req.node, error, store, trace=trace)
                self._drive_pool(failure, now)
            case _Owner.ROUTING:
                assert req.machine is not None
                self._routing.on_failure(req.machine, req.node, error, now)
            case _Owner.SWEEP:
                self._sweep_answer(req.query_id, False)

    # -- requests ----------------------------------------------------------------------------

    def _send(
        self,
        owner: _Owner,
        query_id: QueryID,
        node: Key,
        target: Key | None,
        message: object,
        trace: Trace,
        machine: RoutingMachine | None = None,
    ) -> bool:
        """Emit a request; ``False`` when admission refused it."""
        key = (owner, query_id, node.value)
        if key in self._request_ids or not self._admission.admit(node):
            return False
        rid = self._next_request_id
        self._next_request_id += 1
        self._requests[rid] = _Request(owner, query_id, node, machine)
        self._request_ids[key] = rid
        if target is not None:
            self._outbox.append(SendFindNode(rid, node, target, query_id, trace=trace))
        else:
            self._outbox.append(SendMessage(rid, node, message, query_id, trace=trace))
        return True

    def _cancel(self, owner: _Owner, query_id: QueryID, node: Key, trace: Trace) -> None:
        key = (owner, query_id, node.value)
        rid = self._request_ids.pop(key, None)
        if rid is None:
            return
        del self._requests[rid]
        self._admission.release(node)
        self._outbox.append(CancelRequest(rid, trace=trace))

    def _forget(self, req: _Request) -> None:
        self._request_ids.pop((req.owner, req.query_id, req.node.value), None)
        self._admission.release(req.node)

    # -- the query pool ----------------------------------------------------------------------

    def _drive_pool(
        self, event: PoolEvent, now: float, *, stats_of: QueryID | None = None
    ) -> QueryStats:
        """Advance the pool with ``event`` and act on its wishes until it waits.

        Returns the counters of operation ``stats_of`` right after ``event`` was
        applied (empty when not asked for or when it is gone).
        """
        state = self._pool.advance(event, now)
        stats = self._pool.stats(stats_of) if stats_of is not None else None
        for _ in range(1_000_000):
            if isinstance(state, PoolQueryFinished) and state.query_id == stats_of:
                stats = state.stats
            nxt = self._on_pool_state(state)
            if nxt is None:
                return stats or QueryStats()
            state = self._pool.advance(nxt, now)
        raise RuntimeError("query pool did not settle")  # a bug, never a peer's doing

    def _on_pool_state(self, state: PoolState) -> PoolEvent | None:
        """Carry out one wish of the pool; the event to advance it with next, if any."""
        match state:
            case PoolFindCloser(query_id=qid, node=node, target=target):
                if self._send(_Owner.QUERY, qid, node, target, None, state.trace):
                    return PoolPoll()
                return PoolNodeDropped(qid, node, trace=state.trace)
            case PoolSendMessage(query_id=qid, node=node, message=message, store=store):
                owner = _Owner.STORE if store else _Owner.QUERY
                if self._send(owner, qid, node, None, message, state.trace):
                    return PoolPoll()
                return PoolNodeDropped(qid, node, store, trace=state.trace)
            case PoolCancelRequest(query_id=qid, node=node, store=store):
                owner = _Owner.STORE if store else _Owner.QUERY
                self._cancel(owner, qid, node, state.trace)
                return PoolPoll()
            case PoolBroadcastStored():
                self._outbox.append(
                    BroadcastStored(
                        state.query_id, state.node, state.stored, state.settled,
                        trace=state.trace,
                    )
                )
                return PoolPoll()
            case PoolQueryFinished() if state.query_id in self._sweep_ids:
                ok = state.reason in (FinishReason.DONE, FinishReason.TIMEOUT)
                lid = self._sweep_ids.pop(state.query_id)
                self._sweep_inbox.append(SweepLookupDone(lid, state.closest, ok))
                return PoolPoll()
            case PoolQueryFinished():
                self._outbox.append(
                    QueryFinished(
                        state.query_id, state.reason, state.closest, state.stats,
                        trace=state.trace,
                    )
                )
                return PoolPoll()
            case PoolBroadcastFinished():
                if state.query_id in self._followup_targets:
                    target = self._followup_targets.pop(state.query_id)
                    if self._sweep is not None and state.reason is FinishReason.DONE:
                        # a completed follow-up stored with the closest it found
                        closest = dict.fromkeys(state.contacted)
                        closest.update(dict.fromkeys(node for node, _ in state.errors))
                        self._sweep_inbox.append(SweepLookupSeen(target, tuple(closest)))
                self._outbox.append(
                    BroadcastFinished(
                        state.query_id, state.reason, state.contacted, state.errors,
                        trace=state.trace,
                    )
                )
                return PoolPoll()
            case PoolWaitingAtCapacity() | PoolWaitingWithCapacity() | PoolIdle():
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
                case RoutingRequest(machine=machine, node=node, target=target):
                    qid = _ROUTING_QUERY_IDS[machine]
                    if not self._send(_Owner.ROUTING, qid, node, target, None, out.trace, machine):
                        # A local refusal says nothing about the node: a drop, not a failure.
                        self._routing.on_dropped(machine, node, now)
                case RoutingCancel(machine=machine, node=node):
                    self._cancel(_Owner.ROUTING, _ROUTING_QUERY_IDS[machine], node, out.trace)
                case _:
                    self._outbox.append(out)

    # -- the reprovide sweep ------------------------------------------------------------------

    def _drive_sweep(self, now: float) -> None:
        """Feed the sweep its queued answers and carry out its wishes until it waits."""
        sweep = self._sweep
        assert sweep is not None
        for _ in range(1_000_000):
            event = self._sweep_inbox.popleft() if self._sweep_inbox else SweepPoll()
            state = sweep.advance(event, now)
            match state:
                case SweepLookup(lookup_id=lid, target=target):
                    qid = f"sweep-lookup-{lid}"
                    self._sweep_ids[qid] = lid
                    add = PoolAddQuery(qid, target, self._seeds(target), trace=NO_TRACE)
                    self._drive_pool(add, now)
                case SweepSend(send_id=sid, to=to, keys=keys):
                    qid = f"sweep-send-{sid}"
                    if self._send(_Owner.SWEEP, qid, to, None, ProvideBatch(keys), state.trace):
                        self._sweep_ids[qid] = sid
                    else:
                        self._sweep_inbox.append(SweepSendDone(sid, False, dropped=True))
                case SweepLoadKeys() | SweepRegionDone() | SweepScheduleChanged():
                    self._outbox.append(state)
                case SweepWaiting():
                    if not self._sweep_inbox:
                        return
                case _:
                    assert_never(state)
        raise RuntimeError("the sweep did not settle")  # a bug, never a peer's doing

    def _sweep_answer(self, query_id: QueryID, ok: bool) -> None:
        sid = self._sweep_ids.pop(query_id, None)
        if sid is not None:
            self._sweep_inbox.append(SweepSendDone(sid, ok))

    def _advance_due(self, now: float) -> bool:
        """Advance machines whose due time has come; ``True`` if that produced output."""
        driven = False
        sdue: float | None = None
        if self._sweep is not None:
            sdue = self._sweep.next_due()
            if self._sweep_inbox or (sdue is not None and sdue <= now):
                self._drive_sweep(now)
                driven = True
        due = self._pool.next_due()
        if due is not None and due <= now:
            self._drive_pool(PoolPoll(), now)
            driven = True
        rdue = self._routing.next_due()
        if rdue is not None and rdue <= now:
            self._drain_routing(now)
            driven = True
        if not driven:  # nothing changed: these are the due times next_due would compute
            self._idle_due = earliest(due, rdue, sdue)
            self._idle_known = True
        return bool(self._outbox)


__all__ = ["Coordinator", "CoordinatorConfig", "FinishReason"]
