"""The reprovide sweep machine, driven with explicit time over a perfect fake network."""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import replace

import pytest

from tests.core.sweep_harness import FakeNet, drive, random_keys
from tests.core.sweep_harness import page as page_of
from zikade_py.core.key import Key
from zikade_py.core.sweep import Sweep, SweepConfig
from zikade_py.core.sweep_events import (
    SweepAddKeys,
    SweepClear,
    SweepEvent,
    SweepKeys,
    SweepLoadKeys,
    SweepLookup,
    SweepLookupDone,
    SweepPoll,
    SweepRegionDone,
    SweepReprovideNow,
    SweepRestore,
    SweepSend,
    SweepSendDone,
    SweepWaiting,
)
from zikade_py.core.sweep_region import Region

HOUR = 3600.0
INTERVAL = 22 * HOUR


def _setup(
    servers: int = 1000, keys: int = 3000, seed: int = 1, **cfg: object
) -> tuple[Sweep, FakeNet, list[Key]]:
    rng = random.Random(seed)
    net = FakeNet(random_keys(servers, rng))
    provided = random_keys(keys, rng)
    config = replace(SweepConfig(preimage_targets=False), **cfg)  # type: ignore[arg-type]
    sweep = Sweep(net.servers[0], config, rng=random.Random(seed))
    return sweep, net, provided


def _true_closest(net: FakeNet, key: Key) -> set[Key]:
    return set(net.closest(key))


def test_one_cycle_announces_every_key_to_its_true_closest_with_few_lookups() -> None:
    sweep, net, keys = _setup()
    run, _now = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    announced = run.announced()
    assert set(announced) == set(keys)
    for key in keys:
        assert announced[key] == _true_closest(net, key)
    # The cost follows the network, not the keys: a handful of lookups per region.
    assert len(run.lookups) < len(keys) / 10
    assert all(last is not None for _, _, last in sweep.schedule())
    assert all(d.ok and not d.burst for d in run.done)


def test_regions_are_spread_over_the_interval_and_each_done_once_per_cycle() -> None:
    sweep, net, keys = _setup()
    run, _ = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    times = sorted(d.at for d in run.done)
    regions = [d.region for d in run.done]
    assert len(regions) == len(set(regions)), "a region was reprovided twice in one cycle"
    assert len(times) >= 16
    # Evenly spread: no quarter of the cycle holds more than half of the regions.
    for q in range(4):
        inside = [t for t in times if q * INTERVAL / 4 <= t < (q + 1) * INTERVAL / 4]
        assert len(inside) < len(times) / 2
    # The next reprovide of each is between half and one and a half intervals later.
    for done in run.done:
        assert done.next_due is not None
        assert INTERVAL / 2 < done.next_due - done.at <= 1.5 * INTERVAL


def test_each_server_gets_its_keys_of_a_region_on_one_stream() -> None:
    sweep, net, keys = _setup()
    run, _ = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    streams: dict[tuple[Key, float], int] = {}
    for at, peer, _ in run.sends:
        streams[(peer, at)] = streams.get((peer, at), 0) + 1
    assert max(streams.values()) == 1
    messages = sum(len(batch) for _, _, batch in run.sends)
    assert messages == 20 * len(keys)
    assert len(run.sends) < messages / 5


def test_batches_are_cut_at_batch_size() -> None:
    sweep, net, keys = _setup(servers=200, keys=2000, batch_size=50)
    run, _ = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    assert max(len(batch) for _, _, batch in run.sends) == 50
    assert set(run.announced()) == set(keys)


def test_burst_announces_new_keys_soon_then_schedules_them_later() -> None:
    sweep, net, keys = _setup(keys=500)
    run, now = drive(sweep, net, keys, 0.0, 60.0, SweepAddKeys(tuple(keys), burst=True))
    announced = run.announced()
    assert set(announced) == set(keys)
    assert all(at <= 5.0 for at, _, _ in run.sends)
    assert all(d.burst for d in run.done)
    assert sum(len(d.keys) for d in run.done) == len(keys)
    for _region, due, _ in sweep.schedule():
        assert due >= INTERVAL / 2
    # Within the first half cycle nothing is announced again.
    run2, _ = drive(sweep, net, keys, now, INTERVAL / 2 - 1)
    assert not run2.sends


