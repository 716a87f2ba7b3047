"""The routing behaviour: the table and the four machines that keep it healthy.

It owns the :class:`~zikade_py.core.routing_table.RoutingTable` and the
bootstrap, include, probe and explore machines, and is what the coordinator
talks to about routing. Rules:

* **One writer.** Only this behaviour changes the table. The machines read it
  and return decisions: the probe's :class:`ProbeNodeFailure` evicts, and
  admission is one rule for every answer from every request (a query's, a
  walk's, an include check's or a probe's): a node that answered proves itself
  a live server if the table's
  :meth:`~zikade_py.core.routing_table.RoutingTable.proves_useful` accepts its
  answer (at least one closer node, once the table holds k nodes). Then it
  enters the table (or, its bucket full, the replacement cache), or if present
  is marked seen and its next liveness check pushed out. A node whose answer
  is refused never enters, and if seated is left to its probe, which evicts it
  by the same rule.
* The closer nodes that answers name become include candidates, which must
  answer a check first. :class:`NodeConnected` (a peer that speaks kad as a
  server contacted us) makes the node a candidate and, if seated, marks it
  seen; :class:`NodeUnreachable` and failed requests bring its liveness check
  forward instead of evicting it on one failure.
* A replacement promoted into a freed seat was checked only when it was
  parked: the probe checks it at once.
* A request our own admission control refused (:meth:`on_dropped`) is no
  failure of the node: each machine has its own dropped event (retry later,
  the node keeps its seat or its place in the walk).
* A bootstrap's self-lookup that finished DONE refreshes the buckets it
  covered (those deeper than its farthest result); the explore walks only
  visit the others, and only when their bucket is not full (see
  ``routing.explore``). A run cut short covers nothing.
* Machines are advanced only when an event reached them or their due time has
  come, all by one drive loop. Their requests leave as :class:`RoutingRequest`
  (``machine`` names the machine, so the outcome finds its way back) and their
  cancellations as :class:`RoutingCancel`; table changes leave as
  ``RoutingUpdated`` / ``RoutingRemoved`` and bootstrap endings as
  ``BootstrapFinished``.
* Everything here starts with a fresh trace: routing upkeep caused by a query
  must survive that query's cancellation (DESIGN.md §2 rule 3).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar, assert_never

from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    NodeConnected,
    NodeUnreachable,
    RoutingRemoved,
    RoutingUpdated,
    StartBootstrap,
)
from zikade_py.core.event import Event, FinishReason
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.routing.bootstrap import (
    Bootstrap,
    BootstrapCancelRequest,
    BootstrapConfig,
    BootstrapEvent,
    BootstrapFindCloser,
    BootstrapFindCloserDropped,
    BootstrapFindCloserFailure,
    BootstrapFindCloserResponse,
    BootstrapIdle,
    BootstrapPoll,
    BootstrapStart,
    BootstrapState,
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
    ExploreCovered,
    ExploreEvent,
    ExploreFindCloser,
    ExploreFindCloserDropped,
    ExploreFindCloserFailure,
    ExploreFindCloserResponse,
    ExploreIdle,
    ExplorePoll,
    ExploreQueryFinished,
    ExploreState,
    ExploreWaiting,
)
from zikade_py.core.routing.include import (
    Include,
    IncludeCancelCheck,
    IncludeCheckDropped,
    IncludeCheckFailure,
    IncludeCheckSuccess,
    IncludeConfig,
    IncludeConnectivityCheck,
    IncludeEvent,
    IncludeIdle,
    IncludePoll,
    IncludeState,
    IncludeWaitingAtCapacity,
    IncludeWaitingFull,
    IncludeWaitingWithCapacity,
)
from zikade_py.core.routing.probe import (
    Probe,
    ProbeAdd,
    ProbeCancelCheck,
    ProbeCheckDropped,
    ProbeCheckFailure,
    ProbeCheckSuccess,
    ProbeConfig,
    ProbeConnectivityCheck,
    ProbeEvent,
    ProbeIdle,
    ProbeNodeFailure,
    ProbeNotifyNonConnectivity,
    ProbePoll,
    ProbeState,
    ProbeWaitingAtCapacity,
    ProbeWaitingWithCapacity,
)
from zikade_py.core.routing_table import AddResult, RoutingTable
from zikade_py.core.trace import earliest

_WAITING_STATES: frozenset[type] = frozenset(
    {
        BootstrapWaiting, BootstrapIdle, ExploreWaiting, ExploreIdle, IncludeWaitingAtCapacity,
        IncludeWaitingWithCapacity, IncludeWaitingFull, IncludeIdle, ProbeWaitingAtCapacity,
        ProbeWaitingWithCapacity, ProbeIdle,
    }
)
"""The machines' waiting and idle states (the first case of ``_act``, tested by type first)."""


