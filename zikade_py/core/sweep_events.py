"""The vocabulary of the reprovide sweep: its events, its states, and its statistics.

The sweep (:mod:`zikade_py.core.sweep`) talks to two parties through these:

* the **coordinator**, which runs its lookups (:class:`SweepLookup` →
  :class:`SweepLookupDone`) and sends its batches of ADD_PROVIDER
  (:class:`SweepSend` → :class:`SweepSendDone`);
* the **driver** (the asyncio node, the simulator), which owns the keys and the
  persistent schedule: it feeds :class:`SweepAddKeys`, :class:`SweepRestore`,
  :class:`SweepClear` and the answers :class:`SweepKeys` in as coordinator
  inputs, and it receives :class:`SweepLoadKeys`, :class:`SweepRegionDone` and
  :class:`SweepScheduleChanged` as coordinator outputs.

The keys never live in the machine as a whole: it asks for one page of a
region's keys (a range of the keyspace, which the driver reads from storage
sorted by key, at most ``limit`` of them) when it is about to announce them,
and forgets them when the page is done. New keys too: the driver stores them
as *pending* (not announced yet) and the machine reads a region's pending
keys back when their burst is due.
"""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.core.event import Event, State
from zikade_py.core.key import Key
from zikade_py.core.sweep_region import Region


@dataclass(frozen=True, slots=True)
class ProvideBatch:
    """The message of a sweep's :class:`SendMessage`: one ADD_PROVIDER per key, one stream."""

    keys: tuple[Key, ...]


# -- inputs from the driver (coordinator inputs) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepAddKeys(Event):
    """We provide ``keys`` from now on (the driver has stored them).

    ``burst``: announce them soon (a few seconds) instead of waiting for their
    region's slot in the cycle; their region enters the schedule either way.
    The driver must have stored burst keys as pending: the machine keeps only
    their count per region and reads them back (:class:`SweepLoadKeys`
    ``pending``) until a :class:`SweepRegionDone` with ``burst`` names them.
    ``announced``: they were just announced another way (a single ``provide``),
    so a new region of theirs is first due half an interval or more from now.
    """

    keys: tuple[Key, ...]
    burst: bool = True
    announced: bool = False


@dataclass(frozen=True, slots=True)
class SweepRestore(Event):
    """The schedule the driver kept across a restart.

    ``regions`` holds each scheduled region with the time it was last
    reprovided in full (``None``: never) and the time it entered the schedule.
    Regions not reprovided within an interval are overdue and go first.
    ``cycle_start`` is ``None`` when no cycle ever started. ``pending``: how
    many stored keys still wait for their first announcement (a crash
    interrupted it); the machine reads them back and announces them soon.
    """

    cycle_start: float | None
    regions: tuple[tuple[Region, float | None, float], ...]
    pending: int = 0


@dataclass(frozen=True, slots=True)
class SweepClear(Event):
    """Stop providing everything: empty the schedule and the queues (the driver drops the keys)."""


@dataclass(frozen=True, slots=True)
class SweepKeys(Event):
    """The driver's answer to :class:`SweepLoadKeys`: the keys of the region, sorted by value.

    ``ok`` false: they could not be read (the region is retried later, not dropped).
    """

    request_id: int
    keys: tuple[Key, ...]
    ok: bool = True


@dataclass(frozen=True, slots=True)
class SweepReprovideNow(Event):
    """Reprovide every scheduled region now (``zikade provide reprovide``, benchmarks)."""


# -- answers from the coordinator --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepPoll(Event):
    """Advance on time alone."""


@dataclass(frozen=True, slots=True)
class SweepLookupDone(Event):
    """A lookup ended: ``closest`` are the servers it found closest (empty if it failed)."""

    lookup_id: int
    closest: tuple[Key, ...]
    ok: bool = True


@dataclass(frozen=True, slots=True)
class SweepSendDone(Event):
    """A batch reached ``ok`` its server or not; ``dropped``: our own admission refused it."""

    send_id: int
    ok: bool
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class SweepLookupSeen(Event):
    """A lookup the node ran for another reason (a provide's follow-up) ended with
    ``closest`` as the servers closest to ``target``: a network-size sample for free,
    so a node that provides need not spend calibration lookups of its own."""

    target: Key
    closest: tuple[Key, ...]


SweepInput = SweepAddKeys | SweepRestore | SweepClear | SweepKeys | SweepReprovideNow
"""What a driver feeds the coordinator for the sweep."""

SweepEvent = SweepInput | SweepPoll | SweepLookupDone | SweepSendDone | SweepLookupSeen
"""Everything the sweep machine is advanced with."""


# -- states -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepLookup(State):
    """Look up the servers closest to ``target`` (answer: :class:`SweepLookupDone`)."""

    lookup_id: int
    target: Key


@dataclass(frozen=True, slots=True)
class SweepSend(State):
    """Send ADD_PROVIDER for each of ``keys`` to ``to``, all on one stream (answer:
    :class:`SweepSendDone`); the trace's deadline bounds it."""

    send_id: int
    to: Key
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class SweepLoadKeys(State):
    """Driver: read the keys we provide in ``region`` from ``start`` on (key values
    ``start <= v < region.hi``), at most ``limit`` of them, and answer with
    :class:`SweepKeys`; ``pending``: only those still waiting for their first
    announcement. Fewer than ``limit`` keys means there are no more."""

    request_id: int
    region: Region
    start: int = 0
    limit: int = 1 << 62
    pending: bool = False


@dataclass(frozen=True, slots=True)
class SweepRegionDone(State):
    """A region was announced (or failed to be, then it is retried later).

    ``burst``: a first announcement of new keys (``keys`` holds them, so the
    driver can note them as announced: one such output per page of keys);
    otherwise a full reprovide of ``region`` at ``at``, after which its next
    slot is ``next_due``.
    """

    region: Region
    at: float
    ok: bool
    burst: bool
    keys_announced: int
    peers: int
    reachable: int
    lookups: int
    next_due: float | None
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class SweepScheduleChanged(State):
    """Driver: persist the schedule change (regions added with their entry time, removed)."""

    cycle_start: float
    added: tuple[tuple[Region, float | None, float], ...]
    removed: tuple[Region, ...]


@dataclass(frozen=True, slots=True)
class SweepWaiting(State):
    """Nothing to do until an answer arrives or ``next_due`` passes."""


SweepOutput = SweepLoadKeys | SweepRegionDone | SweepScheduleChanged
"""The sweep states the coordinator hands to its driver."""

SweepState = SweepLookup | SweepSend | SweepOutput | SweepWaiting
"""Every wish of the sweep machine."""


@dataclass(frozen=True, slots=True)
class SweepStats:
    """What ``zikade provide stat`` shows (Kubo's ``ipfs provide stat`` in spirit).

    Counters ending in ``_cycle`` count the current reprovide cycle only.
    """

    regions: int
    burst_keys: int
    burst_regions: int
    overdue_regions: int
    active_regions: int
    cycle_start: float | None
    cycle_progress: float
    """Fraction of the current cycle's time that has passed."""
    interval: float
    prefix_length: int | None
    network_size: float | None
    last_region: str | None
    last_region_at: float | None
    next_region: str | None
    next_region_at: float | None
    regions_done_cycle: int
    keys_reprovided_cycle: int
    lookups_cycle: int
    streams_cycle: int
    messages_cycle: int
    failures_cycle: int
    keys_provided_total: int
    lookups_total: int
    streams_total: int
    messages_total: int
    failures_total: int
    average_holders: float | None
