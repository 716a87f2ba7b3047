"""The operations a simulation runs once the network stands, and how each is judged.

* ``lookup`` — a find-closer query for a random target from a random live node,
  judged against the true closest live servers when it ends.
* ``provide`` — a broadcast of an ADD_PROVIDER for a fresh random key from a
  random live node; even-numbered ones use the classic strategy (FollowUp:
  look up, then store), odd-numbered ones the optimistic one. A classic provide
  counts until ``BroadcastFinished``; an optimistic one until the core says the
  caller may return (``BroadcastStored`` with ``settled``, go returns after 75 %
  of the replicas), or ``BroadcastFinished`` if it never says so.
* ``find-providers`` — once every provide has ended, a GET_PROVIDERS query for
  each provided key from another random live node; it counts until the first
  answer naming a provider (then it is stopped, as a fetching client would),
  and fails if the query ends without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zikade_py.core.coordinator_events import (
    BroadcastFinished,
    BroadcastStored,
    BroadcastStrategy,
    QueryFinished,
    QueryProgressed,
    StartBroadcast,
    StartFindCloserQuery,
    StartMessageQuery,
    StopQuery,
)
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep_events import ProvideBatch, SweepOutput
from zikade_py.sim.events import StartOp
from zikade_py.sim.metrics import (
    ORIGIN_DEPARTED,
    UNFINISHED,
    FindRecord,
    LookupRecord,
    ProvideRecord,
    provider_report,
)
from zikade_py.sim.providers import AddProvider, GetProviders, ProvidersReply, ProviderStore

if TYPE_CHECKING:
    from zikade_py.sim.simulation import SimNode, Simulation

LOOKUP = "lookup"
PROVIDE = "provide"
FIND_PROVIDERS = "find-providers"
OPS = (LOOKUP, PROVIDE, FIND_PROVIDERS)
"""The operation names ``--ops`` takes."""

_FIND_GAP = 1.0
"""Virtual seconds between the last provide ending and the first find-providers."""

Record = LookupRecord | ProvideRecord | FindRecord


class Operations:
    """Starts the operations of one run, follows their outputs and keeps their records."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self.lookups: list[LookupRecord] = []
        self.provides: list[ProvideRecord] = []
        self.finds: list[FindRecord] = []
        self._active: dict[str, Record] = {}
        self._expected = 0
        self._ended = 0
        self._provides_open = 0
        self._last_start = 0.0

    # -- scheduling ------------------------------------------------------------------------

    def schedule_all(self, t0: float) -> None:
        """Put every lookup and provide start on the heap (finds follow the provides)."""
        cfg = self._sim.config
        n = cfg.lookups
        interval = cfg.lookup_interval
        kinds = [op for op in (LOOKUP, PROVIDE) if op in cfg.ops]
        for number in range(n):
            for op in kinds:
                self._sim.schedule(t0 + number * interval, StartOp(op, number))
        self._expected = n * len(cfg.ops)
        self._provides_open = n if PROVIDE in cfg.ops else 0
        self._last_start = t0 + max(0, n - 1) * interval

    def hard_end(self, t0: float) -> float:
        """The virtual time after which anything still running counts as hung."""
        cfg = self._sim.config
        rounds = 2 if FIND_PROVIDERS in cfg.ops else 1
        return self._last_start + rounds * (cfg.lookup_cap + cfg.lookups * cfg.lookup_interval)

    def all_done(self) -> bool:
        """Whether every operation has ended."""
        return self._ended >= self._expected

    def start(self, op: str, number: int, now: float) -> None:
        """Start operation ``number`` of kind ``op`` at ``now``."""
        if op == LOOKUP:
            self._start_lookup(number, now)
        elif op == PROVIDE:
            self._start_provide(number, now)
        else:
            self._start_find(number, now)

    # -- lookups ---------------------------------------------------------------------------

    def _start_lookup(self, number: int, now: float) -> None:
        sim = self._sim
        origin = self._pick_origin()
        target = Key.from_int(sim.rng.getrandbits(KEY_BITS))
        rec = LookupRecord(number, origin if origin is not None else -1, target, now)
        self.lookups.append(rec)
        if origin is None:
            self._end(rec, "no-origin", now)
            return
        node = sim.nodes[origin]
        for seed in node.coord.routing_table.nearest(target, sim.config.k):
            rec.depth[seed] = 0
        qid = f"sim-lookup-{number}"
        self._active[qid] = rec
        node.coord.notify(StartFindCloserQuery(qid, target), now)
        sim.drain(node, now)

    def _judge(self, rec: LookupRecord, found: tuple[Key, ...]) -> None:
        sim = self._sim
        nodes = sim.nodes
        start, origin = rec.start, rec.origin

        def eligible(i: int) -> bool:
            return i != origin and nodes[i].online_since <= start

        truth = [nodes[i].key for i in sim.live.closest(rec.target.value, sim.config.k, eligible)]
        rec.found = found
        found_set = set(found)
        if truth:
            rec.success = truth[0] in found_set
            rec.overlap = sum(1 for t in truth if t in found_set) / len(truth)
        rec.hops = rec.depth.get(found[0], 0) if found else None
        rec.depth = {}

    # -- provides and finds ----------------------------------------------------------------

    def _start_provide(self, number: int, now: float) -> None:
        sim = self._sim
        origin = self._pick_origin()
        key = Key.from_int(sim.rng.getrandbits(KEY_BITS))
        optimistic = number % 2 == 1
        rec = ProvideRecord(number, origin if origin is not None else -1, key, now, optimistic)
        self.provides.append(rec)
        if origin is None:
            self._end(rec, "no-origin", now)
            return
        node = sim.nodes[origin]
        qid = f"sim-provide-{number}"
        self._active[qid] = rec
        strategy = BroadcastStrategy.OPTIMISTIC if optimistic else BroadcastStrategy.FOLLOW_UP
        message = AddProvider(key, node.key)
        node.coord.notify(StartBroadcast(qid, key, message, strategy=strategy), now)
        sim.drain(node, now)

    def _schedule_finds(self, now: float) -> None:
        sim = self._sim
        if FIND_PROVIDERS not in sim.config.ops:
            return
        interval = sim.config.lookup_interval
        start = now + _FIND_GAP
        for number in range(len(self.provides)):
            sim.schedule(start + number * interval, StartOp(FIND_PROVIDERS, number))

    def _start_find(self, number: int, now: float) -> None:
        sim = self._sim
        provide = self.provides[number]
        origin = self._pick_origin(exclude=provide.origin)
        rec = FindRecord(number, origin if origin is not None else -1, provide.key, now)
        self.finds.append(rec)
        if origin is None:
            self._end(rec, "no-origin", now)
            return
        node = sim.nodes[origin]
        if node.providers is not None and node.providers.reply(provide.key).providers:
            rec.first = now  # it stores the record itself: answered locally, as go does
            self._end(rec, "done", now)
            return
        qid = f"sim-find-{number}"
        self._active[qid] = rec
        node.coord.notify(StartMessageQuery(qid, provide.key, GetProviders(provide.key)), now)
        sim.drain(node, now)

    # -- coordinator outputs ---------------------------------------------------------------

    def count_request(self, origin: int, query_id: str) -> LookupRecord | None:
        """A request of ``query_id`` left ``origin``: the lookup it belongs to, if any."""
        rec = self._active.get(query_id)
        if type(rec) is LookupRecord and rec.origin == origin:
            rec.messages += 1
            return rec
        return None

    def on_progress(self, node: SimNode, out: QueryProgressed, now: float) -> None:
        """A find-providers got an answer: the first naming a provider ends the wait."""
        rec = self._active.get(out.query_id)
        if type(rec) is not FindRecord or rec.origin != node.index or rec.first is not None:
            return
        response = out.response
        if isinstance(response, ProvidersReply) and response.providers:
            rec.first = now
            node.coord.notify(StopQuery(out.query_id), now)

    def on_query_finished(self, node: SimNode, out: QueryFinished, now: float) -> None:
        """A lookup or find-providers ended."""
        rec = self._active.get(out.query_id)
        if rec is None or rec.origin != node.index:
            return
        del self._active[out.query_id]
        if type(rec) is LookupRecord:
            self._judge(rec, out.closest)
            self._end(rec, out.reason.value, now)
        elif type(rec) is FindRecord:
            self._end(rec, "done" if rec.first is not None else out.reason.value, now)

    def on_broadcast_stored(self, node: SimNode, out: BroadcastStored, now: float) -> None:
        """A provide stored one replica; ``settled`` says its caller may return."""
        rec = self._active.get(out.query_id)
        if type(rec) is ProvideRecord and rec.origin == node.index:
            rec.stored = max(rec.stored, out.stored)
            if out.settled and rec.settled is None:
                rec.settled = now

    def on_sweep(self, node: SimNode, out: SweepOutput, now: float) -> None:
        """A node's reprovide sweep wants something (only the reprovide mode runs one)."""

    def on_batch(self, server: SimNode, batch: ProvideBatch, sender: SimNode) -> None:
        """A batch of ADD_PROVIDER arrived at ``server``: it stores every record."""
        store = server.providers
        if store is None:
            store = server.providers = ProviderStore()
        for key in batch.keys:
            store.add(key, sender.key)

    def on_broadcast_finished(self, node: SimNode, out: BroadcastFinished, now: float) -> None:
        """A provide ended."""
        rec = self._active.get(out.query_id)
        if type(rec) is not ProvideRecord or rec.origin != node.index:
            return
        del self._active[out.query_id]
        rec.stored = max(rec.stored, len(out.contacted))
        self._end(rec, out.reason.value, now)

    # -- endings -----------------------------------------------------------------------------

    def _end(self, rec: Record, reason: str, now: float) -> None:
        rec.end, rec.reason = now, reason
        self._ended += 1
        if type(rec) is ProvideRecord:
            self._provides_open -= 1
            if self._provides_open == 0:
                self._schedule_finds(now)

    def origin_departed(self, index: int, now: float) -> None:
        """Node ``index`` left: what it was running ends without a verdict."""
        orphaned = [qid for qid, rec in self._active.items() if rec.origin == index]
        for qid in orphaned:
            self._end(self._active.pop(qid), ORIGIN_DEPARTED, now)

    def close(self, now: float) -> None:
        """The run is over: whatever still runs is marked hung."""
        for qid in list(self._active):
            rec = self._active.pop(qid)
            rec.end, rec.reason = now, UNFINISHED

    def report(self) -> dict[str, object]:
        """The provide and find-providers part of the report."""
        return provider_report(self.provides, self.finds)

    # -- helpers -----------------------------------------------------------------------------

    def _pick_origin(self, exclude: int = -1) -> int | None:
        sim = self._sim
        members = sim.members
        for _ in range(64):
            if not members:
                return None
            pick = members[sim.rng.randrange(len(members))]
            if pick != exclude and sim.nodes[pick].joined:
                return pick
        return None
