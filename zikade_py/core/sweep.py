"""The reprovide sweep: announce many provided keys region by region, spread over 22 h.

The classic reprovider looks every key up on its own (one lookup and ``k``
ADD_PROVIDERs per key per cycle); its cost grows with the number of keys. The
sweep (go-libp2p-kad-dht's ``provider`` package, "provide sweep") makes it grow
with the size of the network instead. Rules of the machine:

* **Regions.** Keys are grouped by keyspace prefix (:class:`Region`). A new
  key joins the scheduled region that holds it, or a new region whose prefix
  length is sized from the estimated network size so that it holds ``k`` to
  ``2k`` servers (:mod:`.sweep_netsize`; the node's provide lookups feed it
  through :class:`SweepLookupSeen`, and a few calibration lookups to random
  targets run when nothing else sized it: at once for burst keys, after
  ``calibration_delay`` for keys a ``provide`` just announced).
* **Schedule.** Each region has a slot in the ``reprovide_interval`` cycle
  (its prefix XOR our key, evenly spread: :func:`slot_offset`); after a full
  reprovide at ``t`` its next one is its first slot after ``t + interval / 2``,
  so two announcements are between half and one and a half intervals apart.
  Regions due earliest go first, so overdue ones (after a restart) come before
  the rest; at most ``max_regions`` are worked on at once.
* **One region, one exploration.** A region's keys are loaded from the driver
  (:class:`SweepLoadKeys`), then lookups to targets in the still unexplored
  parts of the region run until every server under its prefix is known
  (each lookup covers the prefix its ``k``-th closest answer proves complete:
  :func:`covered_region`). A region found to hold fewer than ``k`` servers is
  widened to its parent; one holding enough for two is split, both halves
  taking its place in the schedule. Regions with at most
  ``individual_threshold`` keys skip exploration: one lookup per key.
* **Batches.** Every key goes to its ``k`` closest explored servers
  (:func:`allocate`); each server gets its keys on one stream
  (:class:`SweepSend`, at most ``batch_size`` keys each), at most
  ``max_sends`` streams in flight per region.
* **Outcome.** A region succeeded when at least ``min_reachable_ratio`` of its
  servers took all their records; then it is rescheduled and reported
  (:class:`SweepRegionDone`, :class:`SweepScheduleChanged` for the driver to
  persist). A failed region is retried ``retry_interval`` later.
* **Burst.** Keys added with ``burst`` are announced ``burst_delay`` after
  they arrive, grouped by region the same way, without waiting for their
  region's slot; failed ones are retried like regions. The machine keeps only
  how many new keys wait in each region: the driver stores them as pending
  and the burst reads the region's pending keys back (:class:`SweepLoadKeys`
  with ``pending``). Keys that arrive before the network size is known, and
  the pending keys a restart finds (:class:`SweepRestore` ``pending``), are
  read back the same way in one pass over the keyspace once it is.
* **Pages.** A region's keys are read and announced at most ``page_keys`` at
  a time (the exploration is done once, for the first page), so neither a
  burst of millions of keys nor a region holding millions is ever in memory
  at once. A page that fails ends the region (retried as above).
* Every lookup and send the machine asks for gets exactly one answer from the
  coordinator; answers for work that was cleared meanwhile are ignored.
  :meth:`Sweep.next_due` has no side effects.

This module is the machine: inputs, calibration, exploration, the flow of a
region from its keys to its outcome. Its parts live beside it, one idea each:
the knobs (:mod:`.sweep_config`), the schedule and its restore
(:mod:`.sweep_schedule`), the queue of new keys (:mod:`.sweep_burst`), one
region's batches and their outcome (:mod:`.sweep_job`), keyspace regions
(:mod:`.sweep_region`), the network size (:mod:`.sweep_netsize`), and the
events and states (:mod:`.sweep_events`).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter, deque
from dataclasses import dataclass
from typing import assert_never

from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep_burst import BurstQueue
from zikade_py.core.sweep_config import MAX_PREIMAGE_BITS, REPROVIDE_INTERVAL, SweepConfig
from zikade_py.core.sweep_events import (
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
    SweepState,
    SweepStats,
    SweepWaiting,
)
from zikade_py.core.sweep_job import (
    Job,
    Phase,
    idle,
    queue_individual,
    queue_page,
    reach,
    reached,
    set_page,
    settle,
    split,
    take_retries,
)
from zikade_py.core.sweep_netsize import NetworkSizeEstimator, prefix_length
from zikade_py.core.sweep_region import WHOLE, Region, covered_region, gaps
from zikade_py.core.sweep_schedule import Schedule, ScheduleRow
from zikade_py.core.trace import NO_TRACE, Trace, earliest

_SCAN = 0
"""The job id under which the pass over every pending key reads its pages."""


@dataclass(slots=True)
class _Counters:
    lookups: int = 0
    streams: int = 0
    messages: int = 0
    failures: int = 0
    regions_done: int = 0
    keys_reprovided: int = 0


class Sweep:
    """The reprovide sweep of one node (see the module docstring)."""

    def __init__(
        self,
        self_key: Key,
        config: SweepConfig | None = None,
        *,
        rng: random.Random | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or SweepConfig()
        self.config.validate()
        self.self_key = self_key
        self._rng = rng or random.Random()
        self._started = now
        cfg = self.config
        self._sched = Schedule(self_key.value, cfg.reprovide_interval, cfg.max_prefix_len)
        self._bursts = BurstQueue()
        self._unassigned: list[tuple[tuple[Key, ...], bool, bool]] = []
        """Keys not new (no burst) that arrived before the network size was known."""
        self._scan_wanted = False
        """Pending keys the machine has not placed wait in the store: read them all once the
        network size is known (``_calibrate_after`` says when)."""
        self._scanning = False
        self._unscanned = 0
        """Pending keys known to wait for that pass (for the statistics)."""
        self._calibrating: set[int] = set()
        self._calibrate_after: float | None = None
        self._netsize = NetworkSizeEstimator()
        self._jobs: dict[int, Job] = {}
        self._busy: set[Region] = set()
        self._lookups: dict[int, int] = {}
        """Lookup id → job id (calibration lookups are in ``_calibrating``)."""
        self._sends: dict[int, int] = {}
        self._loads: dict[int, int] = {}
        self._targets: dict[int, int] = {}
        """Lookup id → the target's key value."""
        self._out: deque[SweepState] = deque()
        self._next_id = 1
        self._cycle_index = 0
        self._cycle = _Counters()
        self._total = _Counters()
        self._keys_total = 0
        self._holders_sum = 0
        self._holders_keys = 0
        self._last: tuple[Region, float] | None = None

    # -- the machine -----------------------------------------------------------------------

    def advance(self, event: SweepEvent, now: float) -> SweepState:
        """Apply ``event`` at ``now``; the next wish (action states: advance again)."""
        self._roll_cycle(now)
        match event:
            case SweepPoll():
                pass
            case SweepAddKeys(keys=keys, burst=burst, announced=announced):
                self._add_keys(keys, burst, now, announced)
            case SweepRestore():
                self._restore(event, now)
            case SweepClear():
                self._clear()
            case SweepKeys(request_id=rid, keys=keys, ok=ok):
                jid = self._loads.pop(rid, None)
                if jid == _SCAN:
                    self._on_scan(keys, ok, now)
                    return self._step(now)
                job = self._job_of(jid)
                if job is not None and ok:
                    self._on_keys(job, list(keys), now)
                elif job is not None:
                    self._finish(job, now, failed=True)
            case SweepReprovideNow():
                for region in self._sched.entries:
                    self._sched.set_due(region, now)
            case SweepLookupDone(lookup_id=lid, closest=closest, ok=ok):
                self._on_lookup(lid, closest, ok, now)
            case SweepLookupSeen(target=target, closest=closest):
                if closest:
                    self._learn(target.value, closest)
            case SweepSendDone(send_id=sid, ok=ok, dropped=dropped):
                job = self._job_of(self._sends.pop(sid, None))
                if job is not None:
                    self._on_send(job, sid, ok, dropped, now)
            case _:
                assert_never(event)
        return self._step(now)

    def next_due(self) -> float | None:
        """When the machine must be advanced again even if no answer arrives (no side effects)."""
        due: float | None = None
        for job in self._jobs.values():
            if job.retries and len(job.in_flight) < self.config.max_sends:
                due = earliest(due, min(at for at, _, _ in job.retries))
        placing = bool(self._unassigned) or (self._scan_wanted and not self._scanning)
        if placing and not self._calibrating:
            due = earliest(due, self._calibrate_after)
        if len(self._jobs) < self.config.max_regions:
            due = earliest(due, self._bursts.next_at(self._busy))
            due = earliest(due, self._sched.top())  # _step leaves a valid top
        return due

    # -- views -------------------------------------------------------------------------------

    @property
    def regions(self) -> int:
        """Regions in the schedule."""
        return len(self._sched)

    @property
    def idle(self) -> bool:
        """Nothing scheduled, queued or running."""
        return not (
            self._sched.entries or self._bursts or self._unassigned or self._jobs
            or self._scan_wanted or self._scanning
        )

    def schedule(self) -> list[tuple[Region, float, float | None]]:
        """Each scheduled region with its due time and last full reprovide, in due order."""
        return self._sched.rows()

    def network_size(self) -> float | None:
        """The estimated number of DHT servers."""
        return self._netsize.estimate()

    def stats(self, now: float) -> SweepStats:
        """The counters and schedule view of ``zikade provide stat``."""
        self._roll_cycle(now)
        cfg = self.config
        size = self._netsize.estimate()
        nxt: tuple[Region, float] | None = None
        overdue = 0
        for region, entry in self._sched.entries.items():
            if entry.due <= now and region not in self._busy:
                overdue += 1
            if nxt is None or entry.due < nxt[1]:
                nxt = (region, entry.due)
        progress = 0.0
        start = self._sched.cycle_start
        if start is not None:
            progress = ((now - start) % cfg.reprovide_interval) / cfg.reprovide_interval
        c, t = self._cycle, self._total
        return SweepStats(
            regions=len(self._sched),
            burst_keys=self._bursts.keys()
            + sum(len(keys) for keys, _, _ in self._unassigned)
            + self._unscanned,
            burst_regions=len(self._bursts),
            overdue_regions=overdue,
            active_regions=len(self._jobs),
            cycle_start=start,
            cycle_progress=progress,
            interval=cfg.reprovide_interval,
            prefix_length=(
                prefix_length(size, cfg.replication, cfg.max_prefix_len) if size else None
            ),
            network_size=size,
            last_region=str(self._last[0]) if self._last else None,
            last_region_at=self._last[1] if self._last else None,
            next_region=str(nxt[0]) if nxt else None,
            next_region_at=nxt[1] if nxt else None,
            regions_done_cycle=c.regions_done,
            keys_reprovided_cycle=c.keys_reprovided,
            lookups_cycle=c.lookups,
            streams_cycle=c.streams,
            messages_cycle=c.messages,
            failures_cycle=c.failures,
            keys_provided_total=self._keys_total,
            lookups_total=t.lookups,
            streams_total=t.streams,
            messages_total=t.messages,
            failures_total=t.failures,
            average_holders=(
                self._holders_sum / self._holders_keys if self._holders_keys else None
            ),
        )

    # -- inputs ------------------------------------------------------------------------------

    def _add_keys(
        self, keys: tuple[Key, ...], burst: bool, now: float, announced: bool = False
    ) -> None:
        length = self._prefix_length()
        if length is None:
            # No size estimate yet: the keys wait for the calibration lookups; new ones
            # wait in the store (pending), to be read back once the size is known.
            if burst:
                self._want_scan(now, len(keys))
                return
            self._unassigned.append((keys, burst, announced))
            at = now + self.config.calibration_delay if announced else now
            if self._calibrate_after is None or at < self._calibrate_after:
                self._calibrate_after = at
            return
        added: list[ScheduleRow] = []
        new: Counter[Region] = Counter()
        sched = self._sched
        for key in keys:
            region = sched.region_of(key.value)
            if region is None:
                region = sched.new_region(key.value, length)
                sched.add(region, None, now, now, burst or announced)
                added.append((region, None, now))
            if burst:
                new[region] += 1
        for region, n in new.items():
            self._bursts.add(region, n, now + self.config.burst_delay)
        if added:
            self._changed(added, ())

    def _want_scan(self, at: float, count: int) -> None:
        """Read every pending key from the store at ``at`` or once the size is known."""
        self._scan_wanted = True
        self._unscanned += count
        if self._calibrate_after is None or at < self._calibrate_after:
            self._calibrate_after = at

    def _restore(self, event: SweepRestore, now: float) -> None:
        self._sched.restore(event.cycle_start, event.regions, now)
        if event.cycle_start is not None:
            self._cycle_index = self._index(now)
        if event.pending:
            self._want_scan(now, event.pending)

    def _clear(self) -> None:
        self._sched.clear()
        self._bursts.clear()
        self._unassigned.clear()
        self._scan_wanted = self._scanning = False
        self._unscanned = 0
        self._jobs.clear()
        self._busy.clear()
        self._lookups.clear()
        self._sends.clear()
        self._loads.clear()
        self._targets.clear()
        self._out.clear()
        self._last = None

    # -- the schedule ------------------------------------------------------------------------

    def _prefix_length(self) -> int | None:
        size = self._netsize.estimate()
        if size is None:
            return None
        return prefix_length(size, self.config.replication, self.config.max_prefix_len)

    def _changed(self, added: list[ScheduleRow], removed: tuple[Region, ...]) -> None:
        assert self._sched.cycle_start is not None
        self._out.append(SweepScheduleChanged(self._sched.cycle_start, tuple(added), removed))

    # -- stepping ----------------------------------------------------------------------------

    def _step(self, now: float) -> SweepState:
        if self._out:
            return self._out.popleft()
        self._maybe_calibrate(now)
        for job in list(self._jobs.values()):
            if job.retries:
                self._pump(job, now)
        while len(self._jobs) < self.config.max_regions and self._start_next(now):
            pass
        self._sched.clean(now, self._busy, self.config.retry_interval)
        if self._out:
            return self._out.popleft()
        return SweepWaiting()

    def _start_next(self, now: float) -> bool:
        burst = self._bursts.take(now, self._busy)
        if burst is not None:
            self._start_job(burst[0], True, now, burst[1])
            return True
        region = self._sched.pop_due(now, self._busy, self.config.retry_interval)
        if region is None:
            return False
        self._start_job(region, False, now)
        return True

    def _start_job(self, region: Region, burst: bool, now: float, expected: int = 0) -> None:
        jid = self._id()
        job = Job(jid, region, burst, Phase.LOAD, target=region, expected=expected)
        self._jobs[jid] = job
        self._busy.add(region)
        self._load(job, region)

    def _load(self, job: Job, region: Region, start: int | None = None) -> None:
        """Ask for a page of ``region``'s keys (a burst: its pending ones) from ``start`` on."""
        rid = self._id()
        self._loads[rid] = job.id
        job.source = region
        first = region.lo if start is None else start
        self._out.append(SweepLoadKeys(rid, region, first, self.config.page_keys, job.burst))

    def _job_of(self, jid: int | None) -> Job | None:
        return None if jid is None else self._jobs.get(jid)

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- calibration -------------------------------------------------------------------------

    def _maybe_calibrate(self, now: float) -> None:
        if not (self._unassigned or self._scan_wanted) or self._calibrating:
            return
        if self._prefix_length() is not None:
            waiting, self._unassigned = self._unassigned, []
            for keys, burst, announced in waiting:
                self._add_keys(keys, burst, now, announced)
            if not self._scan_wanted:
                self._calibrate_after = None
            elif not self._scanning and (
                self._calibrate_after is None or self._calibrate_after <= now
            ):
                self._calibrate_after = None
                self._scan_wanted = False
                self._scanning = True
                self._scan_load(0)
            return
        if self._calibrate_after is None or self._calibrate_after > now:
            return
        for _ in range(self.config.calibration_lookups):
            lid = self._id()
            self._calibrating.add(lid)
            target = self._target_in(WHOLE, None)
            self._lookup(lid, target)

    def _scan_load(self, start: int) -> None:
        rid = self._id()
        self._loads[rid] = _SCAN
        self._out.append(SweepLoadKeys(rid, WHOLE, start, self.config.page_keys, True))

    def _on_scan(self, keys: tuple[Key, ...], ok: bool, now: float) -> None:
        """A page of the pass over the pending keys: place them as a burst, read on."""
        if not self._scanning:
            return
        if not ok:
            self._scanning = False
            self._want_scan(now + self.config.calibration_retry, 0)
            return
        ordered = sorted(keys, key=lambda k: k.value)
        self._unscanned = max(0, self._unscanned - len(ordered))
        if ordered:
            self._add_keys(tuple(ordered), True, now)
        after = ordered[-1].value + 1 if ordered else 1 << KEY_BITS
        if len(ordered) >= self.config.page_keys and after < 1 << KEY_BITS:
            self._scan_load(after)
        else:
            self._scanning = False
            self._unscanned = 0

    def _lookup(self, lid: int, target: Key) -> None:
        self._targets[lid] = target.value
        self._cycle.lookups += 1
        self._total.lookups += 1
        self._out.append(SweepLookup(lid, target))

    def _target_in(self, region: Region, job: Job | None) -> Key:
        """A lookup target under ``region``: one of our keys there if any, else made up."""
        if job is not None and job.keys:
            i = bisect.bisect_left(job.keys, region.lo, key=lambda k: k.value)
            if i < len(job.keys) and region.contains(job.keys[i].value):
                return job.keys[i]
        free = KEY_BITS - region.length
        if not self.config.preimage_targets:
            return Key.from_int(region.lo | self._rng.getrandbits(free) if free else region.lo)
        bits = min(region.length, MAX_PREIMAGE_BITS)
        want = region.bits >> (region.length - bits)
        for _ in range(64 << bits):
            preimage = self._rng.randbytes(32)
            digest = hashlib.sha256(preimage).digest()
            if int.from_bytes(digest, "big") >> (KEY_BITS - bits) == want:
                return Key(digest, preimage)
        raise RuntimeError(f"no preimage under prefix {region} found")  # odds ≈ e^-64

    # -- lookups -----------------------------------------------------------------------------

    def _on_lookup(self, lid: int, closest: tuple[Key, ...], ok: bool, now: float) -> None:
        target = self._targets.pop(lid, None)
        if lid in self._calibrating:
            self._calibrating.discard(lid)
            if ok and target is not None:
                self._learn(target, closest)
            if not self._calibrating and self._prefix_length() is None:
                self._calibrate_after = now + self.config.calibration_retry
            return
        job = self._job_of(self._lookups.pop(lid, None))
        if job is None or target is None:
            return
        if ok:
            self._learn(target, closest)
        if lid in job.individual:
            key = job.individual.pop(lid)
            if ok and closest:
                job.closest_of[key] = closest[: self.config.replication]
            if not job.individual:
                self._plan_individual(job, now)
            return
        job.lookup_id = None
        if not ok or not closest:
            # Nobody to ask (a node just started, or offline): try again soon.
            self._finish(job, now, failed=True, soon=not closest)
            return
        k = self.config.replication
        values = [c.value for c in closest]
        job.covered.append(covered_region(target, values, k))
        before = len(job.servers)
        for node in closest:
            job.servers[node.value] = node
        job.no_fresh = job.no_fresh + 1 if len(job.servers) == before else 0
        self._explore(job, now)

    def _learn(self, target: int, closest: tuple[Key, ...]) -> None:
        if len(closest) < self.config.replication:
            self._netsize.add_estimate(max(1, len(closest)))
        else:
            self._netsize.add_lookup(target, [c.value for c in closest])

    def _begin_lookups(self, job: Job, now: float) -> None:
        job.phase = Phase.LOOKUP
        if len(job.keys) <= self.config.individual_threshold and not job.more:
            for key in job.keys:
                lid = self._id()
                job.individual[lid] = key
                self._lookups[lid] = job.id
                job.lookups += 1
                self._lookup(lid, key)
            if not job.individual:
                self._finish(job, now, failed=False)
            return
        self._explore(job, now)

    def _explore(self, job: Job, now: float) -> None:
        cfg = self.config
        while True:
            todo = gaps(job.target, job.covered)
            if todo and job.lookups < cfg.max_lookups_per_region and job.no_fresh < 2:
                break
            under = sum(1 for v in job.servers if job.target.contains(v))
            if under < cfg.replication and job.target.length > 0 and job.no_fresh < 2 and (
                job.lookups < cfg.max_lookups_per_region
            ):
                job.target = job.target.parent()
                continue
            self._explored(job, now)
            return
        lid = self._id()
        job.lookup_id = lid
        job.lookups += 1
        self._lookups[lid] = job.id
        self._lookup(lid, self._target_in(todo[0], job))

    def _explored(self, job: Job, now: float) -> None:
        k = self.config.replication
        wide = job.target
        recent = self._sched.recent_within(wide, job.region, now)
        if not job.burst and wide != job.region and recent:
            # The exploration went wide to find servers, but the wider region holds keys
            # announced less than half an interval ago: announce only this region's keys
            # (to their closest servers among all found) and keep the schedule as it is.
            job.target = job.region
            job.parts = []
            self._plan_sends(job, now)
            return
        job.parts = split(wide, sorted(v for v in job.servers if wide.contains(v)), k)
        if not job.burst and wide != job.region:
            job.phase = Phase.RELOAD
            self._load(job, wide)
            return
        self._plan_sends(job, now)

    def _on_keys(self, job: Job, keys: list[Key], now: float) -> None:
        keys.sort(key=lambda k: k.value)
        if job.phase is Phase.LOAD:
            if not keys:
                if not job.burst:  # nothing left there: out of the schedule
                    self._sched.remove(job.region)
                    self._changed([], (job.region,))
                self._drop(job)  # a burst: its keys were announced meanwhile
                return
            self._page(job, keys)
            self._begin_lookups(job, now)
        elif job.phase is Phase.RELOAD:
            job.key_count = 0  # the wider region's pages replace the first one
            self._page(job, keys)
            self._plan_sends(job, now)
        elif job.phase is Phase.PAGE:
            self._page(job, keys)
            if not keys:
                self._finish(job, now, failed=False)
                return
            self._plan_sends(job, now)

    # -- sends -------------------------------------------------------------------------------

    def _page(self, job: Job, keys: list[Key]) -> None:
        set_page(job, keys, self.config.page_keys)
        if job.burst:
            self._keys_total += len(keys)

    def _plan_sends(self, job: Job, now: float) -> None:
        queue_page(job, self.config.replication, self.config.batch_size)
        self._pump(job, now)

    def _plan_individual(self, job: Job, now: float) -> None:
        if not job.closest_of:
            self._finish(job, now, failed=True, soon=True)  # no lookup found anyone
            return
        queue_individual(job, self.config.batch_size)
        self._pump(job, now)

    def _pump(self, job: Job, now: float) -> None:
        cfg = self.config
        take_retries(job, now)
        while job.sends and len(job.in_flight) < cfg.max_sends:
            peer, keys = job.sends.popleft()
            sid = self._id()
            job.in_flight[sid] = (peer, keys)
            self._sends[sid] = job.id
            self._cycle.streams += 1
            self._total.streams += 1
            limit = cfg.send_timeout + cfg.send_timeout_per_key * len(keys)
            trace = Trace(NO_TRACE.span_context, now + limit)
            self._out.append(SweepSend(sid, peer, keys, trace=trace))
        if idle(job):
            self._page_done(job, now)

    def _page_done(self, job: Job, now: float) -> None:
        """A page went out: read the next one, or end the region (a failed page ends it)."""
        total, reachable = reach(job)
        if not job.more or not reached(job, self.config.min_reachable_ratio):
            self._finish(job, now, failed=False)
            return
        if job.burst:
            self._out.append(
                SweepRegionDone(
                    job.target, now, True, True, len(job.keys), total, reachable, job.lookups,
                    None, tuple(job.keys),
                )
            )
        job.phase = Phase.PAGE
        self._load(job, job.source, job.cursor)

    def _on_send(self, job: Job, sid: int, ok: bool, dropped: bool, now: float) -> None:
        delivered = settle(job, sid, ok, dropped, now, self.config)
        if delivered is None:
            return
        self._cycle.messages += delivered
        self._total.messages += delivered
        self._pump(job, now)

    # -- the end of a region -----------------------------------------------------------------

    def _finish(self, job: Job, now: float, *, failed: bool, soon: bool = False) -> None:
        """End ``job``: reschedule its region, or retry it (after ``calibration_retry`` when
        ``soon``: its lookup found nobody to ask, else after ``retry_interval``)."""
        cfg = self.config
        retry = cfg.calibration_retry if soon else cfg.retry_interval
        total, reachable = reach(job)
        ok = not failed and reached(job, cfg.min_reachable_ratio)
        if not job.key_count:
            ok = not failed
        self._drop(job)
        self._last = (job.target, now)
        if ok and job.key_count:
            self._holders_sum += job.holders
            self._holders_keys += job.key_count
        if not ok:
            self._cycle.failures += 1
            self._total.failures += 1
        if job.burst:
            if not ok:
                left = len(job.keys) + (max(0, job.expected - job.key_count) if job.more else 0)
                self._bursts.add(job.region, max(1, left), now + retry)
            self._out.append(
                SweepRegionDone(
                    job.target, now, ok, True, len(job.keys) if ok else 0, total, reachable,
                    job.lookups, None, tuple(job.keys) if ok else (),
                )
            )
            return
        next_due: float | None
        if ok:
            self._cycle.regions_done += 1
            self._cycle.keys_reprovided += job.key_count
            next_due = self._reschedule(job, now)
        else:
            next_due = now + retry
            if job.region in self._sched.entries:
                self._sched.set_due(job.region, next_due)
        self._out.append(
            SweepRegionDone(
                job.target, now, ok, False, job.key_count if ok else 0, total, reachable,
                job.lookups, next_due,
            )
        )

    def _reschedule(self, job: Job, now: float) -> float | None:
        """Put the parts of the explored region in the schedule in place of what they cover."""
        parts = job.parts or [job.target]
        added, removed, first = self._sched.reschedule(job.target, parts, job.filled, now)
        self._changed(added, removed)
        return first

    def _drop(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        self._busy.discard(job.region)
        if job.lookup_id is not None:
            self._lookups.pop(job.lookup_id, None)

    # -- cycles ------------------------------------------------------------------------------

    def _index(self, now: float) -> int:
        start = self._sched.cycle_start
        if start is None:
            return 0
        return int((now - start) // self.config.reprovide_interval)

    def _roll_cycle(self, now: float) -> None:
        index = self._index(now)
        if index != self._cycle_index:
            self._cycle_index = index
            self._cycle = _Counters()


__all__ = ["REPROVIDE_INTERVAL", "Sweep", "SweepConfig"]
