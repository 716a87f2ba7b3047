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
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import assert_never

from zikade_py.core.key import KEY_BITS, Key
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
from zikade_py.core.sweep_netsize import NetworkSizeEstimator, prefix_length
from zikade_py.core.sweep_region import (
    WHOLE,
    Region,
    allocate,
    covered_region,
    gaps,
    next_slot,
    slot_offset,
)
from zikade_py.core.trace import NO_TRACE, Trace, earliest

REPROVIDE_INTERVAL = 22 * 3600.0
"""Seconds between two announcements of a key (go, Amino: 22 h; records live 48 h)."""

MAX_PREIMAGE_BITS = 16
"""Prefix bits a synthesised lookup target matches (2^16 hashes at most on average)."""

_SCAN = 0
"""The job id under which the pass over every pending key reads its pages."""


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """Knobs of the sweep; defaults follow go-libp2p-kad-dht's provider (v0.35)."""

    replication: int = 20
    """k: servers that get each key's record."""
    reprovide_interval: float = REPROVIDE_INTERVAL
    max_prefix_len: int = 24
    """Longest region prefix (and the resolution of the schedule)."""
    burst_delay: float = 1.0
    """Seconds new keys wait for company before their first announcement."""
    retry_interval: float = 300.0
    """Seconds before a failed region (or burst) is tried again (go: 5 min)."""
    max_regions: int = 4
    """Regions explored and announced at once (go: workers)."""
    max_sends: int = 20
    """Batch streams in flight per region (go: ``maxProvideConnsPerWorker``)."""
    batch_size: int = 2048
    """Keys sent on one stream at most."""
    page_keys: int = 32768
    """Keys of one region in memory at once: a region (or a burst) with more is read and
    announced page by page (each key costs ~0.5 kB while its region is announced)."""
    send_timeout: float = 60.0
    """Seconds one batch stream may take, plus ``send_timeout_per_key`` for each key."""
    send_timeout_per_key: float = 0.05
    """A slow receiver reads a batch of thousands of records for a while (go bounds each
    ADD_PROVIDER on its stream by itself); measured on a loaded loopback network, batches
    of 2,048 keys under a flat 60 s lost half their records."""
    max_lookups_per_region: int = 64
    """Exploration lookups per region at most (go: ``maxExplorationPrefixSearches``)."""
    individual_threshold: int = 2
    """Regions with at most this many keys are announced key by key, without exploring."""
    min_reachable_ratio: float = 0.2
    """Share of a region's servers that must take their records for it to count as done."""
    calibration_lookups: int = 4
    """Lookups to random targets that estimate the network size before placing new keys."""
    calibration_delay: float = 5.0
    """Seconds keys that were just announced (a single ``provide``) wait before calibration
    lookups are made for them: the provides' own lookups (:class:`SweepLookupSeen`) usually
    size the network meanwhile. Burst keys calibrate at once."""
    calibration_retry: float = 5.0
    """Seconds before calibrating again when every calibration lookup failed, or before a
    region is tried again when its lookup found nobody to ask (no peers yet: a node asked
    to provide, or restarted with overdue regions, before its routing table filled)."""
    drop_retry_delay: float = 0.5
    """Seconds before a batch refused by our own admission control is offered again."""
    send_retries: int = 1
    """Times a server's failed batches are sent again within one region (go: none; a
    server that misses its batch misses the keys until the next cycle)."""
    send_retry_delay: float = 5.0
    """Seconds before a failed batch is sent again."""
    preimage_targets: bool = True
    """Synthesised lookup targets get real preimages (the wire needs them; the simulator
    turns this off)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.replication < 1:
            raise ValueError("replication must be at least 1")
        if self.reprovide_interval <= 0:
            raise ValueError("reprovide_interval must be positive")
        if not 0 <= self.max_prefix_len <= KEY_BITS:
            raise ValueError(f"max_prefix_len must be within 0..{KEY_BITS}")
        if self.send_retries < 0:
            raise ValueError("send_retries must not be negative")
        for name in (
            "burst_delay", "drop_retry_delay", "send_retry_delay", "calibration_delay",
            "send_timeout_per_key",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("retry_interval", "send_timeout", "calibration_retry"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in (
            "max_regions", "max_sends", "batch_size", "max_lookups_per_region", "page_keys",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.individual_threshold < 0 or self.calibration_lookups < 1:
            raise ValueError("individual_threshold >= 0 and calibration_lookups >= 1 required")
        if not 0.0 < self.min_reachable_ratio <= 1.0:
            raise ValueError("min_reachable_ratio must be within (0, 1]")


class _Phase(Enum):
    LOAD = "load"
    """Waiting for the region's keys."""
    LOOKUP = "lookup"
    """Exploring (or looking keys up one by one)."""
    RELOAD = "reload"
    """The region was widened: waiting for the keys of the wider one."""
    SEND = "send"
    PAGE = "page"
    """Waiting for the region's next page of keys."""


