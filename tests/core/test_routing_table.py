"""RoutingTable: bucket placement, seniority, replacements, nearest(), diversity filter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.core.key import Key, closest
from zikade_py.core.routing.cpl import random_digest_with_cpl
from zikade_py.core.routing_table import AddResult, GroupDiversityFilter, RoutingTable

SELF = Key.from_preimage(b"self")


def at_cpl(cpl: int, seed: int) -> Key:
    """A key sharing exactly ``cpl`` bits with SELF."""
    return random_digest_with_cpl(SELF, cpl, random.Random(seed))


def test_nodes_land_in_the_bucket_of_their_cpl() -> None:
    table = RoutingTable(SELF)
    placed = {cpl: [at_cpl(cpl, s) for s in range(cpl % 3 + 1)] for cpl in (0, 1, 5, 17, 200)}
    for keys in placed.values():
        for key in keys:
            assert table.add(key, 1.0) is AddResult.ADDED
    for cpl, keys in placed.items():
        assert table.bucket(cpl) == keys
        assert all(table.cpl(k) == cpl for k in keys)
    sizes = table.bucket_sizes()
    assert len(sizes) == 201
    assert sizes[0] == 1 and sizes[1] == 2 and sizes[5] == 3 and sizes[17] == 3
    assert sizes[200] == 3 and sum(sizes) == len(table) == 12
    assert table.deepest_bucket() == 200
    assert set(table.nodes()) == {k for keys in placed.values() for k in keys}


def test_self_and_duplicates_are_refused() -> None:
    table = RoutingTable(SELF)
    node = at_cpl(3, 1)
    assert table.add(SELF, 0.0) is AddResult.SELF
    assert table.add(node, 1.0) is AddResult.ADDED
    assert table.add(node, 2.0) is AddResult.ALREADY_PRESENT
    assert table.added_at(node) == 1.0 and len(table) == 1
    assert table.contains(node) and node in table and SELF not in table


def test_empty_table_answers_sensibly() -> None:
    table = RoutingTable(SELF)
    assert len(table) == 0
    assert table.nearest(SELF, 20) == []
    assert table.bucket_sizes() == [] and table.deepest_bucket() is None
    assert table.remove(at_cpl(0, 1)) is False
    assert table.last_seen(at_cpl(0, 1)) is None


def test_full_bucket_keeps_its_old_nodes() -> None:
    table = RoutingTable(SELF, bucket_size=3)
    old = [at_cpl(2, s) for s in range(3)]
    for i, key in enumerate(old):
        assert table.add(key, float(i)) is AddResult.ADDED
    newcomer = at_cpl(2, 99)
    assert table.would_add(newcomer) is AddResult.BUCKET_FULL
    assert table.add(newcomer, 10.0) is AddResult.BUCKET_FULL
    assert table.bucket(2) == old
    assert [table.added_at(k) for k in old] == [0.0, 1.0, 2.0]
    assert not table.contains(newcomer)
    # Other buckets are unaffected by bucket 2 being full.
    assert table.add(at_cpl(3, 1), 11.0) is AddResult.ADDED


def test_replacement_cache_promotes_newest_on_removal() -> None:
    table = RoutingTable(SELF, bucket_size=2, replacement_capacity=2)
    a, b = at_cpl(4, 1), at_cpl(4, 2)
    table.add(a, 0.0)
    table.add(b, 0.0)
    c, d, e = at_cpl(4, 3), at_cpl(4, 4), at_cpl(4, 5)
    assert table.offer_replacement(c, 1.0)
    assert table.offer_replacement(d, 2.0)
    assert table.offer_replacement(e, 3.0)  # evicts the oldest offer, c
    assert table.replacements(4) == [d, e]
    assert table.take_promoted() == []
    assert table.remove(a) is True
    assert table.bucket(4) == [b, e]
    assert table.take_promoted() == [e]
    assert table.take_promoted() == []
    assert table.added_at(e) == 3.0 and table.last_seen(e) == 3.0
    assert table.replacements(4) == [d]


def test_replacement_offers_are_refused_when_pointless() -> None:
    table = RoutingTable(SELF, bucket_size=2)
    a = at_cpl(1, 1)
    table.add(a, 0.0)
    assert not table.offer_replacement(at_cpl(1, 2), 1.0)  # bucket has room: add it instead
    table.add(at_cpl(1, 3), 0.0)
    assert not table.offer_replacement(a, 1.0)  # already in the table
    assert not table.offer_replacement(SELF, 1.0)
    assert not RoutingTable(SELF, replacement_capacity=0).offer_replacement(a, 1.0)


def test_removing_a_cached_candidate_forgets_it() -> None:
    table = RoutingTable(SELF, bucket_size=1)
    a, b = at_cpl(0, 1), at_cpl(0, 2)
    table.add(a, 0.0)
    table.offer_replacement(b, 1.0)
    assert table.remove(b) is False
    assert table.remove(a) is True
    assert table.take_promoted() == [] and len(table) == 0 and table.bucket_sizes() == []


def test_replacement_has_room() -> None:
    table = RoutingTable(SELF, bucket_size=1, replacement_capacity=1)
    table.add(at_cpl(0, 1), 0.0)
    cand, other = at_cpl(0, 2), at_cpl(0, 3)
    assert table.replacement_has_room(cand)
    table.offer_replacement(cand, 1.0)
    assert table.replacement_has_room(cand)  # re-offering refreshes it
    assert not table.replacement_has_room(other)


def test_mark_seen_and_would_add_do_not_change_seniority() -> None:
    table = RoutingTable(SELF)
    node = at_cpl(7, 1)
    assert table.would_add(node) is AddResult.ADDED
    assert len(table) == 0  # a preview only
    assert table.mark_seen(node, 5.0) is False
    table.add(node, 1.0)
    assert table.mark_seen(node, 5.0) is True
    assert table.mark_seen(node, 4.0) is True  # never goes back in time
    assert table.last_seen(node) == 5.0 and table.added_at(node) == 1.0


def brute_force(table: RoutingTable, target: Key, n: int) -> list[Key]:
    return closest(table.nodes(), target, n)


@settings(max_examples=150, deadline=None)
@given(
    self_value=st.integers(0, 2**256 - 1),
    node_values=st.lists(st.integers(0, 2**256 - 1), max_size=120, unique=True),
    close_bits=st.lists(st.integers(0, 255), max_size=60),
    target_value=st.integers(0, 2**256 - 1),
    n=st.integers(0, 60),
    bucket_size=st.sampled_from([1, 3, 20, 1000]),
)
def test_nearest_equals_brute_force(
    self_value: int,
    node_values: list[int],
    close_bits: list[int],
    target_value: int,
    n: int,
    bucket_size: int,
) -> None:
    me = Key.from_int(self_value)
    table = RoutingTable(me, bucket_size)
    # Random ints land almost only in the shallow buckets; flip single bits of self
    # as well so deep buckets are populated too.
    for v in node_values + [self_value ^ (1 << b) for b in close_bits]:
        table.add(Key.from_int(v), 0.0)
    targets = [Key.from_int(target_value), me, *table.nodes()[:3]]
    for target in targets:
        assert table.nearest(target, n) == brute_force(table, target, n)
        # Leaving a node out (a server never names the asker): in the table or not.
        for left_out in [*table.nodes()[:2], *brute_force(table, target, n)[-1:], me]:
            expected = [k for k in brute_force(table, target, n + 1) if k != left_out][:n]
            assert table.nearest(target, n, left_out) == expected


def test_nearest_on_a_large_table_matches_brute_force() -> None:
    rng = random.Random(7)
    table = RoutingTable(SELF, bucket_size=20)
    big = RoutingTable(SELF, bucket_size=10_000)
    for _ in range(3000):
        key = Key.from_int(rng.getrandbits(256))
        table.add(key, 0.0)
        big.add(key, 0.0)
    for _ in range(50):
        target = Key.from_int(rng.getrandbits(256))
        for t in (table, big):
            assert t.nearest(target, 20) == brute_force(t, target, 20)
    assert len(big) == 3000 and len(table) < 300


def test_nearest_of_our_own_key_follows_every_change_of_the_table() -> None:
    # The answer for our own key is kept between calls; adds, removals and
    # promotions must each be seen by the next call, and callers may change the list.
    table = RoutingTable(SELF, bucket_size=2)
    deep, other, third = at_cpl(9, 1), at_cpl(9, 2), at_cpl(9, 3)
    table.add(at_cpl(0, 4), 0.0)
    assert table.nearest(SELF, 3) == brute_force(table, SELF, 3)
    table.add(deep, 0.0)
    first = table.nearest(SELF, 3)
    assert first == brute_force(table, SELF, 3) and deep in first
    first.clear()
    assert table.nearest(SELF, 3) == brute_force(table, SELF, 3) != []
    assert table.nearest(SELF, 1) == brute_force(table, SELF, 1)
    table.add(other, 0.0)
    table.offer_replacement(third, 0.0)
    assert table.nearest(SELF, 3) == brute_force(table, SELF, 3)
    table.remove(deep)  # `third` is promoted into the freed seat
    assert table.nearest(SELF, 3) == brute_force(table, SELF, 3)
    assert third in table.nearest(SELF, 3) and deep not in table.nearest(SELF, 3)


def test_nearest_of_our_own_key_survives_only_changes_that_cannot_reach_it() -> None:
    # The kept answer is dropped only when a change reaches the buckets it came from;
    # random adds and removals in shallow and deep buckets, checked after each one.
    rng = random.Random(11)
    table = RoutingTable(SELF, bucket_size=4, replacement_capacity=2)
    present: list[Key] = []
    for step in range(1500):
        if present and rng.random() < 0.4:
            table.remove(present.pop(rng.randrange(len(present))))
        else:
            key = at_cpl(min(int(rng.expovariate(0.4)), 255), 10_000 + step)
            if table.add(key, float(step)) is AddResult.ADDED:
                present.append(key)
            else:
                table.offer_replacement(key, float(step))
        present.extend(table.take_promoted())
        # n, and n - 1 leaving the asker out, share one kept answer (of n nodes)
        n = 6
        assert table.nearest(SELF, n) == brute_force(table, SELF, n)
        asker = rng.choice(present) if present else SELF
        expected = [k for k in brute_force(table, SELF, n) if k != asker][: n - 1]
        assert table.nearest(SELF, n - 1, asker) == expected


def groups(mapping: dict[Key, str | None]) -> GroupDiversityFilter:
    return GroupDiversityFilter(lambda k: mapping.get(k), max_per_bucket=2, max_per_table=3)


def test_diversity_filter_limits_per_bucket_and_per_table() -> None:
    nodes = {(cpl, s): at_cpl(cpl, s) for cpl in (0, 1, 2) for s in range(3)}
    mapping: dict[Key, str | None] = {k: "1.2.0.0/16" for k in nodes.values()}
    filt = groups(mapping)
    table = RoutingTable(SELF, node_filter=filt)
    assert table.add(nodes[(0, 0)], 0.0) is AddResult.ADDED
    assert table.add(nodes[(0, 1)], 0.0) is AddResult.ADDED
    assert table.add(nodes[(0, 2)], 0.0) is AddResult.FILTERED  # 2 per bucket
    assert table.add(nodes[(1, 0)], 0.0) is AddResult.ADDED
    assert table.add(nodes[(2, 0)], 0.0) is AddResult.FILTERED  # 3 per table
    assert filt.group_count("1.2.0.0/16") == 3
    # Another group is not affected, and exempt nodes (no group) are never limited.
    other = at_cpl(2, 50)
    mapping[other] = "9.9.0.0/16"
    assert table.add(other, 0.0) is AddResult.ADDED
    for s in range(10, 15):
        mapping[at_cpl(5, s)] = None
        assert table.add(at_cpl(5, s), 0.0) is AddResult.ADDED
    # Removal releases the quota.
    assert table.remove(nodes[(0, 0)])
    assert filt.group_count("1.2.0.0/16") == 2
    assert table.add(nodes[(2, 0)], 0.0) is AddResult.ADDED


def test_diversity_filter_counts_the_group_seen_at_insertion() -> None:
    node = at_cpl(0, 1)
    mapping: dict[Key, str | None] = {node: "a"}
    filt = groups(mapping)
    table = RoutingTable(SELF, node_filter=filt)
    table.add(node, 0.0)
    mapping[node] = "b"  # the node moved; its old group must still be released
    table.remove(node)
    assert filt.group_count("a") == 0 and filt.group_count("b") == 0


def test_promotion_respects_the_filter() -> None:
    a, b = at_cpl(3, 1), at_cpl(3, 2)
    g1, g2 = at_cpl(9, 1), at_cpl(10, 1)
    blocked, allowed = at_cpl(3, 3), at_cpl(3, 4)
    mapping: dict[Key, str | None] = {a: "g", g1: "g", g2: "g", b: "x"}
    mapping |= {blocked: "g", allowed: "h"}
    table = RoutingTable(SELF, bucket_size=2, node_filter=groups(mapping))
    for node in (a, b, g1, g2):
        assert table.add(node, 0.0) is AddResult.ADDED  # group g is now at 3 table-wide
    table.offer_replacement(allowed, 1.0)
    table.offer_replacement(blocked, 2.0)  # the newest offer, but g is full
    assert table.remove(b)
    assert table.take_promoted() == [allowed]
    assert table.bucket(3) == [a, allowed] and table.replacements(3) == [blocked]


def test_filter_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupDiversityFilter(lambda k: None, max_per_bucket=0)
    with pytest.raises(ValueError):
        RoutingTable(SELF, bucket_size=0)


def test_seatable_agrees_with_would_add_and_proves_useful_follows_go() -> None:
    groups = {at_cpl(0, s): "g" for s in range(3)}
    table = RoutingTable(
        SELF, bucket_size=2, node_filter=GroupDiversityFilter(lambda k: groups.get(k))
    )
    table.add(at_cpl(1, 1), 0.0)
    table.add(at_cpl(1, 2), 0.0)  # bucket 1 full
    offered = [SELF, at_cpl(1, 1), at_cpl(1, 3), *groups, at_cpl(4, 1)]
    expected = [n for n in offered if table.would_add(n) is AddResult.ADDED]
    assert table.seatable(offered) == expected
    assert table.is_full(1) and not table.is_full(4)
    # An empty answer passes while the table holds fewer than k nodes (go's lookupCheck).
    assert table.proves_useful(1) and not table.proves_useful(0)
    assert RoutingTable(SELF).proves_useful(0)