def test_new_keys_wait_for_calibration_lookups_that_size_the_regions() -> None:
    sweep, net, keys = _setup(servers=2000, keys=300)
    run, _ = drive(sweep, net, keys, 0.0, 30.0, SweepAddKeys(tuple(keys)))
    calibration = sweep.config.calibration_lookups
    assert all(t not in keys for t in run.lookups[:calibration]), "random targets first"
    size = sweep.network_size()
    assert size is not None and 1000 < size < 4000
    # 2000 servers / 20 → prefix length 6: regions of about 31 servers.
    assert {r.length for r, _, _ in sweep.schedule()} <= {6, 7}
    assert set(run.announced()) == set(keys)


def test_calibration_is_tried_again_soon_when_no_lookup_could_run() -> None:
    sweep, net, keys = _setup(servers=300, keys=50)
    net.offline = True  # asked to provide before the routing table has anyone
    run, _ = drive(sweep, net, keys, 0.0, 4.9, SweepAddKeys(tuple(keys)))
    calibration = sweep.config.calibration_lookups
    assert len(run.lookups) == calibration
    run, _ = drive(sweep, net, keys, 4.9, 5.1, run=run)
    assert len(run.lookups) == 2 * calibration, "tried again after calibration_retry (5 s)"
    net.offline = False
    run, _ = drive(sweep, net, keys, 5.1, 20.0, run=run)
    assert set(run.announced()) == set(keys)


def test_a_region_whose_lookup_found_nobody_is_tried_again_soon() -> None:
    sweep, net, keys = _setup(servers=300, keys=200)
    run, now = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    net.offline = True  # a restart: overdue regions, an empty routing table for a moment
    run, now = drive(sweep, net, keys, now, now + 1.0, SweepReprovideNow())
    failed = [d for d in run.done if not d.ok and not d.burst]
    assert failed and all(d.next_due == d.at + sweep.config.calibration_retry for d in failed)
    net.offline = False
    run, _ = drive(sweep, net, keys, now, now + 10.0)
    assert {d.ok for d in run.done} == {True}


def test_a_failed_batch_is_sent_again_once() -> None:
    sweep, net, keys = _setup(servers=300, keys=300)
    net.flaky = set(net.servers)  # every server fails its first batch
    run, _ = drive(sweep, net, keys, 0.0, 30.0, SweepAddKeys(tuple(keys)))
    announced = run.announced()
    for key in keys:
        assert announced[key] == _true_closest(net, key)
    assert all(d.ok for d in run.done)
    assert max(at for at, _, _ in run.sends) >= sweep.config.send_retry_delay


