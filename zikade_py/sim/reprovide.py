"""One full reprovide cycle of many keys, sweep against classic, in the simulator.

``python -m zikade_py.sim --nodes N --prefill --provider-keys K --reprovide sweep|classic``

One live server (the provider) provides ``K`` random keys and reprovides them
once, with the same coordinator code the node runs:

* ``sweep`` — the keys go to the coordinator's sweep (``SweepAddKeys``, not
  announced yet), which calibrates its region size, schedules the regions over
  the cycle and announces each region once; the run ends when every region has
  been reprovided. The driver part is here: a page of a region's keys is
  answered from the provider's sorted key list (``SweepLoadKeys`` →
  ``SweepKeys``).
* ``classic`` — one FollowUp broadcast per key (a lookup, then ADD_PROVIDER to
  the ``k`` closest), ``classic_concurrency`` at a time, as the classic
  republisher does.

ADD_PROVIDER travels as a :class:`~zikade_py.core.sweep_events.ProvideBatch`
in both (the classic one holds one key), so both are delivered by the same
code. Servers keep only the records of a sample of the keys (``sample``,
1,000 by default, drawn before the cycle): a million keys on twenty servers
each would be twenty million records, and the sample is all the judgement
needs. After the cycle, find-providers for each sampled key runs from a random
other node; ``provider_found_rate`` is the share that found the provider.

Report fields: ``reprovide_lookups`` (sweep: its lookups, calibration
included; classic: one per key), ``reprovide_streams`` (requests the provider
sent during the cycle: every FIND_NODE and every batch is one stream),
``reprovide_records`` (ADD_PROVIDER records delivered), ``reprovide_messages``
(FIND_NODE requests plus records: what one-stream-per-message would send),
``reprovide_virtual_s`` and ``provider_found_rate``.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.coordinator_events import (
    BroadcastFinished,
    BroadcastStored,
    BroadcastStrategy,
    QueryFinished,
    QueryProgressed,
    StartBroadcast,
    StartMessageQuery,
    StopQuery,
)
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep_events import (
    ProvideBatch,
    SweepAddKeys,
    SweepKeys,
    SweepLoadKeys,
    SweepOutput,
    SweepRegionDone,
)
from zikade_py.sim.events import StartOp
from zikade_py.sim.metrics import LookupRecord
from zikade_py.sim.providers import GetProviders, ProvidersReply, ProviderStore

if TYPE_CHECKING:
    from zikade_py.sim.simulation import SimConfig, SimNode, Simulation

REPROVIDE = "reprovide"
FIND = "reprovide-find"
STRATEGIES = ("sweep", "classic")

_FIND_INTERVAL = 0.05
"""Virtual seconds between the starts of two find-providers."""


class ReprovideOps:
    """Runs the reprovide cycle in place of :class:`~zikade_py.sim.ops.Operations`."""

    def __init__(
        self,
        sim: Simulation,
        *,
        keys: int,
        strategy: str,
        sample: int = 1000,
        classic_concurrency: int = 32,
        cycle: float = 3600.0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"reprovide must be one of {', '.join(STRATEGIES)}")
        self._sim = sim
        self._strategy = strategy
        self._count = keys
        self._sample_size = sample
        self._concurrency = classic_concurrency
        self._cycle = cycle
        self.lookups: list[LookupRecord] = []
        """No judged lookups in this mode (the report's lookup fields stay empty)."""
        self._provider = -1
        self._keys: list[Key] = []
        self._values: list[int] = []
        self._sample: set[Key] = set()
        self._sample_list: list[Key] = []
        self._start = 0.0
        self._end: float | None = None
        self._streams = 0
        self._batch_streams = 0
        self._records = 0
        self._classic_next = 0
        self._classic_open = 0
        self._classic_lookups = 0
        self._finds: dict[str, int] = {}
        self._found = 0
        self._finds_done = 0
        self._finds_started = 0
        self._done = False

    # -- the ops interface the simulation calls ----------------------------------------------

    def schedule_all(self, t0: float) -> None:
        """The cycle starts at ``t0``."""
        self._sim.schedule(t0, StartOp(REPROVIDE, 0))

    def hard_end(self, t0: float) -> float:
        """Anything still running after two cycles and an hour counts as hung."""
        return t0 + 2 * self._cycle + 3600.0 + self._count * 0.01

    def all_done(self) -> bool:
        """Whether the cycle and the find-providers have ended."""
        return self._done

    def start(self, op: str, number: int, now: float) -> None:
        """Start the cycle, or find-providers number ``number``."""
        if op == REPROVIDE:
            self._begin(now)
        elif op == FIND:
            self._start_find(number, now)

    def count_request(self, origin: int, query_id: str) -> LookupRecord | None:
        """Count the provider's requests during the cycle (each is one stream)."""
        if origin == self._provider and self._end is None:
            self._streams += 1
            if query_id.startswith("sweep-send-"):
                self._batch_streams += 1
        return None

    def on_progress(self, node: SimNode, out: QueryProgressed, now: float) -> None:
        """A find-providers heard an answer: naming the provider ends it."""
        if out.query_id not in self._finds or self._finds[out.query_id] < 0:
            return
        response = out.response
        provider = self._sim.nodes[self._provider].key
        if isinstance(response, ProvidersReply) and provider in response.providers:
            self._finds[out.query_id] = -1
            self._found += 1
            node.coord.notify(StopQuery(out.query_id), now)

    def on_query_finished(self, node: SimNode, out: QueryFinished, now: float) -> None:
        """A find-providers ended."""
        if self._finds.pop(out.query_id, None) is None:
            return
        self._find_ended(now)

    def on_broadcast_stored(self, node: SimNode, out: BroadcastStored, now: float) -> None:
        """Not needed: a classic reprovide counts until its broadcast finishes."""

    def on_broadcast_finished(self, node: SimNode, out: BroadcastFinished, now: float) -> None:
        """A classic reprovide of one key ended: start the next."""
        if node.index != self._provider or not out.query_id.startswith("rp-"):
            return
        self._classic_open -= 1
        self._classic_fill(now)

    def on_sweep(self, node: SimNode, out: SweepOutput, now: float) -> None:
        """The provider's sweep asks for a region's keys, or reports one done."""
        if node.index != self._provider:
            return
        if isinstance(out, SweepLoadKeys):
            # Nothing here is pending (no burst in this mode): a page of the region's keys.
            lo = bisect.bisect_left(self._values, max(out.region.lo, out.start))
            hi = min(bisect.bisect_left(self._values, out.region.hi), lo + out.limit)
            keys = () if out.pending else tuple(self._keys[lo:hi])
            node.coord.notify(SweepKeys(out.request_id, keys), now)
        elif isinstance(out, SweepRegionDone) and out.ok and not out.burst:
            sweep = node.coord.sweep  # type: ignore[attr-defined]
            start = self._start
            if all(last is not None and last >= start for _, _, last in sweep.schedule()):
                self._cycle_over(now)

    def on_batch(self, server: SimNode, batch: ProvideBatch, sender: SimNode) -> None:
        """ADD_PROVIDER records arrived at ``server``: it keeps those of sampled keys."""
        self._records += len(batch.keys)
        sample = self._sample
        for key in batch.keys:
            if key in sample:
                store = server.providers
                if store is None:
                    store = server.providers = ProviderStore()
                store.add(key, sender.key)

    def origin_departed(self, index: int, now: float) -> None:
        """No churn in this mode."""

    def close(self, now: float) -> None:
        """The run is over."""
        if self._end is None:
            self._end = now

    def report(self) -> dict[str, object]:
        """The reprovide fields of the report."""
        sim = self._sim
        lookups = self._classic_lookups
        stats = None
        if self._strategy == "sweep" and self._provider >= 0:
            sweep = sim.nodes[self._provider].coord.sweep  # type: ignore[attr-defined]
            if sweep is not None:
                stats = sweep.stats(sim.clock.now)
                lookups = stats.lookups_total
        finds = max(1, self._finds_done)
        out: dict[str, object] = {
            "reprovide": self._strategy,
            "provider_keys": self._count,
            "reprovide_lookups": lookups,
            "reprovide_streams": self._streams,
            "reprovide_records": self._records,
            "reprovide_messages": self._streams_find_node() + self._records,
            "reprovide_virtual_s": round((self._end or sim.clock.now) - self._start, 3),
            "reprovide_lookups_per_key": round(lookups / max(1, self._count), 6),
            "provider_found_rate": round(self._found / finds, 4),
            "provider_sample": self._finds_done,
        }
        if stats is not None:
            out["sweep_regions"] = stats.regions
            out["sweep_network_size"] = round(stats.network_size or 0.0, 1)
            out["sweep_prefix_length"] = stats.prefix_length
            out["sweep_failures"] = stats.failures_total
        return out

    # -- the cycle ---------------------------------------------------------------------------

    def _streams_find_node(self) -> int:
        """FIND_NODE requests of the cycle: all requests minus the ADD_PROVIDER streams."""
        return self._streams - self._batches()

    def _batches(self) -> int:
        return self._records if self._strategy == "classic" else self._batch_streams

    def _begin(self, now: float) -> None:
        sim = self._sim
        rng = sim.rng
        servers = [i for i in sim.members if not sim.nodes[i].client]
        self._provider = servers[rng.randrange(len(servers))]
        seen: set[int] = set()
        while len(seen) < self._count:
            seen.add(rng.getrandbits(KEY_BITS))
        self._values = sorted(seen)
        self._keys = [Key.from_int(v) for v in self._values]
        self._sample_list = rng.sample(self._keys, min(self._sample_size, self._count))
        self._sample = set(self._sample_list)
        self._start = now
        node = sim.nodes[self._provider]
        if self._strategy == "sweep":
            node.coord.notify(SweepAddKeys(tuple(self._keys), burst=False), now)
            sim.drain(node, now)
        else:
            self._classic_fill(now)

    def _classic_fill(self, now: float) -> None:
        sim = self._sim
        node = sim.nodes[self._provider]
        started = False
        while self._classic_open < self._concurrency and self._classic_next < self._count:
            key = self._keys[self._classic_next]
            qid = f"rp-{self._classic_next}"
            self._classic_next += 1
            self._classic_open += 1
            self._classic_lookups += 1
            batch = ProvideBatch((key,))
            node.coord.notify(
                StartBroadcast(qid, key, batch, strategy=BroadcastStrategy.FOLLOW_UP), now
            )
            started = True
        if started:
            sim.drain(node, now)
        if self._classic_open == 0 and self._classic_next >= self._count:
            self._cycle_over(now)

    def _cycle_over(self, now: float) -> None:
        if self._end is not None:
            return
        self._end = now
        for number in range(len(self._sample_list)):
            self._sim.schedule(now + 1.0 + number * _FIND_INTERVAL, StartOp(FIND, number))
        if not self._sample_list:
            self._done = True

    # -- find-providers ----------------------------------------------------------------------

    def _start_find(self, number: int, now: float) -> None:
        sim = self._sim
        key = self._sample_list[number]
        self._finds_started += 1
        origin = self._origin()
        if origin is None:
            self._find_ended(now)
            return
        node = sim.nodes[origin]
        provider = sim.nodes[self._provider].key
        if node.providers is not None and provider in node.providers.reply(key).providers:
            self._found += 1
            self._find_ended(now)
            return
        qid = f"rp-find-{number}"
        self._finds[qid] = number
        node.coord.notify(StartMessageQuery(qid, key, GetProviders(key)), now)
        sim.drain(node, now)

    def _find_ended(self, now: float) -> None:
        self._finds_done += 1
        if self._finds_done >= len(self._sample_list):
            self._done = True

    def _origin(self) -> int | None:
        sim = self._sim
        members = sim.members
        for _ in range(64):
            pick = members[sim.rng.randrange(len(members))]
            if pick != self._provider and sim.nodes[pick].joined:
                return pick
        return None


def run_reprovide(
    config: SimConfig,
    coordinator: CoordinatorConfig,
    *,
    keys: int,
    strategy: str,
    sample: int = 1000,
    cycle: float = 3600.0,
) -> dict[str, object]:
    """One reprovide cycle (see the module docstring); the report with wall, CPU and RSS.

    The network is static (no churn), so the routing table's liveness probes
    are switched off: over a cycle they would be most of the events and none of
    the question. The sweep's cycle is ``cycle`` virtual seconds (its cost does
    not depend on it); its lookup targets need no preimages here.
    """
    from zikade_py.sim import peak_rss_mb
    from zikade_py.sim.factory import coordinator_factory
    from zikade_py.sim.simulation import Simulation

    wall, cpu = time.perf_counter(), time.process_time()
    sweep = replace(coordinator.sweep, preimage_targets=False, reprovide_interval=cycle)
    routing = replace(coordinator.routing, enable_probe=False)
    coordinator = replace(coordinator, sweep=sweep, routing=routing)
    sim = Simulation(config, coordinator_factory(coordinator))
    sim.ops = ReprovideOps(  # type: ignore[assignment]
        sim, keys=keys, strategy=strategy, sample=sample, cycle=cycle
    )
    report = sim.run()
    report["probe"] = False
    report["wall_s"] = round(time.perf_counter() - wall, 3)
    report["cpu_s"] = round(time.process_time() - cpu, 3)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


__all__ = ["FIND", "REPROVIDE", "STRATEGIES", "ReprovideOps", "run_reprovide"]
