"""A tiny perfect network for driving the sweep machine with explicit time (tests only)."""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field

from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep import Sweep
from zikade_py.core.sweep_events import (
    SweepAddKeys,
    SweepEvent,
    SweepKeys,
    SweepLoadKeys,
    SweepLookup,
    SweepLookupDone,
    SweepPoll,
    SweepRegionDone,
    SweepScheduleChanged,
    SweepSend,
    SweepSendDone,
    SweepWaiting,
)


def random_keys(n: int, rng: random.Random) -> list[Key]:
    """``n`` distinct random keys with a made-up preimage each."""
    seen: set[int] = set()
    out: list[Key] = []
    while len(out) < n:
        v = rng.getrandbits(KEY_BITS)
        if v not in seen:
            seen.add(v)
            out.append(Key.from_int(v, b"k%d" % len(out)))
    return out


@dataclass
class FakeNet:
    """Servers with global knowledge: a lookup returns the true ``k`` closest."""

    servers: list[Key]
    k: int = 20
    failing: set[Key] = field(default_factory=set)
    """Servers whose every batch fails."""
    flaky: set[Key] = field(default_factory=set)
    """Servers whose next batch fails (once each)."""
    offline: bool = False
    """Every lookup fails (no peer to start from)."""
    pending: set[Key] = field(default_factory=set)
    """The driver's store: keys added in a burst and not announced yet."""

    def closest(self, target: Key) -> tuple[Key, ...]:
        t = target.value
        return tuple(sorted(self.servers, key=lambda s: s.value ^ t)[: self.k])


@dataclass
class Run:
    """What a drive recorded."""

    lookups: list[Key] = field(default_factory=list)
    sends: list[tuple[float, Key, tuple[Key, ...]]] = field(default_factory=list)
    done: list[SweepRegionDone] = field(default_factory=list)
    changes: list[SweepScheduleChanged] = field(default_factory=list)
    loads: int = 0

    def announced(self) -> dict[Key, set[Key]]:
        """For each key, the servers that took it."""
        out: dict[Key, set[Key]] = {}
        for _, peer, keys in self.sends:
            for key in keys:
                out.setdefault(key, set()).add(peer)
        return out


def page(
    stored: list[Key], values: list[int], load: SweepLoadKeys, pending: Container[Key]
) -> tuple[Key, ...]:
    """What a store answers to ``load``: a page of the region's (pending) keys in order."""
    lo = bisect.bisect_left(values, max(load.start, load.region.lo))
    hi = bisect.bisect_left(values, load.region.hi)
    out: list[Key] = []
    for key in stored[lo:hi]:
        if len(out) >= load.limit:
            break
        if not load.pending or key in pending:
            out.append(key)
    return tuple(out)


def drive(
    sweep: Sweep,
    net: FakeNet,
    stored: list[Key],
    now: float,
    until: float,
    first: SweepEvent | None = None,
    run: Run | None = None,
    max_steps: int = 2_000_000,
) -> tuple[Run, float]:
    """Advance ``sweep`` answering everything at once, jumping to ``next_due`` until ``until``."""
    run = run or Run()
    stored = sorted(stored, key=lambda k: k.value)
    values = [k.value for k in stored]
    inbox: deque[SweepEvent] = deque([first] if first is not None else [])
    if isinstance(first, SweepAddKeys) and first.burst:
        net.pending.update(first.keys)
    idle_polls = 0
    for _ in range(max_steps):
        event = inbox.popleft() if inbox else SweepPoll()
        state = sweep.advance(event, now)
        match state:
            case SweepLookup(lookup_id=lid, target=target):
                run.lookups.append(target)
                if net.offline:
                    inbox.append(SweepLookupDone(lid, (), ok=False))
                else:
                    inbox.append(SweepLookupDone(lid, net.closest(target)))
            case SweepSend(send_id=sid, to=to, keys=keys):
                ok = to not in net.failing and to not in net.flaky
                net.flaky.discard(to)
                if ok:
                    run.sends.append((now, to, keys))
                inbox.append(SweepSendDone(sid, ok))
            case SweepLoadKeys(request_id=rid):
                run.loads += 1
                inbox.append(SweepKeys(rid, page(stored, values, state, net.pending)))
            case SweepRegionDone():
                run.done.append(state)
                if state.burst and state.ok:
                    net.pending.difference_update(state.keys)
            case SweepScheduleChanged():
                run.changes.append(state)
            case SweepWaiting():
                if inbox:
                    continue
                due = sweep.next_due()
                if due is None or due > until:
                    return run, now
                idle_polls = idle_polls + 1 if due <= now else 0
                assert idle_polls < 3, f"next_due {due} names a time at which nothing happens"
                now = max(now, due)
    raise AssertionError("the sweep never settled")