def test_failed_regions_are_retried_and_counted() -> None:
    sweep, net, keys = _setup(servers=300, keys=400, min_reachable_ratio=1.0)
    net.failing = set(net.servers[:40])
    run, now = drive(sweep, net, keys, 0.0, 3 * HOUR, SweepAddKeys(tuple(keys), burst=True))
    failed = [d for d in run.done if not d.ok]
    assert failed and sweep.stats(now).failures_total >= len(failed)
    attempts: dict[Region, list[float]] = {}
    for d in run.done:
        attempts.setdefault(d.region, []).append(d.at)
    distinct = [sorted(set(times)) for times in attempts.values()]
    gaps = [b - a for times in distinct for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 300.0  # retried retry_interval later, not at once
    net.failing = set()
    run2, now = drive(sweep, net, keys, now, now + 2 * 300.0)
    assert set(run.announced()) | set(run2.announced()) == set(keys)


def test_restore_runs_overdue_regions_first_and_skips_recent_ones() -> None:
    sweep, net, keys = _setup(servers=500, keys=1000)
    _, now = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    rows = sweep.schedule()
    cycle_start = sweep.stats(now).cycle_start
    assert cycle_start is not None
    # A crash half way through the second cycle, after every other region was redone.
    crash = INTERVAL * 1.5
    persisted: list[tuple[Region, float | None, float]] = []
    recent: set[Region] = set()
    for i, (region, _, last) in enumerate(rows):
        assert last is not None
        if i % 2:
            persisted.append((region, last, 0.0))
        else:
            persisted.append((region, crash - 60.0, 0.0))
            recent.add(region)
    restart = crash + 7 * HOUR  # down for 7 hours
    restore = SweepRestore(cycle_start, tuple(persisted))
    probe = Sweep(sweep.self_key, sweep.config, rng=random.Random(5))
    probe.advance(restore, restart)
    overdue = {r for r, due, _ in probe.schedule() if due <= restart}
    assert overdue and not overdue & recent

    later = Sweep(sweep.self_key, sweep.config, rng=random.Random(5))
    run, _ = drive(later, net, keys, restart, restart + 2 * HOUR, restore)
    redone = [d.region for d in run.done]
    assert set(redone[: len(overdue)]) == overdue, "overdue regions go first"
    assert not set(redone) & recent, "a region done before the crash was announced again"


def test_clear_empties_schedule_and_stops_reprovides() -> None:
    sweep, net, keys = _setup(servers=300, keys=300)
    drive(sweep, net, keys, 0.0, 10.0, SweepAddKeys(tuple(keys), burst=True))
    assert sweep.regions > 0
    assert isinstance(sweep.advance(SweepClear(), 11.0), SweepWaiting)
    assert sweep.regions == 0 and sweep.idle and sweep.next_due() is None
    run, _ = drive(sweep, net, [], 11.0, 2 * INTERVAL)
    assert not run.sends


def test_small_regions_are_announced_key_by_key() -> None:
    sweep, net, keys = _setup(servers=300, keys=1)
    run, _ = drive(sweep, net, keys, 0.0, 60.0, SweepAddKeys(tuple(keys)))
    calibration = sweep.config.calibration_lookups
    assert len(run.lookups) == calibration + 1
    assert run.lookups[-1] == keys[0]
    assert run.announced()[keys[0]] == _true_closest(net, keys[0])


def test_a_tiny_network_gets_every_key_on_every_server() -> None:
    sweep, net, keys = _setup(servers=8, keys=50)
    run, _ = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    announced = run.announced()
    assert all(announced[k] == set(net.servers) for k in keys)


def test_stats_count_this_cycle() -> None:
    sweep, net, keys = _setup(servers=500, keys=1000)
    run, now = drive(sweep, net, keys, 0.0, INTERVAL - 1, SweepAddKeys(tuple(keys), burst=False))
    stats = sweep.stats(now)
    assert stats.regions == sweep.regions
    assert stats.regions_done_cycle == len([d for d in run.done if d.ok])
    assert stats.keys_reprovided_cycle == len(keys)
    assert stats.lookups_cycle == len(run.lookups)
    assert stats.streams_cycle == len(run.sends)
    assert stats.messages_cycle == 20 * len(keys)
    assert stats.network_size is not None
    assert stats.average_holders == pytest.approx(20.0)
    assert stats.next_region_at is not None and stats.next_region_at > now
    fresh = sweep.stats(now + INTERVAL)
    assert fresh.lookups_cycle <= stats.lookups_cycle


def test_a_widened_exploration_does_not_announce_a_sibling_done_recently() -> None:
    """A region too small for ``k`` servers explores its parent; when the parent also holds
    a sibling region announced a moment ago (after a restart, say), only this region's keys
    go out, and the sibling keeps its own slot."""
    sweep, net, keys = _setup(servers=30, keys=200)
    done, due = Region.parse("10"), Region.parse("11")
    now = 2 * INTERVAL
    restore = SweepRestore(0.0, ((done, now - 4.0, 0.0), (due, now - INTERVAL, 0.0)))
    stored = [k for k in keys if done.contains(k.value) or due.contains(k.value)]
    run, _ = drive(sweep, net, stored, now, now + 60.0, restore)
    announced = run.announced()
    mine = [k for k in stored if due.contains(k.value)]
    assert mine and set(announced) == set(mine), "keys of the region done 4 s ago went out again"
    for key in mine:
        assert announced[key] == _true_closest(net, key)
    assert [d.region for d in run.done] == [due]
    regions = {region for region, _, _ in sweep.schedule()}
    assert done in regions and due in regions


class _Flags:
    """Pending flags that never allocate when cleared (so they do not count as the
    machine's memory)."""

    def __init__(self, keys: list[Key]) -> None:
        self._flags = dict.fromkeys(keys, True)
        self.left = len(keys)

    def __contains__(self, key: object) -> bool:
        return self._flags.get(key, False)  # type: ignore[call-overload,no-any-return]

    def clear(self, keys: tuple[Key, ...]) -> None:
        for key in keys:
            if self._flags[key]:
                self._flags[key] = False
                self.left -= 1


def test_a_large_burst_is_read_back_from_the_store_a_page_at_a_time() -> None:
    """A burst of many new keys is not held by the machine: it counts them per region, the
    store keeps them (pending), and they are read back and announced ``page_keys`` at a
    time. Memory the machine allocates stays at a page's worth however many keys there are
    (before: every key in the burst queue, then every key in per-server lists at once)."""
    import tracemalloc

    page, n = 500, 60_000
    rng = random.Random(11)
    net = FakeNet(random_keys(8, rng))  # fewer than k: the whole keyspace is one region
    keys = sorted(random_keys(n, rng), key=lambda k: k.value)
    values = [k.value for k in keys]
    pending = _Flags(keys)  # the store's pending flags, made before measuring
    config = SweepConfig(preimage_targets=False, page_keys=page)
    sweep = Sweep(net.servers[0], config, rng=random.Random(11))
    sweep.advance(SweepLookupDone(0, ()), 0.0)  # nothing: an answer for no lookup is ignored
    inbox: deque[SweepEvent] = deque([SweepAddKeys(tuple(keys))])
    took = dict.fromkeys(keys, 0)  # made before measuring: the test's own bookkeeping
    loads: list[SweepLoadKeys] = []
    biggest = 0
    now = 0.0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            state = sweep.advance(inbox.popleft() if inbox else SweepPoll(), now)
            match state:
                case SweepLookup(lookup_id=lid, target=target):
                    inbox.append(SweepLookupDone(lid, net.closest(target)))
                case SweepSend(send_id=sid, keys=batch):
                    for key in batch:
                        took[key] += 1
                    inbox.append(SweepSendDone(sid, True))
                case SweepLoadKeys():
                    loads.append(state)
                    answer = page_of(keys, values, state, pending)
                    biggest = max(biggest, len(answer))
                    inbox.append(SweepKeys(state.request_id, answer))
                case SweepRegionDone(burst=True, ok=True, keys=announced):
                    pending.clear(announced)
                case SweepWaiting() if not inbox:
                    due = sweep.next_due()
                    if due is None or not pending.left:
                        break
                    now = max(now, due)
                case _:
                    pass
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert not pending.left, "every key had its first announcement"
    assert took == dict.fromkeys(keys, len(net.servers))
    assert loads and all(load.pending and load.limit == page for load in loads)
    assert biggest == page and len(loads) >= n // page
    # A page of 500 keys on 8 servers is some tens of kB; all 60,000 keys in the machine's
    # queues and batch lists at once were well over 10 MB.
    assert peak < 2_000_000, f"the machine allocated {peak} bytes for the burst"
