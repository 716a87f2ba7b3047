"""The coordinator's whole vocabulary with the outside world.

A driver (the asyncio node, the simulator) feeds :data:`CoordinatorInput` events
in with ``Coordinator.notify(event, now)`` and performs the
:data:`CoordinatorOutput` events that ``Coordinator.poll(now)`` returns. Every
event carries a :class:`~zikade_py.core.trace.Trace`; outputs caused by an input
carry that input's span context and deadline (DESIGN.md §2 rule 3).

The reprovide sweep (:mod:`zikade_py.core.sweep_events`) adds its own inputs
(keys to provide, the restored schedule, a region's keys) and outputs (load a
region's keys, a region done, the schedule changed); its batches of
ADD_PROVIDER leave as :class:`SendMessage` carrying a
:class:`~zikade_py.core.sweep_events.ProvideBatch`.

Requests are named by ``request_id`` (unique per coordinator); the driver answers
each :class:`SendFindNode` / :class:`SendMessage` with exactly one
:class:`RequestSucceeded` or :class:`RequestFailed`, unless the coordinator
cancelled it first with :class:`CancelRequest` (then the answer, if any, is
ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from zikade_py.core.event import Event, FinishReason
from zikade_py.core.key import Key
from zikade_py.core.query import QueryID, QueryStats
from zikade_py.core.sweep_events import SweepInput, SweepOutput

RequestID = int
"""Names one request the coordinator asked the driver to send."""


class BroadcastStrategy(Enum):
    """How a record reaches the nodes that should store it."""

    FOLLOW_UP = "follow-up"
    """Look up the k closest nodes, then store to all of them."""
    STATIC = "static"
    """Store to the given seed nodes only, no lookup."""
    OPTIMISTIC = "optimistic"
    """Store while the lookup converges, to nodes likely among the final closest."""


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartFindCloserQuery(Event):
    """Look up the nodes closest to ``target`` (FIND_NODE walk)."""

    query_id: QueryID
    target: Key
    num_results: int | None = None
    seeds: tuple[Key, ...] | None = None
    """Nodes to start from; ``None`` takes the routing table's closest."""


@dataclass(frozen=True, slots=True)
class StartMessageQuery(Event):
    """Walk towards ``target`` sending ``message`` (GET_PROVIDERS, GET_VALUE) to each node."""

    query_id: QueryID
    target: Key
    message: object
    num_results: int | None = None
    seeds: tuple[Key, ...] | None = None


@dataclass(frozen=True, slots=True)
class StartBroadcast(Event):
    """Store ``message`` (ADD_PROVIDER, PUT_VALUE) with the nodes closest to ``target``."""

    query_id: QueryID
    target: Key
    message: object
    strategy: BroadcastStrategy = BroadcastStrategy.FOLLOW_UP
    seeds: tuple[Key, ...] | None = None


@dataclass(frozen=True, slots=True)
class StopQuery(Event):
    """The caller is gone or satisfied: stop the query or broadcast and cancel its requests."""

    query_id: QueryID


@dataclass(frozen=True, slots=True)
class RequestSucceeded(Event):
    """The answer to a request; ``response`` is the driver's decoded message (opaque here)."""

    request_id: RequestID
    closer_nodes: tuple[Key, ...] = ()
    response: object = None


@dataclass(frozen=True, slots=True)
class RequestFailed(Event):
    """A request failed: error, timeout, reset, or refused by admission."""

    request_id: RequestID
    error: str = ""


@dataclass(frozen=True, slots=True)
class AddCandidates(Event):
    """Nodes that may join the routing table once a check succeeds (e.g. identify said kad)."""

    nodes: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class StartBootstrap(Event):
    """Join the network through ``seeds`` (look up our own key)."""

    seeds: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class NodeConnected(Event):
    """We talked to ``node`` successfully (it answered, or it sent us a request as a server)."""

    node: Key


@dataclass(frozen=True, slots=True)
class NodeUnreachable(Event):
    """``node`` could not be reached at all (dial failed); the routing table re-checks it."""

    node: Key


CoordinatorInput = (
    StartFindCloserQuery
    | StartMessageQuery
    | StartBroadcast
    | StopQuery
    | RequestSucceeded
    | RequestFailed
    | AddCandidates
    | StartBootstrap
    | NodeConnected
    | NodeUnreachable
    | SweepInput
)


# -- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendFindNode(Event):
    """Ask ``to`` for the nodes closest to ``target``; the trace's deadline bounds the request."""

    request_id: RequestID
    to: Key
    target: Key
    query_id: QueryID


@dataclass(frozen=True, slots=True)
class SendMessage(Event):
    """Send ``message`` to ``to``; the driver knows whether a reply is expected."""

    request_id: RequestID
    to: Key
    message: object
    query_id: QueryID


@dataclass(frozen=True, slots=True)
class CancelRequest(Event):
    """Stop the request ``request_id`` now (reset its stream, free its slot)."""

    request_id: RequestID


@dataclass(frozen=True, slots=True)
class QueryProgressed(Event):
    """A node answered a query; ``response`` is what it said (values, providers…)."""

    query_id: QueryID
    node: Key
    response: object
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class QueryFinished(Event):
    """The single terminal event of a query: why it ended and the closest nodes found."""

    query_id: QueryID
    reason: FinishReason
    closest: tuple[Key, ...]
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class BroadcastFinished(Event):
    """The single terminal event of a broadcast."""

    query_id: QueryID
    reason: FinishReason
    contacted: tuple[Key, ...]
    errors: tuple[tuple[Key, str], ...]


@dataclass(frozen=True, slots=True)
class BroadcastStored(Event):
    """``node`` took a broadcast's record: ``stored`` so far.

    ``settled`` is true exactly once, when the strategy lets the caller return
    while the rest of the broadcast goes on (an optimistic provide returns after
    75 % of the replicas, as go's does); other strategies settle only by finishing.
    """

    query_id: QueryID
    node: Key
    stored: int
    settled: bool


@dataclass(frozen=True, slots=True)
class RoutingUpdated(Event):
    """``node`` entered the routing table."""

    node: Key


@dataclass(frozen=True, slots=True)
class RoutingRemoved(Event):
    """``node`` left the routing table (failed a liveness check)."""

    node: Key


@dataclass(frozen=True, slots=True)
class BootstrapFinished(Event):
    """A bootstrap walk ended (done, timeout or failed)."""

    reason: FinishReason
    stats: QueryStats


CoordinatorOutput = (
    SendFindNode
    | SendMessage
    | CancelRequest
    | QueryProgressed
    | QueryFinished
    | BroadcastStored
    | BroadcastFinished
    | RoutingUpdated
    | RoutingRemoved
    | BootstrapFinished
    | SweepOutput
)
