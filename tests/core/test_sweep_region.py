"""Regions, coverage, schedule slots, allocation and the network-size estimate of the sweep."""

from __future__ import annotations

import random

import pytest

from tests.core.sweep_harness import FakeNet, random_keys
from zikade_py.core.key import KEY_BITS, Key
from zikade_py.core.sweep import SweepConfig
from zikade_py.core.sweep_netsize import NetworkSizeEstimator, prefix_length, size_from_buckets
from zikade_py.core.sweep_region import (
    WHOLE,
    Region,
    allocate,
    covered_region,
    gaps,
    next_slot,
    slot_offset,
)


def test_region_basics() -> None:
    r = Region.parse("101")
    assert str(r) == "101" and r.length == 3 and r.bits == 5
    assert r.contains(r.lo) and r.contains(r.hi - 1) and not r.contains(r.hi)
    assert r.covers(r.child(0)) and not r.child(0).covers(r)
    assert r.child(1).parent() == r and WHOLE.parent() == WHOLE
    assert str(WHOLE) == "" and Region.parse("") == WHOLE
    with pytest.raises(ValueError):
        Region(2, 4)
    with pytest.raises(ValueError):
        Region.parse("10a")


def test_gaps_are_the_uncovered_parts_in_order() -> None:
    r = Region.parse("1")
    assert gaps(r, []) == [r]
    assert gaps(r, [Region.parse("10")]) == [Region.parse("11")]
    assert gaps(r, [Region.parse("100"), Region.parse("11")]) == [Region.parse("101")]
    assert gaps(r, [WHOLE]) == []
    assert gaps(r, [Region.parse("0")]) == [r]


def test_covered_region_is_proven_complete_by_the_lookup() -> None:
    rng = random.Random(3)
    net = FakeNet(random_keys(3000, rng))
    for target in random_keys(50, rng):
        closest = [c.value for c in net.closest(target)]
        covered = covered_region(target.value, closest, 20)
        under = [s for s in net.servers if covered.contains(s.value)]
        assert under, "a covered region holds the closest servers"
        assert {s.value for s in under} <= set(closest)
    assert covered_region(5, [1, 2], 20) == WHOLE


def test_allocate_matches_brute_force() -> None:
    rng = random.Random(4)
    servers = random_keys(60, rng)
    keys = sorted(random_keys(2000, rng), key=lambda k: k.value)
    out = allocate(keys, servers, 20)
    got: dict[Key, set[Key]] = {}
    for server, mine in out.items():
        assert mine == sorted(mine, key=lambda k: k.value)
        for key in mine:
            got.setdefault(key, set()).add(server)
    for key in keys:
        want = set(sorted(servers, key=lambda s: s.value ^ key.value)[:20])
        assert got[key] == want


def test_slots_spread_one_length_evenly_and_start_near_our_key() -> None:
    interval = 1000.0
    order = random.Random(1).getrandbits(KEY_BITS)
    offsets = sorted(slot_offset(Region(4, b), order, interval) for b in range(16))
    assert offsets == [interval * i / 16 for i in range(16)]
    assert slot_offset(Region.of(order, 4), order, interval) == 0.0
    assert next_slot(100.0, 0.0, interval, 50.0) == 100.0
    assert next_slot(100.0, 0.0, interval, 100.0) == 100.0
    assert next_slot(100.0, 0.0, interval, 100.5) == 1100.0
    assert next_slot(100.0, 0.0, interval, 2500.0) == 3100.0


@pytest.mark.parametrize("size", [500, 5000, 20000])
def test_network_size_estimate_from_lookups(size: int) -> None:
    rng = random.Random(size)
    net = FakeNet(random_keys(size, rng))
    est = NetworkSizeEstimator()
    assert est.estimate() is None
    for target in random_keys(20, rng):
        est.add_lookup(target.value, [c.value for c in net.closest(target)])
    got = est.estimate()
    assert got is not None and size / 1.6 < got < size * 1.6


def test_prefix_length_gives_k_to_2k_servers_per_region() -> None:
    assert prefix_length(30, 20, 24) == 0
    assert prefix_length(10_000, 20, 24) == 8  # 10,000 / 256 ≈ 39 servers each
    assert prefix_length(1e12, 20, 24) == 24
    assert size_from_buckets([(0, 20), (1, 20), (5, 10), (6, 5)], 20) is not None
    assert size_from_buckets([(0, 20)], 20) is None


def test_config_validation() -> None:
    SweepConfig().validate()
    for bad in (
        {"replication": 0},
        {"reprovide_interval": 0.0},
        {"max_regions": 0},
        {"min_reachable_ratio": 0.0},
        {"retry_interval": -1.0},
    ):
        with pytest.raises(ValueError):
            SweepConfig(**bad).validate()  # type: ignore[arg-type]
