"""The routing behaviour: the table and the four machines that keep it healthy.

It owns the :class:`~zikade_py.core.routing_table.RoutingTable` and the
bootstrap, include, probe and explore machines, and is what the coordinator
talks to about routing. Rules:

* Nodes that answer any of our requests are live servers: they go straight into
  the table (or its replacement cache when their bucket is full) and their next
  liveness check is pushed out. The closer nodes they name become include
  candidates, which must pass a check first.
* :class:`NodeConnected` (a peer that speaks kad as a server contacted us) makes
  the node a candidate; :class:`NodeUnreachable` and failed requests bring its
  liveness check forward instead of evicting it on one failure.
* Machines are advanced only when an event reached them or their due time has
  come. Their requests leave as :class:`RoutingRequest` (``kind`` names the
  machine, so answers find their way back) and their cancellations as
  :class:`RoutingCancel`; table changes leave as ``RoutingUpdated`` /
  ``RoutingRemoved`` and bootstrap endings as ``BootstrapFinished``.
* Everything here starts with a fresh trace: routing upkeep caused by a query
  must survive that query's cancellation (DESIGN.md §2 rule 3).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import assert_never

from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    NodeConnected,
    NodeUnreachable,
    RoutingRemoved,
    RoutingUpdated,
    StartBootstrap,
)
from zikade_py.core.event import Event
from zikade_py.core.key import Key
from zikade_py.core.routing.bootstrap import (
    Bootstrap,
    BootstrapCancelRequest,
    BootstrapConfig,
    BootstrapEvent,
    BootstrapFindCloser,
    BootstrapFindCloserFailure,
    BootstrapFindCloserResponse,
    BootstrapIdle,
    BootstrapPoll,
    BootstrapStart,
    BootstrapWaiting,
)
from zikade_py.core.routing.bootstrap import (
    BootstrapFinished as BootstrapMachineFinished,
)
from zikade_py.core.routing.cpl import digest_targets, preimage_targets
from zikade_py.core.routing.explore import (
    DynamicExploreSchedule,
    Explore,
    ExploreCancelRequest,
    ExploreConfig,
    ExploreEvent,
    ExploreFindCloser,
    ExploreFindCloserFailure,
    ExploreFindCloserResponse,
    ExploreIdle,
    ExplorePoll,
    ExploreQueryFinished,
    ExploreWaiting,
)
from zikade_py.core.routing.include import (
    Include,
    IncludeAddCandidate,
    IncludeCancelCheck,
    IncludeCheckFailure,
    IncludeCheckSuccess,
    IncludeConfig,
    IncludeConnectivityCheck,
    IncludeEvent,
    IncludeIdle,
    IncludePoll,
    IncludeRoutingUpdated,
    IncludeWaitingAtCapacity,
    IncludeWaitingFull,
    IncludeWaitingWithCapacity,
)
from zikade_py.core.routing.probe import (
    Probe,
    ProbeAdd,
    ProbeCancelCheck,
    ProbeCheckFailure,
    ProbeCheckSuccess,
    ProbeConfig,
    ProbeConnectivityCheck,
    ProbeEvent,
    ProbeIdle,
    ProbeNodeFailure,
    ProbeNotifyConnectivity,
    ProbeNotifyNonConnectivity,
    ProbePoll,
    ProbeWaitingAtCapacity,
    ProbeWaitingWithCapacity,
)
from zikade_py.core.routing_table import AddResult, RoutingTable
from zikade_py.core.trace import earliest

BOOTSTRAP = "bootstrap"
INCLUDE = "include"
PROBE = "probe"
EXPLORE = "explore"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The routing machines' knobs and switches."""

    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    include: IncludeConfig = field(default_factory=IncludeConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    enable_probe: bool = True
    """Check table entries for liveness on a schedule."""
    enable_explore: bool = True
    """Refresh buckets with random walks on a schedule."""
    explore_interval: float = 600.0
    """Seconds between walks of the deepest bucket; shallower ones wait longer (ZIKADE.md §3.3)."""
    explore_max_cpl: int = 14
    """Deepest bucket explored (targets for a CPL need about 2^(CPL+1) hashes)."""
    explore_preimages: bool = True
    """Walk targets with real preimages (the wire needs them); the simulator turns this off."""
    candidates_from_answers: bool = True
    """Offer the closer nodes named in answers to the include queue."""

    def validate(self) -> None:
        """Raise ``ValueError`` for the first sub-configuration that cannot work."""
        self.bootstrap.validate()
        self.include.validate()
        self.probe.validate()
        self.explore.validate()
        if self.explore_interval <= 0:
            raise ValueError("explore_interval must be positive")
        if not 0 <= self.explore_max_cpl <= 15:
            raise ValueError("explore_max_cpl must be within 0..15")


@dataclass(frozen=True, slots=True)
class RoutingRequest(Event):
    """A routing machine wants FIND_NODE(``target``) sent to ``node``."""

    kind: str
    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class RoutingCancel(Event):
    """A routing machine no longer wants the answer of its request to ``node``."""

    kind: str
    node: Key


RoutingInput = AddCandidates | StartBootstrap | NodeConnected | NodeUnreachable
RoutingOutput = (
    RoutingRequest | RoutingCancel | RoutingUpdated | RoutingRemoved | BootstrapFinished
)


class RoutingBehaviour:
    """Keeps the routing table filled and fresh (see the module docstring)."""

    def __init__(
        self,
        self_key: Key,
        table: RoutingTable,
        config: RoutingConfig | None = None,
        *,
        rng: random.Random | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or RoutingConfig()
        self.config.validate()
        self.self_key = self_key
        self.table = table
        self._rng = rng or random.Random()
        self.bootstrap = Bootstrap(self_key, self.config.bootstrap, query_id=BOOTSTRAP)
        self.include = Include(table, self.config.include)
        self.probe = Probe(table, self.config.probe)
        make_target = preimage_targets if self.config.explore_preimages else digest_targets
        self.explore = Explore(
            self_key,
            table,
            self._explore_schedule(now),
            make_target(self_key, self._rng),
            self.config.explore,
            query_id=EXPLORE,
        )
        self._explore_events: deque[ExploreEvent] = deque()
        # A machine's due time changes only when it is advanced (or its schedule is
        # replaced), so it is cached here instead of recomputed on every poll.
        self._dues: dict[str, float | None] = {
            BOOTSTRAP: self.bootstrap.next_due(),
            INCLUDE: self.include.next_due(),
            PROBE: self.probe.next_due(),
            EXPLORE: self.explore.next_due(),
        }
        self._bootstrap_events: deque[BootstrapEvent] = deque()
        self._include_events: deque[IncludeEvent] = deque()
        self._probe_events: deque[ProbeEvent] = deque()
        self._out: deque[RoutingOutput] = deque()

    # -- inputs ------------------------------------------------------------------------------

    def notify(self, event: RoutingInput, now: float) -> None:
        """Take a routing input from the coordinator."""
        match event:
            case AddCandidates(nodes=nodes):
                self._candidates(nodes)
            case StartBootstrap(seeds=seeds):
                self._bootstrap_events.append(BootstrapStart(seeds, trace=event.trace))
            case NodeConnected(node=node):
                self._candidates((node,))
                if self.config.enable_probe:
                    self._probe_events.append(ProbeNotifyConnectivity(node))
            case NodeUnreachable(node=node):
                if self.config.enable_probe:
                    self._probe_events.append(ProbeNotifyNonConnectivity(node))
            case _:
                assert_never(event)

    def node_responded(self, node: Key, closer: Iterable[Key], now: float) -> None:
        """``node`` answered one of our requests: it is a live server."""
        self._admit_live(node, now)
        if self.config.candidates_from_answers:
            self._candidates(closer)

    def node_failed(self, node: Key) -> None:
        """A request to ``node`` failed: check it soon if it is in the table."""
        if self.config.enable_probe and node in self.table:
            self._probe_events.append(ProbeNotifyNonConnectivity(node))

    def on_result(
        self, kind: str, node: Key, closer: tuple[Key, ...], error: str | None, now: float
    ) -> None:
        """The answer (``error`` ``None``) or failure of a routing request."""
        if kind == BOOTSTRAP:
            if error is None:
                self._bootstrap_events.append(BootstrapFindCloserResponse(node, closer))
            else:
                self._bootstrap_events.append(BootstrapFindCloserFailure(node, error))
        elif kind == INCLUDE:
            if error is None:
                self._include_events.append(IncludeCheckSuccess(node, len(closer)))
            else:
                self._include_events.append(IncludeCheckFailure(node, error))
        elif kind == PROBE:
            if error is None:
                self._probe_events.append(ProbeCheckSuccess(node, len(closer)))
            else:
                self._probe_events.append(ProbeCheckFailure(node, error))
        elif kind == EXPLORE:
            if error is None:
                self._explore_events.append(ExploreFindCloserResponse(node, closer))
            else:
                self._explore_events.append(ExploreFindCloserFailure(node, error))

    # -- outputs -----------------------------------------------------------------------------

    def poll(self, now: float) -> RoutingOutput | None:
        """The next routing output, or ``None`` when nothing is due."""
        if not self._out:
            self._advance_bootstrap(now)
            self._advance_include(now)
            self._advance_probe(now)
            self._advance_explore(now)
        return self._out.popleft() if self._out else None

    def next_due(self) -> float | None:
        """When a routing machine next needs time to pass (or at once if events wait)."""
        if (
            self._out
            or self._bootstrap_events
            or self._include_events
            or self._probe_events
            or self._explore_events
        ):
            return float("-inf")
        due = earliest(self._dues[BOOTSTRAP], self._dues[INCLUDE])
        if self.config.enable_probe:
            due = earliest(due, self._dues[PROBE])
        if self.config.enable_explore:
            due = earliest(due, self._dues[EXPLORE])
        return due

    # -- internals ---------------------------------------------------------------------------

    def _explore_schedule(self, start: float) -> DynamicExploreSchedule:
        return DynamicExploreSchedule(
            self._rng,
            max_cpl=self.config.explore_max_cpl,
            start=start,
            interval=self.config.explore_interval,
        )

    def _candidates(self, nodes: Iterable[Key]) -> None:
        # Every lookup answer names up to 20 nodes, nearly all already known or
        # headed for a full bucket: filter here, before an event is built for each.
        would_add = self.table.would_add
        for node in nodes:
            if would_add(node) is AddResult.ADDED:
                self._include_events.append(IncludeAddCandidate(node))

    def _admit_live(self, node: Key, now: float) -> None:
        if self.table.mark_seen(node, now):
            if self.config.enable_probe:
                self._probe_events.append(ProbeNotifyConnectivity(node))
            return
        result = self.table.add(node, now)
        if result is AddResult.ADDED:
            self._announce_added(node)
        elif result is AddResult.BUCKET_FULL:
            self.table.offer_replacement(node, now)

    def _announce_added(self, node: Key) -> None:
        self._out.append(RoutingUpdated(node))
        if self.config.enable_probe:
            self._probe_events.append(ProbeAdd(node))

    @staticmethod
    def _due(machine_due: float | None, now: float) -> bool:
        return machine_due is not None and machine_due <= now

    def _advance_bootstrap(self, now: float) -> None:
        if not self._bootstrap_events and not self._due(self._dues[BOOTSTRAP], now):
            return
        events = self._bootstrap_events
        for _ in range(100_000):
            state = self.bootstrap.advance(events.popleft() if events else BootstrapPoll(), now)
            match state:
                case BootstrapFindCloser(node=node, target=target):
                    self._out.append(RoutingRequest(BOOTSTRAP, node, target, trace=state.trace))
                case BootstrapCancelRequest(node=node):
                    self._out.append(RoutingCancel(BOOTSTRAP, node, trace=state.trace))
                case BootstrapMachineFinished(reason=reason, stats=stats):
                    self._out.append(BootstrapFinished(reason, stats, trace=state.trace))
                    if state.closest:
                        # Joined (again): refresh every bucket now, as go does after
                        # a bootstrap, instead of waiting out the schedule.
                        self.explore.schedule = self._explore_schedule(now)
                        self._dues[EXPLORE] = self.explore.next_due()
                case BootstrapWaiting() | BootstrapIdle():
                    if not events:
                        self._dues[BOOTSTRAP] = self.bootstrap.next_due()
                        return
                case _:
                    assert_never(state)
        raise RuntimeError("bootstrap did not settle")

    def _advance_include(self, now: float) -> None:
        if not self._include_events and not self._due(self._dues[INCLUDE], now):
            return
        events = self._include_events
        for _ in range(100_000):
            state = self.include.advance(events.popleft() if events else IncludePoll(), now)
            match state:
                case IncludeConnectivityCheck(node=node, target=target):
                    self._out.append(RoutingRequest(INCLUDE, node, target, trace=state.trace))
                case IncludeCancelCheck(node=node):
                    self._out.append(RoutingCancel(INCLUDE, node, trace=state.trace))
                case IncludeRoutingUpdated(node=node):
                    self._announce_added(node)
                case (
                    IncludeWaitingAtCapacity()
                    | IncludeWaitingWithCapacity()
                    | IncludeWaitingFull()
                    | IncludeIdle()
                ):
                    if not events:
                        self._dues[INCLUDE] = self.include.next_due()
                        return
                case _:
                    assert_never(state)
        raise RuntimeError("include did not settle")

    def _advance_probe(self, now: float) -> None:
        if not self.config.enable_probe:
            self._probe_events.clear()
            return
        if not self._probe_events and not self._due(self._dues[PROBE], now):
            return
        events = self._probe_events
        for _ in range(100_000):
            state = self.probe.advance(events.popleft() if events else ProbePoll(), now)
            match state:
                case ProbeConnectivityCheck(node=node, target=target):
                    self._out.append(RoutingRequest(PROBE, node, target, trace=state.trace))
                case ProbeCancelCheck(node=node):
                    self._out.append(RoutingCancel(PROBE, node, trace=state.trace))
                case ProbeNodeFailure(node=node, promoted=promoted):
                    self._out.append(RoutingRemoved(node))
                    for p in promoted:
                        self._announce_added(p)
                case ProbeWaitingAtCapacity() | ProbeWaitingWithCapacity() | ProbeIdle():
                    if not events:
                        self._dues[PROBE] = self.probe.next_due()
                        return
                case _:
                    assert_never(state)
        raise RuntimeError("probe did not settle")

    def _advance_explore(self, now: float) -> None:
        if not self.config.enable_explore:
            self._explore_events.clear()
            return
        if not self._explore_events and not self._due(self._dues[EXPLORE], now):
            return
        events = self._explore_events
        for _ in range(100_000):
            state = self.explore.advance(events.popleft() if events else ExplorePoll(), now)
            match state:
                case ExploreFindCloser(node=node, target=target):
                    self._out.append(RoutingRequest(EXPLORE, node, target, trace=state.trace))
                case ExploreCancelRequest(node=node):
                    self._out.append(RoutingCancel(EXPLORE, node, trace=state.trace))
                case ExploreQueryFinished():
                    pass
                case ExploreWaiting() | ExploreIdle():
                    if not events:
                        self._dues[EXPLORE] = self.explore.next_due()
                        return
                case _:
                    assert_never(state)
        raise RuntimeError("explore did not settle")