class RoutingMachine(Enum):
    """Which routing machine a request belongs to, so its outcome finds its way back."""

    BOOTSTRAP = "bootstrap"
    INCLUDE = "include"
    PROBE = "probe"
    EXPLORE = "explore"

    # Members are singletons: identity hashing (in C) is exact, and Enum's own __hash__
    # is a Python call on the path of every routing request.
    __hash__ = object.__hash__


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
    """The routing ``machine`` wants FIND_NODE(``target``) sent to ``node``."""

    machine: RoutingMachine
    node: Key
    target: Key


@dataclass(frozen=True, slots=True)
class RoutingCancel(Event):
    """The routing ``machine`` no longer wants the answer of its request to ``node``."""

    machine: RoutingMachine
    node: Key


RoutingInput = AddCandidates | StartBootstrap | NodeConnected | NodeUnreachable
RoutingOutput = (
    RoutingRequest | RoutingCancel | RoutingUpdated | RoutingRemoved | BootstrapFinished
)

_State = BootstrapState | IncludeState | ProbeState | ExploreState
_E = TypeVar("_E", bound=Event)


@dataclass(slots=True, eq=False)
class _Slot(Generic[_E]):
    """One machine as the drive loop sees it: how to advance it and to word its events."""

    machine: RoutingMachine
    advance: Callable[[_E, float], _State]
    machine_due: Callable[[], float | None]
    poll: _E
    """The machine's poll event (fieldless and immutable: one instance serves every drive)."""
    answered: Callable[[Key, tuple[Key, ...]], _E]
    failed: Callable[[Key, str], _E]
    dropped: Callable[[Key], _E]
    enabled: bool
    events: deque[_E] = field(default_factory=deque)
    due: float | None = None
    """The machine's due time, read after its last advance (it changes only then)."""

    def push(self, event: _E) -> None:
        """Queue ``event`` for the next drive (a disabled machine hears nothing)."""
        if self.enabled:
            self.events.append(event)

    def answer(self, node: Key, closer: tuple[Key, ...]) -> None:
        """The machine's request to ``node`` was answered."""
        self.push(self.answered(node, closer))

    def fail(self, node: Key, error: str) -> None:
        """The machine's request to ``node`` failed."""
        self.push(self.failed(node, error))

    def drop(self, node: Key) -> None:
        """Our admission control refused the machine's request to ``node``."""
        self.push(self.dropped(node))


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
        asked: Callable[[Key], bool] | None = None,
    ) -> None:
        """``asked(node)``: whether a request of ours to ``node`` is in flight (see ``Include``)."""
        cfg = self.config = config or RoutingConfig()
        cfg.validate()
        self.self_key = self_key
        self.table = table
        self._rng = rng or random.Random()
        self._now = now
        """The latest time an input or poll brought; what :meth:`next_due` answers with
        while events wait (they are due at once)."""
        self.bootstrap = Bootstrap(self_key, cfg.bootstrap, query_id=RoutingMachine.BOOTSTRAP.value)
        self.include = Include(table, cfg.include, asked=asked)
        self.probe = Probe(table, cfg.probe)
        make_target = preimage_targets if cfg.explore_preimages else digest_targets
        self.explore = Explore(
            self_key,
            table,
            DynamicExploreSchedule(
                self._rng, max_cpl=cfg.explore_max_cpl, start=now, interval=cfg.explore_interval
            ),
            make_target(self_key, self._rng),
            cfg.explore,
            query_id=RoutingMachine.EXPLORE.value,
        )
        self._bootstrap: _Slot[BootstrapEvent] = _Slot(
            RoutingMachine.BOOTSTRAP, self.bootstrap.advance, self.bootstrap.next_due,
            poll=BootstrapPoll(), answered=BootstrapFindCloserResponse,
            failed=BootstrapFindCloserFailure, dropped=BootstrapFindCloserDropped, enabled=True,
        )
        self._include: _Slot[IncludeEvent] = _Slot(
            RoutingMachine.INCLUDE, self.include.advance, self.include.next_due,
            poll=IncludePoll(), answered=lambda n, c: IncludeCheckSuccess(n, len(c)),
            failed=IncludeCheckFailure, dropped=IncludeCheckDropped, enabled=True,
        )
        self._probe: _Slot[ProbeEvent] = _Slot(
            RoutingMachine.PROBE, self.probe.advance, self.probe.next_due,
            poll=ProbePoll(), answered=lambda n, c: ProbeCheckSuccess(n, len(c)),
            failed=ProbeCheckFailure, dropped=ProbeCheckDropped, enabled=cfg.enable_probe,
        )
        self._explore: _Slot[ExploreEvent] = _Slot(
            RoutingMachine.EXPLORE, self.explore.advance, self.explore.next_due,
            poll=ExplorePoll(), answered=ExploreFindCloserResponse,
            failed=ExploreFindCloserFailure, dropped=ExploreFindCloserDropped,
            enabled=cfg.enable_explore,
        )
        self._slots = (self._bootstrap, self._include, self._probe, self._explore)
        for slot in self._slots:
            slot.due = slot.machine_due() if slot.enabled else None
        self._out: deque[RoutingOutput] = deque()

    # -- inputs ------------------------------------------------------------------------------

    def notify(self, event: RoutingInput, now: float) -> None:
        """Take a routing input from the coordinator."""
        self._now = now
        match event:
            case AddCandidates(nodes=nodes):
                self._candidates(nodes)
            case StartBootstrap(seeds=seeds):
                self._bootstrap.push(BootstrapStart(seeds, trace=event.trace))
            case NodeConnected(node=node):
                self._candidates((node,))
                if self.table.mark_seen(node, now):
                    self._seen(node, now)
            case NodeUnreachable(node=node):
                self._probe.push(ProbeNotifyNonConnectivity(node))
            case _:
                assert_never(event)

    def node_responded(self, node: Key, closer: Iterable[Key], now: float) -> None:
        """``node`` answered one of our requests (any owner's): the one admission rule."""
        self._now = now
        closer = tuple(closer)
        self._heard_from(node, len(closer), now)
        if self.config.candidates_from_answers:
            self._candidates(closer)

    def node_failed(self, node: Key) -> None:
        """A request to ``node`` failed (not dropped): check it soon if it is in the table."""
        if node in self.table:
            self._probe.push(ProbeNotifyNonConnectivity(node))

    def on_response(
        self, machine: RoutingMachine, node: Key, closer: tuple[Key, ...], now: float
    ) -> None:
        """``machine``'s request to ``node`` was answered with ``closer`` nodes."""
        self._now = now
        self._slot(machine).answer(node, closer)

    def on_failure(self, machine: RoutingMachine, node: Key, error: str, now: float) -> None:
        """``machine``'s request to ``node`` failed (an error, a reset, a timeout)."""
        self._now = now
        self._slot(machine).fail(node, error)

    def on_dropped(self, machine: RoutingMachine, node: Key, now: float) -> None:
        """Our own admission control refused ``machine``'s request to ``node``."""
        self._now = now
        self._slot(machine).drop(node)

    # -- outputs -----------------------------------------------------------------------------

    def poll(self, now: float) -> RoutingOutput | None:
        """The next routing output, or ``None`` when nothing is due."""
        self._now = now
        out = self._out
        if not out:
            # Tested inline, not by a call: poll runs after every answer and most machines
            # are idle. A disabled machine has no events and no due time.
            b, i, p, e = self._slots
            if b.events or (b.due is not None and b.due <= now):
                self._drive(b, now)
            if i.events or (i.due is not None and i.due <= now):
                self._drive(i, now)
            if p.events or (p.due is not None and p.due <= now):
                self._drive(p, now)
            if e.events or (e.due is not None and e.due <= now):
                self._drive(e, now)
        return out.popleft() if out else None

    def next_due(self) -> float | None:
        """When :meth:`poll` must run next: the latest ``now`` seen if work waits already.

        No side effects: it reads the due times cached after each machine's last advance.
        """
        b, i, p, e = self._slots
        if self._out or b.events or i.events or p.events or e.events:
            return self._now
        return earliest(b.due, i.due, p.due, e.due)

    # -- internals ---------------------------------------------------------------------------

    def _slot(
        self, machine: RoutingMachine
    ) -> _Slot[BootstrapEvent] | _Slot[IncludeEvent] | _Slot[ProbeEvent] | _Slot[ExploreEvent]:
        match machine:
            case RoutingMachine.BOOTSTRAP:
                return self._bootstrap
            case RoutingMachine.INCLUDE:
                return self._include
            case RoutingMachine.PROBE:
                return self._probe
            case RoutingMachine.EXPLORE:
                return self._explore
            case _:
                assert_never(machine)

    def _drive(self, slot: _Slot[_E], now: float) -> None:
        """Advance a machine with events queued or due through its events until it waits."""
        events = slot.events
        for _ in range(100_000):
            state = slot.advance(events.popleft() if events else slot.poll, now)
            if not self._act(slot.machine, state, now) and not events:
                slot.due = slot.machine_due()
                return
        raise RuntimeError(f"routing machine {slot.machine.value} did not settle")

    def _act(self, machine: RoutingMachine, state: _State, now: float) -> bool:
        """Carry out a machine's state; ``True`` for action states (advance it again)."""
        if type(state) in _WAITING_STATES:
            return False  # every drive ends in one: one set lookup, not eleven class tests
        match state:
            case (
                BootstrapWaiting()
                | BootstrapIdle()
                | ExploreWaiting()
                | ExploreIdle()
                | IncludeWaitingAtCapacity()
                | IncludeWaitingWithCapacity()
                | IncludeWaitingFull()
                | IncludeIdle()
                | ProbeWaitingAtCapacity()
                | ProbeWaitingWithCapacity()
                | ProbeIdle()
            ):
                return False
            case (
                BootstrapFindCloser(node=node, target=target)
                | ExploreFindCloser(node=node, target=target)
                | IncludeConnectivityCheck(node=node, target=target)
                | ProbeConnectivityCheck(node=node, target=target)
            ):
                self._out.append(RoutingRequest(machine, node, target, trace=state.trace))
            case (
                BootstrapCancelRequest(node=node)
                | ExploreCancelRequest(node=node)
                | IncludeCancelCheck(node=node)
                | ProbeCancelCheck(node=node)
            ):
                self._out.append(RoutingCancel(machine, node, trace=state.trace))
            case BootstrapMachineFinished(reason=reason, stats=stats, closest=closest):
                self._out.append(BootstrapFinished(reason, stats, trace=state.trace))
                if closest:
                    self._explore.push(ExploreCovered(self._covered_from(reason, closest)))
            case ExploreQueryFinished():
                pass
            case ProbeNodeFailure(node=node):
                self._evict(node)
            case _:
                assert_never(state)
        return True

    def _covered_from(self, reason: FinishReason, closest: tuple[Key, ...]) -> int:
        """The shallowest bucket a self-lookup ending with ``closest`` filled completely.

        Every node sharing more bits with us than the farthest result is closer
        than it, so it is among the results: buckets deeper than that result's
        are complete. A lookup that finished DONE with fewer results than asked
        for saw everyone; one cut short (timeout, cancel) vouches for nothing.
        """
        if reason is not FinishReason.DONE:
            return KEY_BITS
        if len(closest) < self.config.bootstrap.num_results:
            return 0
        return min(self.table.cpl(node) for node in closest) + 1

    def _candidates(self, nodes: Iterable[Key]) -> None:
        # Most answers name no node with a free seat: those cost no include advance. The
        # table is asked once: the include queue takes the filtered batch as it is.
        batch = self.table.seatable(nodes)
        if batch and self.include.offer(batch):
            self._include.push(self._include.poll)

    def _heard_from(self, node: Key, closer_count: int, now: float) -> None:
        table = self.table
        if not table.proves_useful(closer_count):
            return  # if seated, its probe applies the same rule and evicts it
        if table.mark_seen(node, now):
            self._seen(node, now)
            return
        result = table.add(node, now)
        if result is AddResult.ADDED:
            self._out.append(RoutingUpdated(node))
            probe = self._probe
            if probe.enabled:
                # ProbeAdd applied directly (Probe.add): a verified node's first check is
                # an interval away, so it creates no work now; only the probe's due time
                # may move earlier. An event and a probe drive per table add saved.
                self.probe.add(node, now)
                probe.due = self.probe.next_due()
        elif result is AddResult.BUCKET_FULL:
            table.offer_replacement(node, now)

    def _seen(self, node: Key, now: float) -> None:
        # ProbeNotifyConnectivity applied directly (Probe.seen): it only pushes a check
        # out, and queueing it cost an event and a probe drive per answer.
        if self._probe.enabled:
            self.probe.seen(node, now)

    def _evict(self, node: Key) -> None:
        if not self.table.remove(node):
            return
        self._out.append(RoutingRemoved(node))
        for promoted in self.table.take_promoted():
            self._announce_added(promoted, verified=False)

    def _announce_added(self, node: Key, *, verified: bool) -> None:
        self._out.append(RoutingUpdated(node))
        self._probe.push(ProbeAdd(node, verified))

