"""One region being announced by the reprovide sweep: its state, its batches, its outcome.

A :class:`Job` is a region (a full reprovide) or a region's new keys (a burst)
on their way out. The sweep (:mod:`zikade_py.core.sweep`) explores the region
and feeds the job its keys a page at a time; the functions here turn a page
into batches and judge the answers:

* every key of the page goes to its ``k`` closest explored servers, part by
  part of the region (:func:`queue_page`; a region holding too few servers
  hands its keys to everyone found), or, for a region of a few keys looked up
  one by one, to the closest its own lookup found (:func:`queue_individual`);
* each server gets its keys of the page on one stream, at most ``batch_size``
  keys each (:func:`queue_batches`);
* a failed batch is offered again ``send_retry_delay`` later, up to
  ``send_retries`` times per server, and one our own admission refused after
  ``drop_retry_delay`` (:func:`settle`); a server whose batch failed for good
  counts as unreachable;
* the region succeeded when at least ``min_reachable_ratio`` of the servers
  it sent to took all their records (:func:`reached`).

All pure: no ids, no counters, no outputs (the sweep keeps those).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep_config import SweepConfig
from zikade_py.core.sweep_region import WHOLE, Region, allocate

Batch = tuple[Key, tuple[Key, ...]]
"""A server and the keys it is sent on one stream."""


class Phase(Enum):
    """Where a job is."""

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
class Job:
    """One region being announced (a full reprovide, or a burst of new keys)."""

    id: int
    region: Region
    burst: bool
    phase: Phase
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
    sends: deque[Batch] = field(default_factory=deque)
    retries: list[tuple[float, Key, tuple[Key, ...]]] = field(default_factory=list)
    in_flight: dict[int, Batch] = field(default_factory=dict)
    peer_ok: dict[Key, bool] = field(default_factory=dict)
    send_failures: dict[Key, int] = field(default_factory=dict)
    """Batches to each server that failed and were offered again."""
    holders: int = 0
    """Records taken (key × server)."""


def set_page(job: Job, keys: list[Key], page_keys: int) -> None:
    """``keys`` (sorted) are the job's next page; a full page may have more after it."""
    job.keys = keys
    after = keys[-1].value + 1 if keys else 0
    job.more = len(keys) >= page_keys and after < 1 << KEY_BITS
    job.cursor = after
    job.key_count += len(keys)


def queue_page(job: Job, k: int, batch_size: int) -> None:
    """The page's keys, each to its ``k`` closest explored servers, queued as batches."""
    job.phase = Phase.SEND
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
        queue_batches(job, allocate(job.keys[lo:hi], mine, k), batch_size)


def queue_individual(job: Job, batch_size: int) -> None:
    """Each key to the closest servers its own lookup found, queued as batches."""
    job.phase = Phase.SEND
    job.filled.add(job.target)
    per_peer: dict[Key, list[Key]] = {}
    for key, closest in job.closest_of.items():
        for node in closest:
            per_peer.setdefault(node, []).append(key)
    queue_batches(job, per_peer, batch_size)


def queue_batches(job: Job, per_peer: dict[Key, list[Key]], batch_size: int) -> None:
    """Each server's keys cut into batches of at most ``batch_size``."""
    for peer, keys in per_peer.items():
        job.peer_ok.setdefault(peer, True)
        for i in range(0, len(keys), batch_size):
            job.sends.append((peer, tuple(keys[i : i + batch_size])))


def take_retries(job: Job, now: float) -> None:
    """Batches whose retry time came go back into the queue."""
    if job.retries:
        ready = [r for r in job.retries if r[0] <= now]
        if ready:
            job.retries = [r for r in job.retries if r[0] > now]
            job.sends.extend((peer, keys) for _, peer, keys in ready)


def settle(
    job: Job, sid: int, ok: bool, dropped: bool, now: float, config: SweepConfig
) -> int | None:
    """A batch's answer: the records it delivered (0 if none), ``None`` if not ours."""
    entry = job.in_flight.pop(sid, None)
    if entry is None:
        return None
    peer, keys = entry
    if dropped:
        job.retries.append((now + config.drop_retry_delay, peer, keys))
        return 0
    if ok:
        job.holders += len(keys)
        return len(keys)
    if job.send_failures.get(peer, 0) < config.send_retries:
        # One failure is often the moment (a busy peer, a reset): offer it again.
        job.send_failures[peer] = job.send_failures.get(peer, 0) + 1
        job.retries.append((now + config.send_retry_delay, peer, keys))
    else:
        job.peer_ok[peer] = False
    return 0


def idle(job: Job) -> bool:
    """Nothing queued, in flight or waiting to be offered again: the page is out."""
    return not job.sends and not job.in_flight and not job.retries


def reach(job: Job) -> tuple[int, int]:
    """Servers the region's batches went to, and those that took all of theirs."""
    return len(job.peer_ok), sum(1 for ok in job.peer_ok.values() if ok)


def reached(job: Job, ratio: float) -> bool:
    """Whether enough of the region's servers took their records."""
    total, reachable = reach(job)
    need = max(1, math.ceil(ratio * total))
    return total > 0 and reachable >= need


def split(region: Region, servers: list[int], k: int) -> list[Region]:
    """``region`` cut in halves, recursively, while both halves hold ``k`` servers or more."""
    if len(servers) < 2 * k or region.length >= KEY_BITS:
        return [region]
    half = region.child(1).lo
    i = bisect.bisect_left(servers, half)
    left, right = servers[:i], servers[i:]
    if len(left) < k or len(right) < k:
        return [region]
    return split(region.child(0), left, k) + split(region.child(1), right, k)


__all__ = [
    "Batch",
    "Job",
    "Phase",
    "idle",
    "queue_batches",
    "queue_individual",
    "queue_page",
    "reach",
    "reached",
    "set_page",
    "settle",
    "split",
    "take_retries",
]
