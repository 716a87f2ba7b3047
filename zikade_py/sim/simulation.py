"""The discrete-event simulation: many coordinators, one virtual clock.

Every simulated node is a sans-IO coordinator with its own seeded RNG. The
simulation is their driver (DESIGN.md §3): it delivers each ``SendFindNode``
to the node it names after the link's latency, lets that node answer from its
routing table (telling it ``NodeConnected(sender)``, since in the simulation
every node is a server), delivers the answer back, and fails requests that the
network lost or nobody answered at the request's deadline — so every request
gets exactly one answer unless the coordinator cancelled it first. After every
input it polls the coordinator dry and arms one timer at ``next_due()``.

A run has two phases:

1. **Join.** Either realistic — nodes come online in batches and bootstrap from
   a few well-known bootstrap nodes (the coordinator then walks towards its own
   key, includes what it hears of and explores on its own schedule) — or
   ``prefill``: every table is filled from global knowledge in one step.
2. **Lookups.** Unresponsive nodes go silent, churn starts, and ``lookups``
   find-closer queries for random targets start from random live nodes. Each is
   judged against the true closest live nodes when it ends.

Determinism: every random choice comes from one seeded ``random.Random`` (plus
one per coordinator derived from it); heap ties break by scheduling order;
dicts are iterated in insertion order only.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zikade_py.core.coordinator_events import (
    BootstrapFinished,
    CancelRequest,
    NodeConnected,
    QueryFinished,
    RequestFailed,
    RequestSucceeded,
    RoutingRemoved,
    RoutingUpdated,
    SendFindNode,
    SendMessage,
    StartBootstrap,
    StartFindCloserQuery,
)
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.trace import Trace
from zikade_py.sim.clock import VirtualClock
from zikade_py.sim.driver import CoordinatorFactory, CoordinatorLike
from zikade_py.sim.keyspace import LiveKeys
from zikade_py.sim.metrics import (
    ORIGIN_DEPARTED,
    UNFINISHED,
    Counters,
    LookupRecord,
    build_report,
)
from zikade_py.sim.network import Network, NetworkConfig

# heap entry kinds
_TIMER = 0
_REQUEST = 1
_RESPONSE = 2
_FAIL = 3
_JOIN = 4
_LOOKUP = 5
_CHURN = 6

_TIMEOUT = "timeout"
_REFUSED = "connection refused"
_STUCK_DELAY = 0.01
"""Seconds to wait before re-polling a coordinator whose next_due is already past."""
_MAX_OUTPUTS_PER_DRAIN = 1_000_000


class SimulationError(RuntimeError):
    """The driven coordinator broke the driver contract (e.g. never stops producing outputs)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation run; defaults are a quick, perfect-network run of 100 nodes."""

    nodes: int = 100
    lookups: int = 100
    seed: int = 0
    prefill: bool = False
    """Fill routing tables from global knowledge instead of joining node by node."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    k: int = 20
    """Nodes a server returns per FIND_NODE, and the size of the true closest set."""
    bootstrap_nodes: int = 4
    """Well-known nodes every other node bootstraps from (like the libp2p bootstrappers)."""
    join_batch: int = 50
    """Nodes that come online together in a realistic join."""
    join_interval: float = 5.0
    """Virtual seconds between two join batches."""
    join_timeout: float = 900.0
    """Virtual seconds after the last batch to wait for every bootstrap to finish."""
    settle: float = 0.0
    """Virtual seconds to let the network run after joining, before the first lookup."""
    lookup_interval: float = 0.05
    """Virtual seconds between the starts of two lookups (they overlap)."""
    lookup_cap: float = 900.0
    """Virtual seconds after the last lookup starts before unfinished ones count as hung."""
    request_timeout: float = 10.0
    """The driver's deadline for a request whose event carries none."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a run that cannot be simulated."""
        if self.nodes < 2:
            raise ValueError("a simulation needs at least two nodes")
        if self.lookups < 0:
            raise ValueError("lookups must not be negative")
        if self.k < 1 or self.bootstrap_nodes < 1 or self.join_batch < 1:
            raise ValueError("k, bootstrap_nodes and join_batch must be at least 1")
        for name in ("join_interval", "join_timeout", "settle", "lookup_interval", "lookup_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        self.network.validate()


class SimNode:
    """One simulated node: its coordinator plus what the network knows about it."""

    __slots__ = (
        "alive",
        "coord",
        "index",
        "joined",
        "key",
        "online_since",
        "pending",
        "responsive",
        "slow_delay",
        "timer_at",
        "timer_token",
    )

    def __init__(self, index: int, key: Key, coord: CoordinatorLike, slow_delay: float) -> None:
        self.index = index
        self.key = key
        self.coord = coord
        self.slow_delay = slow_delay
        self.alive = False
        """Online (joined the network and has not left)."""
        self.responsive = True
        """Answers requests; an unresponsive node is frozen entirely."""
        self.joined = False
        """Its bootstrap finished (or its table was prefilled)."""
        self.online_since = 0.0
        self.timer_at: float | None = None
        self.timer_token = 0
        self.pending: dict[int, tuple[LookupRecord | None, Trace]] = {}
        """Requests this node sent that still await their one answer."""

    @property
    def running(self) -> bool:
        """Whether the node reacts to anything (online and not silenced)."""
        return self.alive and self.responsive


class Simulation:
    """Builds the nodes, runs both phases and reports (see the module docstring)."""

    def __init__(self, config: SimConfig, factory: CoordinatorFactory) -> None:
        config.validate()
        self.config = config
        self._factory = factory
        self._rng = random.Random(config.seed)
        self.network = Network(config.network, random.Random(self._rng.getrandbits(64)))
        self.clock = VirtualClock()
        self.nodes: list[SimNode] = []
        self._keys: list[Key] = []
        """Every node's key by node number, drawn up front for the initial nodes."""
        self._index_of: dict[Key, int] = {}
        self._live = LiveKeys()
        self._members: list[int] = []
        """Online, responsive nodes (random picks: lookup origins, churn, seeds)."""
        self._member_pos: dict[int, int] = {}
        self._bootstrap: list[int] = []
        self.counters = Counters()
        self.records: list[LookupRecord] = []
        self._active: dict[str, LookupRecord] = {}
        self._finished = 0
        self._joined = 0
        self._slow = set(self.network.pick_fraction(list(range(config.nodes)), config.network.slow))
        for _ in range(config.nodes):
            self._new_key()

    # -- building nodes ------------------------------------------------------------------

    def _new_key(self) -> Key:
        while True:
            key = Key.from_int(self._rng.getrandbits(KEY_BITS), b"sim-%d" % len(self._keys))
            if key not in self._index_of:
                self._keys.append(key)
                self._index_of[key] = len(self._keys) - 1
                return key

    def _new_node(self, now: float) -> SimNode:
        """The next node, its coordinator created at ``now`` (when it comes online)."""
        index = len(self.nodes)
        key = self._keys[index] if index < len(self._keys) else self._new_key()
        coord_rng = random.Random(self._rng.getrandbits(64))
        delay = self.config.network.slow_delay if index in self._slow else 0.0
        node = SimNode(index, key, self._factory(key, coord_rng, now), delay)
        self.nodes.append(node)
        return node

    def _go_online(self, node: SimNode, now: float) -> None:
        node.alive = True
        node.online_since = now
        self._live.add(node.key.value, node.index)
        self._member_pos[node.index] = len(self._members)
        self._members.append(node.index)

    def _drop_member(self, index: int) -> None:
        node = self.nodes[index]
        self._live.remove(node.key.value)
        pos = self._member_pos.pop(index)
        last = self._members.pop()
        if last != index:
            self._members[pos] = last
            self._member_pos[last] = pos

    def _mark_joined(self, node: SimNode) -> None:
        if not node.joined:
            node.joined = True
            self._joined += 1

    # -- the driver ----------------------------------------------------------------------

    def _drain(self, node: SimNode, now: float) -> None:
        """Poll ``node`` until it has nothing more to do at ``now``, then arm its timer."""
        poll = node.coord.poll
        outputs = 0
        while (out := poll(now)) is not None:
            outputs += 1
            if outputs > _MAX_OUTPUTS_PER_DRAIN:
                raise SimulationError(f"node {node.index} produced outputs without end")
            if isinstance(out, SendFindNode):
                self._send(node, out.request_id, out.to, out.target, out.query_id, out.trace, now)
            elif isinstance(out, CancelRequest):
                if node.pending.pop(out.request_id, None) is not None:
                    self.counters.cancelled += 1
            elif isinstance(out, QueryFinished):
                self._query_finished(node, out, now)
            elif isinstance(out, RoutingUpdated):
                self.counters.routing_updated += 1
            elif isinstance(out, RoutingRemoved):
                self.counters.routing_removed += 1
            elif isinstance(out, SendMessage):
                target = out.message if isinstance(out.message, Key) else None
                self._send(node, out.request_id, out.to, target, out.query_id, out.trace, now)
            elif isinstance(out, BootstrapFinished):
                reasons = self.counters.bootstrap_reasons
                reasons[out.reason.value] = reasons.get(out.reason.value, 0) + 1
                self._mark_joined(node)
            # QueryProgressed, BroadcastFinished: nothing for the network to do
        due = node.coord.next_due()
        if due is None:
            return
        if due <= now:
            self.counters.stuck_timers += 1
            due = now + _STUCK_DELAY
        if node.timer_at is not None and node.timer_at <= due:
            return
        node.timer_token += 1
        node.timer_at = due
        self.clock.schedule(due, _TIMER, node.index, node.timer_token)

    def _send(
        self,
        node: SimNode,
        request_id: int,
        to: Key,
        target: Key | None,
        query_id: str,
        trace: Trace,
        now: float,
    ) -> None:
        counters = self.counters
        counters.requests += 1
        rec = self._active.get(query_id)
        if rec is not None:
            if rec.origin == node.index:
                rec.messages += 1
            else:
                rec = None
        node.pending[request_id] = (rec, trace)
        deadline = trace.deadline
        if deadline is None:
            deadline = now + self.config.request_timeout
        dst = self._index_of.get(to)
        if dst is None or target is None:
            # a node nobody ever created, or a message the simulation cannot interpret
            self.clock.schedule(now, _FAIL, node.index, 0, request_id, _REFUSED)
        elif self.network.lost():
            counters.lost += 1
            self.clock.schedule(deadline, _FAIL, node.index, 0, request_id, _TIMEOUT)
        else:
            at = now + self.network.latency(node.index, dst)
            self.clock.schedule(at, _REQUEST, node.index, dst, request_id, (target, deadline))

    def _on_request(
        self, src: int, dst: int, request_id: int, target: Key, deadline: float, now: float
    ) -> None:
        server = self.nodes[dst]
        clock = self.clock
        if not server.alive:
            self.counters.refused += 1
            at = min(now + self.network.latency(src, dst), deadline)
            clock.schedule(at, _FAIL, src, 0, request_id, _REFUSED)
            return
        if not server.responsive:
            clock.schedule(deadline, _FAIL, src, 0, request_id, _TIMEOUT)
            return
        k = self.config.k
        sender = self.nodes[src].key
        closer = server.coord.routing_table.nearest(target, k + 1)
        sender_value = sender.value
        for i, c in enumerate(closer):
            if c.value == sender_value:
                del closer[i]
                break
        answer = tuple(closer[:k])
        server.coord.notify(NodeConnected(sender), now)
        self._drain(server, now)
        if self.network.lost():
            self.counters.lost += 1
            clock.schedule(deadline, _FAIL, src, 0, request_id, _TIMEOUT)
            return
        at = now + self.network.latency(src, dst) + server.slow_delay
        if at > deadline:
            clock.schedule(deadline, _FAIL, src, 0, request_id, _TIMEOUT)
        else:
            clock.schedule(at, _RESPONSE, src, dst, request_id, answer)

    def _on_response(
        self, src: int, dst: int, request_id: int, closer: tuple[Key, ...], now: float
    ) -> None:
        node = self.nodes[src]
        if not node.running:
            return
        entry = node.pending.pop(request_id, None)
        if entry is None:
            return  # cancelled by the coordinator
        rec, trace = entry
        self.counters.responses += 1
        if rec is not None and rec.reason is None:
            depth = rec.depth
            d = depth.get(self.nodes[dst].key, 0) + 1
            for c in closer:
                old = depth.get(c)
                if old is None or old > d:
                    depth[c] = d
        node.coord.notify(RequestSucceeded(request_id, closer, trace=trace), now)
        self._drain(node, now)

    def _on_fail(self, src: int, request_id: int, error: str, now: float) -> None:
        node = self.nodes[src]
        if not node.running:
            return
        entry = node.pending.pop(request_id, None)
        if entry is None:
            return
        if error == _TIMEOUT:
            self.counters.timed_out += 1
        node.coord.notify(RequestFailed(request_id, error, trace=entry[1]), now)
        self._drain(node, now)

    def _run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events up to virtual time ``until`` or until ``stop()`` holds."""
        clock = self.clock
        heap = clock.heap
        pop = heapq.heappop
        nodes = self.nodes
        counters = self.counters
        while heap:
            if heap[0][0] > until or (stop is not None and stop()):
                break
            now, _, kind, a, b, c, d = pop(heap)
            clock.now = now
            counters.events += 1
            if kind == _REQUEST:
                self._on_request(a, b, c, d[0], d[1], now)
            elif kind == _RESPONSE:
                self._on_response(a, b, c, d, now)
            elif kind == _TIMER:
                node = nodes[a]
                if node.timer_token == b and node.running:
                    node.timer_at = None
                    self._drain(node, now)
            elif kind == _FAIL:
                self._on_fail(a, c, d, now)
            elif kind == _JOIN:
                self._join(self._new_node(now), now)
            elif kind == _LOOKUP:
                self._start_lookup(a, now)
            elif kind == _CHURN:
                self._churn(now)

    # -- joining -------------------------------------------------------------------------

    def _join(self, node: SimNode, now: float) -> None:
        self._go_online(node, now)
        seeds = tuple(
            self.nodes[i].key for i in self._bootstrap if i < node.index and self.nodes[i].running
        )
        if not seeds:
            seeds = self._random_seed(node.index)
        if not seeds:
            self._mark_joined(node)  # the first node: nobody to bootstrap from
        else:
            node.coord.notify(StartBootstrap(seeds), now)
        self._drain(node, now)

    def _random_seed(self, exclude: int) -> tuple[Key, ...]:
        for _ in range(32):
            if not self._members:
                break
            pick = self._members[self._rng.randrange(len(self._members))]
            if pick != exclude and self.nodes[pick].joined:
                return (self.nodes[pick].key,)
        return ()

    def _join_realistic(self) -> None:
        cfg = self.config
        self._bootstrap = list(range(min(cfg.bootstrap_nodes, cfg.nodes)))
        last = 0.0
        for i in range(cfg.nodes):
            at = (i // cfg.join_batch) * cfg.join_interval + (i % cfg.join_batch) * 1e-3
            last = at
            self.clock.schedule(at, _JOIN, i)
        self._run(last)
        self._run(last + cfg.join_timeout, lambda: self._joined >= cfg.nodes)

    def _prefill(self) -> None:
        cfg = self.config
        for _ in range(cfg.nodes):
            self._go_online(self._new_node(0.0), 0.0)
        self._bootstrap = list(range(min(cfg.bootstrap_nodes, cfg.nodes)))
        for node in self.nodes:
            table = node.coord.routing_table
            for j in self._live.buckets(node.key.value, cfg.k, self._rng):
                table.add(self.nodes[j].key, 0.0)
            self._mark_joined(node)
        for node in self.nodes:
            self._drain(node, 0.0)

    # -- lookups -------------------------------------------------------------------------

    def _start_lookup(self, number: int, now: float) -> None:
        origin = self._pick_origin()
        target = Key.from_int(self._rng.getrandbits(KEY_BITS))
        rec = LookupRecord(number, origin if origin is not None else -1, target, now)
        self.records.append(rec)
        if origin is None:
            rec.reason, rec.end = "no-origin", now
            self._finished += 1
            return
        node = self.nodes[origin]
        for seed in node.coord.routing_table.nearest(target, self.config.k):
            rec.depth[seed] = 0
        query_id = f"sim-lookup-{number}"
        self._active[query_id] = rec
        node.coord.notify(StartFindCloserQuery(query_id, target), now)
        self._drain(node, now)

    def _pick_origin(self) -> int | None:
        members = self._members
        for _ in range(64):
            if not members:
                return None
            pick = members[self._rng.randrange(len(members))]
            if self.nodes[pick].joined:
                return pick
        return None

    def _query_finished(self, node: SimNode, out: QueryFinished, now: float) -> None:
        rec = self._active.get(out.query_id)
        if rec is None or rec.origin != node.index:
            return
        del self._active[out.query_id]
        self._judge(rec, out.reason.value, out.closest, now)

    def _judge(self, rec: LookupRecord, reason: str, found: tuple[Key, ...], now: float) -> None:
        rec.end, rec.reason, rec.found = now, reason, found
        self._finished += 1
        nodes = self.nodes
        start, origin = rec.start, rec.origin

        def eligible(i: int) -> bool:
            return i != origin and nodes[i].online_since <= start

        truth = [
            nodes[i].key for i in self._live.closest(rec.target.value, self.config.k, eligible)
        ]
        found_set = set(found)
        if truth:
            rec.success = truth[0] in found_set
            rec.overlap = sum(1 for t in truth if t in found_set) / len(truth)
        rec.hops = rec.depth.get(found[0], 0) if found else None
        rec.depth = {}

    def _churn(self, now: float) -> None:
        members = self._members
        if len(members) > self.config.bootstrap_nodes + 1:
            leaving = members[self._rng.randrange(len(members))]
            self._depart(leaving, now)
        node = self._new_node(now)
        self.counters.churn_joins += 1
        self._join(node, now)
        gap = self.network.next_churn_gap(len(members))
        if gap is not None:
            self.clock.schedule(now + gap, _CHURN)

    def _depart(self, index: int, now: float) -> None:
        node = self.nodes[index]
        node.alive = False
        node.pending.clear()
        self._drop_member(index)
        self.counters.churn_leaves += 1
        orphaned = [qid for qid, rec in self._active.items() if rec.origin == index]
        for qid in orphaned:
            rec = self._active.pop(qid)
            rec.end, rec.reason = now, ORIGIN_DEPARTED
            self._finished += 1

    # -- the run -------------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        """Join, look up, judge; the report without the machine-dependent fields."""
        cfg = self.config
        wall0 = time.perf_counter()
        if cfg.prefill:
            self._prefill()
        else:
            self._join_realistic()
        if cfg.settle > 0:
            end = self.clock.now + cfg.settle
            self._run(end)
            self.clock.advance_to(end)
        join_virtual = self.clock.now
        wall1 = time.perf_counter()

        t0 = self.clock.now
        candidates = list(self._members)
        for index in self.network.pick_fraction(candidates, cfg.network.unresponsive):
            self.nodes[index].responsive = False
            self.nodes[index].pending.clear()
            self._drop_member(index)
        for n in range(cfg.lookups):
            self.clock.schedule(t0 + n * cfg.lookup_interval, _LOOKUP, n)
        gap = self.network.next_churn_gap(len(self._members))
        if gap is not None:
            self.clock.schedule(t0 + gap, _CHURN)
        last_start = t0 + max(0, cfg.lookups - 1) * cfg.lookup_interval
        self._run(last_start + cfg.lookup_cap, lambda: self._finished >= cfg.lookups)
        for qid in list(self._active):
            rec = self._active.pop(qid)
            rec.end, rec.reason = self.clock.now, UNFINISHED
        wall2 = time.perf_counter()

        sizes = [len(self.nodes[i].coord.routing_table) for i in self._members]
        self.counters.admission_dropped = sum(
            int(getattr(node.coord, "requests_dropped", 0)) for node in self.nodes
        )
        net = cfg.network
        settings: dict[str, object] = {
            "nodes": cfg.nodes,
            "lookups": cfg.lookups,
            "seed": cfg.seed,
            "prefill": cfg.prefill,
            "loss": net.loss,
            "unresponsive": net.unresponsive,
            "slow": net.slow,
            "churn": net.churn,
            "latency_median_ms": net.latency.median * 1000.0,
            "latency_sigma": net.latency.sigma,
        }
        phases = {
            "join_virtual_s": join_virtual,
            "lookup_virtual_s": self.clock.now - t0,
            "join_wall_s": wall1 - wall0,
            "lookup_wall_s": wall2 - wall1,
        }
        return build_report(
            settings=settings,
            records=self.records,
            counters=self.counters,
            phases=phases,
            table_sizes=sizes,
        )