@dataclass(slots=True)
class _Entry:
    """A scheduled region."""

    due: float
    last_done: float | None
    added: float


@dataclass(slots=True)
class _Job:
    """One region being announced (a full reprovide, or a burst of new keys)."""

    id: int
    region: Region
    burst: bool
    phase: _Phase
    keys: list[Key] = field(default_factory=list)
    """The page of keys being announced."""
    more: bool = False
    """More keys follow the page (from ``cursor`` on)."""
    cursor: int = 0
    key_count: int = 0
    """Keys of all pages so far."""
    filled: set[Region] = field(default_factory=set)
    """Parts of the region that held keys."""
    source: Region = WHOLE
    """The region whose keys are read (the requested one, or the wider one explored)."""
    expected: int = 0
    """New keys the burst was started for (a retry's count)."""
    target: Region = WHOLE
    """The region being explored (the requested one, or wider)."""
    covered: list[Region] = field(default_factory=list)
    servers: dict[int, Key] = field(default_factory=dict)
    lookups: int = 0
    lookup_id: int | None = None
    no_fresh: int = 0
    individual: dict[int, Key] = field(default_factory=dict)
    """Per-key lookups in flight (lookup id → key)."""
    closest_of: dict[Key, tuple[Key, ...]] = field(default_factory=dict)
    parts: list[Region] = field(default_factory=list)
    sends: deque[tuple[Key, tuple[Key, ...]]] = field(default_factory=deque)
    retries: list[tuple[float, Key, tuple[Key, ...]]] = field(default_factory=list)
    in_flight: dict[int, tuple[Key, tuple[Key, ...]]] = field(default_factory=dict)
    peer_ok: dict[Key, bool] = field(default_factory=dict)
    send_failures: dict[Key, int] = field(default_factory=dict)
    """Batches to each server that failed and were offered again."""
    holders: int = 0
    """Records taken (key × server)."""


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
        self._cycle_start: float | None = None
        self._regions: dict[Region, _Entry] = {}
        self._lengths: Counter[int] = Counter()
        self._ancestors: Counter[Region] = Counter()
        """For each prefix, how many scheduled regions lie strictly under it."""
        self._heap: list[tuple[float, int, Region]] = []
        self._seq = 0
        self._burst: dict[Region, int] = {}
        """How many new keys wait in each region (the driver keeps them, pending)."""
        self._burst_at: dict[Region, float] = {}
        """When each region's waiting new keys are due for their first announcement."""
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
        self._jobs: dict[int, _Job] = {}
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
                for region, entry in self._regions.items():
                    entry.due = now
                    self._push(region, now)
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
            waiting = [at for r, at in self._burst_at.items() if r not in self._busy]
            if waiting:
                due = earliest(due, min(waiting))
            if self._heap:
                due = earliest(due, self._heap[0][0])  # _step leaves a valid top
        return due

    # -- views -------------------------------------------------------------------------------

    @property
    def regions(self) -> int:
        """Regions in the schedule."""
        return len(self._regions)

    @property
    def idle(self) -> bool:
        """Nothing scheduled, queued or running."""
        return not (
            self._regions or self._burst or self._unassigned or self._jobs
            or self._scan_wanted or self._scanning
        )

    def schedule(self) -> list[tuple[Region, float, float | None]]:
        """Each scheduled region with its due time and last full reprovide, in due order."""
        rows = [(r, e.due, e.last_done) for r, e in self._regions.items()]
        return sorted(rows, key=lambda row: row[1])

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
        for region, entry in self._regions.items():
            if entry.due <= now and region not in self._busy:
                overdue += 1
            if nxt is None or entry.due < nxt[1]:
                nxt = (region, entry.due)
        progress = 0.0
        if self._cycle_start is not None:
            progress = ((now - self._cycle_start) % cfg.reprovide_interval) / cfg.reprovide_interval
        c, t = self._cycle, self._total
        return SweepStats(
            regions=len(self._regions),
            burst_keys=sum(self._burst.values())
            + sum(len(keys) for keys, _, _ in self._unassigned)
            + self._unscanned,
            burst_regions=len(self._burst),
            overdue_regions=overdue,
            active_regions=len(self._jobs),
            cycle_start=self._cycle_start,
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
        added: list[tuple[Region, float | None, float]] = []
        new: Counter[Region] = Counter()
        for key in keys:
            region = self._region_of(key.value)
            if region is None:
                region = self._new_region(key.value, length)
                self._schedule(region, None, now, now, burst or announced)
                added.append((region, None, now))
            if burst:
                new[region] += 1
        for region, n in new.items():
            self._queue_burst(region, n, now + self.config.burst_delay)
        if added:
            self._changed(added, ())

    def _queue_burst(self, region: Region, count: int, at: float) -> None:
        self._burst[region] = self._burst.get(region, 0) + count
        self._burst_at[region] = max(self._burst_at.get(region, at), at)

    def _want_scan(self, at: float, count: int) -> None:
        """Read every pending key from the store at ``at`` or once the size is known."""
        self._scan_wanted = True
        self._unscanned += count
        if self._calibrate_after is None or at < self._calibrate_after:
            self._calibrate_after = at

    def _restore(self, event: SweepRestore, now: float) -> None:
        if event.cycle_start is not None:
            self._cycle_start = event.cycle_start
            self._cycle_index = self._index(now)
        for region, last_done, added in event.regions:
            if region in self._regions or self._region_of(region.lo) is not None:
                continue
            self._schedule(region, last_done, added, now, burst=True)
        if event.pending:
            self._want_scan(now, event.pending)

    def _clear(self) -> None:
        self._regions.clear()
        self._lengths.clear()
        self._ancestors.clear()
        self._heap.clear()
        self._burst.clear()
        self._burst_at.clear()
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

    def _region_of(self, value: int) -> Region | None:
        for length in self._lengths:
            region = Region.of(value, length)
            if region in self._regions:
                return region
        return None

    def _new_region(self, value: int, length: int) -> Region:
        """A region of ``length`` bits holding ``value``, longer if shorter would overlap."""
        region = Region.of(value, length)
        while self._ancestors.get(region, 0) and region.length < KEY_BITS:
            region = Region.of(value, region.length + 1)
        return region

    def _slot(self, region: Region, after: float) -> float:
        cfg = self.config
        assert self._cycle_start is not None
        order = self.self_key.value
        offset = slot_offset(region, order, cfg.reprovide_interval, cfg.max_prefix_len)
        return next_slot(offset, self._cycle_start, cfg.reprovide_interval, after)

    def _schedule(
        self, region: Region, last_done: float | None, added: float, now: float, burst: bool
    ) -> None:
        if self._cycle_start is None:
            self._cycle_start = now
            self._cycle_index = 0
        half = self.config.reprovide_interval / 2
        if last_done is not None:
            due = self._slot(region, last_done + half)
        elif burst:
            due = self._slot(region, added + half)
        else:
            due = self._slot(region, now)
        self._regions[region] = _Entry(due, last_done, added)
        self._lengths[region.length] += 1
        parent = region
        while parent.length > 0:
            parent = parent.parent()
            self._ancestors[parent] += 1
        self._push(region, due)

    def _unschedule(self, region: Region) -> None:
        if self._regions.pop(region, None) is None:
            return
        self._lengths[region.length] -= 1
        if not self._lengths[region.length]:
            del self._lengths[region.length]
        parent = region
        while parent.length > 0:
            parent = parent.parent()
            self._ancestors[parent] -= 1
            if not self._ancestors[parent]:
                del self._ancestors[parent]

    def _push(self, region: Region, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, region))

    def _valid(self, at: float, region: Region) -> bool:
        entry = self._regions.get(region)
        return entry is not None and entry.due == at

    def _changed(
        self, added: list[tuple[Region, float | None, float]], removed: tuple[Region, ...]
    ) -> None:
        assert self._cycle_start is not None
        self._out.append(SweepScheduleChanged(self._cycle_start, tuple(added), removed))

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
        self._clean_heap(now)
        if self._out:
            return self._out.popleft()
        return SweepWaiting()

    def _clean_heap(self, now: float) -> None:
        """Drop stale entries from the heap's top; push a busy due region back a little."""
        while self._heap:
            at, _, region = self._heap[0]
            if not self._valid(at, region):
                heapq.heappop(self._heap)
            elif at <= now and region in self._busy:
                heapq.heappop(self._heap)
                self._regions[region].due = now + self.config.retry_interval
                self._push(region, now + self.config.retry_interval)
            else:
                return

    def _start_next(self, now: float) -> bool:
        ready = [r for r, at in self._burst_at.items() if at <= now and r not in self._busy]
        if ready:
            region = max(ready, key=lambda r: self._burst[r])
            count = self._burst.pop(region)
            del self._burst_at[region]
            self._start_job(region, True, now, count)
            return True
        while self._heap:
            at, _, region = self._heap[0]
            if not self._valid(at, region):
                heapq.heappop(self._heap)
                continue
            if at > now:
                return False
            heapq.heappop(self._heap)
            if region in self._busy:
                # Being announced right now (a burst): its turn comes after that.
                self._regions[region].due = now + self.config.retry_interval
                self._push(region, now + self.config.retry_interval)
                continue
            self._start_job(region, False, now)
            return True
        return False

    def _start_job(self, region: Region, burst: bool, now: float, expected: int = 0) -> None:
        jid = self._id()
        job = _Job(jid, region, burst, _Phase.LOAD, target=region, expected=expected)
        self._jobs[jid] = job
        self._busy.add(region)
        self._load(job, region)

    def _load(self, job: _Job, region: Region, start: int | None = None) -> None:
        """Ask for a page of ``region``'s keys (a burst: its pending ones) from ``start`` on."""
        rid = self._id()
        self._loads[rid] = job.id
        job.source = region
        first = region.lo if start is None else start
        self._out.append(SweepLoadKeys(rid, region, first, self.config.page_keys, job.burst))

    def _page(self, job: _Job, keys: list[Key]) -> None:
        job.keys = keys
        after = keys[-1].value + 1 if keys else 0
        job.more = len(keys) >= self.config.page_keys and after < 1 << KEY_BITS
        job.cursor = after
        job.key_count += len(keys)
        if job.burst:
            self._keys_total += len(keys)

    def _job_of(self, jid: int | None) -> _Job | None:
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

    def _target_in(self, region: Region, job: _Job | None) -> Key:
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

    def _begin_lookups(self, job: _Job, now: float) -> None:
        job.phase = _Phase.LOOKUP
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

    def _explore(self, job: _Job, now: float) -> None:
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

    def _explored(self, job: _Job, now: float) -> None:
        k = self.config.replication
        wide = job.target
        if not job.burst and wide != job.region and self._recent_within(wide, job.region, now):
            # The exploration went wide to find servers, but the wider region holds keys
            # announced less than half an interval ago: announce only this region's keys
            # (to their closest servers among all found) and keep the schedule as it is.
            job.target = job.region
            job.parts = []
            self._plan_sends(job, now)
            return
        job.parts = _split(wide, sorted(v for v in job.servers if wide.contains(v)), k)
        if not job.burst and wide != job.region:
            job.phase = _Phase.RELOAD
            self._load(job, wide)
            return
        self._plan_sends(job, now)

    def _on_keys(self, job: _Job, keys: list[Key], now: float) -> None:
        keys.sort(key=lambda k: k.value)
        if job.phase is _Phase.LOAD:
            if not keys:
                if not job.burst:  # nothing left there: out of the schedule
                    self._unschedule(job.region)
                    self._changed([], (job.region,))
                self._drop(job)  # a burst: its keys were announced meanwhile
                return
            self._page(job, keys)
            self._begin_lookups(job, now)
        elif job.phase is _Phase.RELOAD:
            job.key_count = 0  # the wider region's pages replace the first one
            self._page(job, keys)
            self._plan_sends(job, now)
        elif job.phase is _Phase.PAGE:
            self._page(job, keys)
            if not keys:
                self._finish(job, now, failed=False)
                return
            self._plan_sends(job, now)

    # -- sends -------------------------------------------------------------------------------

    def _plan_sends(self, job: _Job, now: float) -> None:
        job.phase = _Phase.SEND
        k = self.config.replication
        servers = [s for v, s in job.servers.items() if job.target.contains(v)]
        if len(servers) < k:
            servers = list(job.servers.values())  # a small network: everyone we found
        parts = job.parts or [job.target]
        for part in parts:
            lo = bisect.bisect_left(job.keys, part.lo, key=lambda key: key.value)
            hi = bisect.bisect_left(job.keys, part.hi, key=lambda key: key.value)
            if lo < hi:
                job.filled.add(part)
            mine = [s for s in servers if part.contains(s.value)]
            if len(mine) < k:
                mine = servers
            self._queue(job, allocate(job.keys[lo:hi], mine, k))
        self._pump(job, now)

    def _plan_individual(self, job: _Job, now: float) -> None:
        if not job.closest_of:
            self._finish(job, now, failed=True, soon=True)  # no lookup found anyone
            return
        job.phase = _Phase.SEND
        job.filled.add(job.target)
        per_peer: dict[Key, list[Key]] = {}
        for key, closest in job.closest_of.items():
            for node in closest:
                per_peer.setdefault(node, []).append(key)
        self._queue(job, per_peer)
        self._pump(job, now)

    def _queue(self, job: _Job, per_peer: dict[Key, list[Key]]) -> None:
        size = self.config.batch_size
        for peer, keys in per_peer.items():
            job.peer_ok.setdefault(peer, True)
            for i in range(0, len(keys), size):
                job.sends.append((peer, tuple(keys[i : i + size])))

    def _pump(self, job: _Job, now: float) -> None:
        cfg = self.config
        if job.retries:
            ready = [r for r in job.retries if r[0] <= now]
            if ready:
                job.retries = [r for r in job.retries if r[0] > now]
                job.sends.extend((peer, keys) for _, peer, keys in ready)
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
        if not job.sends and not job.in_flight and not job.retries:
            self._page_done(job, now)

    def _page_done(self, job: _Job, now: float) -> None:
        """A page went out: read the next one, or end the region (a failed page ends it)."""
        total, reachable = self._reach(job)
        if not job.more or not self._reached(job):
            self._finish(job, now, failed=False)
            return
        if job.burst:
            self._out.append(
                SweepRegionDone(
                    job.target, now, True, True, len(job.keys), total, reachable, job.lookups,
                    None, tuple(job.keys),
                )
            )
        job.phase = _Phase.PAGE
        self._load(job, job.source, job.cursor)

    def _reach(self, job: _Job) -> tuple[int, int]:
        """Servers the region's batches went to, and those that took all of theirs."""
        return len(job.peer_ok), sum(1 for ok in job.peer_ok.values() if ok)

    def _reached(self, job: _Job) -> bool:
        total, reachable = self._reach(job)
        need = max(1, math.ceil(self.config.min_reachable_ratio * total))
        return total > 0 and reachable >= need

    def _on_send(self, job: _Job, sid: int, ok: bool, dropped: bool, now: float) -> None:
        entry = job.in_flight.pop(sid, None)
        if entry is None:
            return
        peer, keys = entry
        if dropped:
            job.retries.append((now + self.config.drop_retry_delay, peer, keys))
        elif ok:
            job.holders += len(keys)
            self._cycle.messages += len(keys)
            self._total.messages += len(keys)
        elif job.send_failures.get(peer, 0) < self.config.send_retries:
            # One failure is often the moment (a busy peer, a reset): offer it again.
            job.send_failures[peer] = job.send_failures.get(peer, 0) + 1
            job.retries.append((now + self.config.send_retry_delay, peer, keys))
        else:
            job.peer_ok[peer] = False
        self._pump(job, now)

    # -- the end of a region -----------------------------------------------------------------

    def _finish(self, job: _Job, now: float, *, failed: bool, soon: bool = False) -> None:
        """End ``job``: reschedule its region, or retry it (after ``calibration_retry`` when
        ``soon``: its lookup found nobody to ask, else after ``retry_interval``)."""
        cfg = self.config
        retry = cfg.calibration_retry if soon else cfg.retry_interval
        total, reachable = self._reach(job)
        ok = not failed and self._reached(job)
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
                self._queue_burst(job.region, max(1, left), now + retry)
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
            entry = self._regions.get(job.region)
            next_due = now + retry
            if entry is not None:
                entry.due = next_due
                self._push(job.region, next_due)
        self._out.append(
            SweepRegionDone(
                job.target, now, ok, False, job.key_count if ok else 0, total, reachable,
                job.lookups, next_due,
            )
        )

    def _reschedule(self, job: _Job, now: float) -> float | None:
        """Put the parts of the explored region in the schedule in place of what they cover."""
        wide = job.target
        removed: list[Region] = []
        for region in list(self._covered_by(wide)):
            self._unschedule(region)
            removed.append(region)
        parts = job.parts or [wide]
        added: list[tuple[Region, float | None, float]] = []
        first: float | None = None
        for part in parts:
            if part not in job.filled:
                continue  # no keys there: nothing to schedule
            self._schedule(part, now, now, now, burst=True)
            added.append((part, now, now))
            first = earliest(first, self._regions[part].due)
        removed = [r for r in removed if r not in {p for p, _, _ in added}]
        self._changed(added, tuple(removed))
        return first

    def _recent_within(self, wide: Region, own: Region, now: float) -> bool:
        """Whether ``wide`` covers another scheduled region done less than half an interval
        ago (merging with it would announce its keys again long before they are due)."""
        half = self.config.reprovide_interval / 2
        for region in self._covered_by(wide):
            if own.covers(region):
                continue
            last = self._regions[region].last_done
            if last is not None and now - last < half:
                return True
        return False

    def _covered_by(self, wide: Region) -> list[Region]:
        if self._ancestors.get(wide, 0):
            return [r for r in self._regions if wide.covers(r)]
        return [wide] if wide in self._regions else []

    def _drop(self, job: _Job) -> None:
        self._jobs.pop(job.id, None)
        self._busy.discard(job.region)
        if job.lookup_id is not None:
            self._lookups.pop(job.lookup_id, None)

    # -- cycles ------------------------------------------------------------------------------

    def _index(self, now: float) -> int:
        if self._cycle_start is None:
            return 0
        return int((now - self._cycle_start) // self.config.reprovide_interval)

    def _roll_cycle(self, now: float) -> None:
        index = self._index(now)
        if index != self._cycle_index:
            self._cycle_index = index
            self._cycle = _Counters()


def _split(region: Region, servers: list[int], k: int) -> list[Region]:
    """``region`` cut in halves, recursively, while both halves hold ``k`` servers or more."""
    if len(servers) < 2 * k or region.length >= KEY_BITS:
        return [region]
    half = region.child(1).lo
    i = bisect.bisect_left(servers, half)
    left, right = servers[:i], servers[i:]
    if len(left) < k or len(right) < k:
        return [region]
    return _split(region.child(0), left, k) + _split(region.child(1), right, k)


__all__ = ["REPROVIDE_INTERVAL", "Sweep", "SweepConfig"]
