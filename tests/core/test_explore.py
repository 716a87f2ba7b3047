"""Explore: schedules, one walk at a time, ordering by the walk's target, timeouts; cpl keys."""

from __future__ import annotations

import hashlib
import random

import pytest

from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key, sort_by_distance
from zikade_py.core.routing.cpl import (
    MAX_PREIMAGE_CPL,
    digest_targets,
    preimage_targets,
    random_digest_with_cpl,
    random_key_with_cpl,
)
from zikade_py.core.routing.explore import (
    EXPLORE_QUERY_ID,
    DynamicExploreSchedule,
    Explore,
    ExploreCancelRequest,
    ExploreConfig,
    ExploreCovered,
    ExploreFindCloser,
    ExploreFindCloserDropped,
    ExploreFindCloserFailure,
    ExploreFindCloserResponse,
    ExploreIdle,
    ExplorePoll,
    ExploreQueryFinished,
    ExploreSchedule,
    ExploreState,
    ExploreStop,
    ExploreWaiting,
    NoWaitExploreSchedule,
)
from zikade_py.core.routing_table import RoutingTable

SELF = Key.from_preimage(b"self")


def at_cpl(cpl: int, seed: int) -> Key:
    return random_digest_with_cpl(SELF, cpl, random.Random(seed))


def table_with(*keys: Key) -> RoutingTable:
    table = RoutingTable(SELF)
    for k in keys:
        table.add(k, 0.0)
    return table


def make(
    table: RoutingTable,
    schedule: ExploreSchedule | None = None,
    config: ExploreConfig | None = None,
    target: Key | None = None,
) -> Explore:
    targets = digest_targets(SELF, random.Random(1))
    return Explore(
        SELF,
        table,
        schedule if schedule is not None else NoWaitExploreSchedule(),
        (lambda cpl: target) if target is not None else targets,
        config,
    )


def drain(explore: Explore, first: ExploreState, now: float) -> list[ExploreState]:
    out = [first]
    for _ in range(100):
        if not isinstance(out[-1], ExploreFindCloser | ExploreCancelRequest):
            return out
        out.append(explore.advance(ExplorePoll(), now))
    raise AssertionError("explore did not settle")


# -- schedules -------------------------------------------------------------------------------


def test_dynamic_schedule_order_and_intervals() -> None:
    s = DynamicExploreSchedule(random.Random(0), max_cpl=3, start=100.0, interval=10.0)
    assert s.next_due() == 100.0
    assert s.next_cpl(99.0) is None
    # Everything is due at start; ties go to the lower CPL.
    assert [s.next_cpl(100.0) for _ in range(5)] == [0, 1, 2, 3, None]
    # interval + (max_cpl - cpl) * interval * multiplier: deep buckets more often.
    assert [s.interval_for(c) for c in range(4)] == [40.0, 30.0, 20.0, 10.0]
    assert s.next_due() == 110.0
    assert s.next_cpl(110.0) == 3
    assert s.next_cpl(120.0) == 2  # cpl 3 is due again at 120 too: the lower CPL wins
    assert s.next_cpl(120.0) == 3
    assert s.next_cpl(120.0) is None


def test_dynamic_schedule_jitter_is_bounded_and_reproducible() -> None:
    def intervals(seed: int) -> list[float]:
        s = DynamicExploreSchedule(random.Random(seed), max_cpl=14, interval=600.0, jitter=0.05)
        return [s.interval_for(14) for _ in range(20)]

    first = intervals(3)
    assert first == intervals(3)
    assert first != intervals(4)
    assert all(600.0 <= x <= 630.0 for x in first) and len(set(first)) > 1


def test_dynamic_schedule_validation() -> None:
    rng = random.Random(0)
    for bad in ({"max_cpl": 256}, {"interval": 0.0}, {"multiplier": -1.0}, {"jitter": 0.1}):
        with pytest.raises(ValueError):
            DynamicExploreSchedule(rng, **bad)


def test_no_wait_schedule_cycles() -> None:
    s = NoWaitExploreSchedule(max_cpl=2)
    assert [s.next_cpl(0.0) for _ in range(5)] == [0, 1, 2, 0, 1]


# -- the machine ------------------------------------------------------------------------------


def test_walk_iterates_by_distance_to_its_target_not_to_self() -> None:
    # Bucket 0 nodes are near the walk's target; deep-bucket nodes are near self.
    near_target = [at_cpl(0, s) for s in range(8)]
    near_self = [at_cpl(c, 100 + c) for c in range(10, 18)]
    table = table_with(*near_target, *near_self)
    target = at_cpl(0, 999)
    cfg = ExploreConfig(request_concurrency=1, num_results=20)
    explore = make(table, config=cfg, target=target)
    asked: list[Key] = []
    state = explore.advance(ExplorePoll(), 0.0)
    for step in range(40):
        if not isinstance(state, ExploreFindCloser):
            break
        assert state.target == target and state.cpl == 0
        asked.append(state.node)
        state = explore.advance(ExploreFindCloserFailure(state.node, "x"), float(step))
    everyone = near_target + near_self
    assert asked == sort_by_distance(everyone, target)
    assert asked != sort_by_distance(everyone, SELF)  # what zikade's walk would have done
    assert asked[:8] == sort_by_distance(near_target, target)


def test_new_candidates_are_also_ordered_by_the_target() -> None:
    seed = at_cpl(0, 1)
    target = at_cpl(0, 999)
    explore = make(
        table_with(seed), config=ExploreConfig(request_concurrency=1), target=target
    )
    first = explore.advance(ExplorePoll(), 0.0)
    assert isinstance(first, ExploreFindCloser) and first.node == seed
    assert first.query_id == EXPLORE_QUERY_ID and first.deadline == 10.0
    # Answer with one node next to self and one next to the target.
    by_self = at_cpl(40, 5)
    by_target = Key.from_int(target.value ^ 1)
    state = explore.advance(ExploreFindCloserResponse(seed, (by_self, by_target)), 1.0)
    assert isinstance(state, ExploreFindCloser) and state.node == by_target


def test_one_walk_at_a_time() -> None:
    schedule = NoWaitExploreSchedule(max_cpl=3)
    table = table_with(*(at_cpl(c, c) for c in range(4)))
    explore = make(table, schedule)
    states = drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
    assert isinstance(states[-1], ExploreWaiting) and explore.current_cpl == 0
    for t in (1.0, 2.0, 3.0):
        state = explore.advance(ExplorePoll(), t)
        assert isinstance(state, ExploreWaiting) and state.cpl == 0
    assert schedule.next_cpl(4.0) == 1  # the schedule was not consulted while walking


def test_walks_follow_the_schedule_and_idle_until_the_next_is_due() -> None:
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=2, interval=100.0)
    table = table_with(at_cpl(0, 1), at_cpl(1, 2), at_cpl(2, 3))
    explore = make(table, schedule)
    cpls = []
    now = 0.0
    for _ in range(3):
        states = drain(explore, explore.advance(ExplorePoll(), now), now)
        walk = [s for s in states if isinstance(s, ExploreFindCloser)]
        cpls.append(walk[0].cpl)
        assert all(s.target == walk[0].target for s in walk)
        for s in walk:
            state = explore.advance(ExploreFindCloserFailure(s.node), now)
        assert isinstance(state, ExploreQueryFinished)
        assert state.cpl == cpls[-1] and state.reason is FinishReason.FAILED
    assert cpls == [0, 1, 2]
    assert isinstance(explore.advance(ExplorePoll(), now), ExploreIdle)
    assert explore.next_due() == 100.0  # cpl 2: one interval after it ran
    assert explore.current_cpl is None


def test_walk_target_has_the_walks_cpl_and_seeds_come_from_the_table() -> None:
    nodes = [at_cpl(c, s) for c in range(6) for s in range(3)]
    explore = make(table_with(*nodes), NoWaitExploreSchedule(max_cpl=5))
    for _ in range(6):
        states = drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
        target = explore.current_target
        assert target is not None
        cpl = explore.current_cpl
        assert cpl is not None and SELF.common_prefix_length(target) == cpl
        asked = [s.node for s in states if isinstance(s, ExploreFindCloser)]
        alpha = explore.config.request_concurrency
        assert set(asked) == set(explore.table.nearest(target, 20)[:alpha])
        explore.advance(ExploreStop(), 0.0)
        drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)


def test_timeout_finishes_with_cancels() -> None:
    seeds = [at_cpl(0, s) for s in range(3)]
    cfg = ExploreConfig(timeout=5.0, request_timeout=30.0)
    explore = make(table_with(*seeds), NoWaitExploreSchedule(max_cpl=0), cfg)
    states = drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
    asked = {s.node for s in states if isinstance(s, ExploreFindCloser)}
    assert asked == set(seeds) and explore.next_due() == 5.0
    states = drain(explore, explore.advance(ExplorePoll(), 5.0), 5.0)
    assert {s.node for s in states if isinstance(s, ExploreCancelRequest)} == asked
    finished = states[-1]
    assert isinstance(finished, ExploreQueryFinished)
    assert finished.reason is FinishReason.TIMEOUT and finished.cpl == 0


def test_stop_cancels_the_walk_and_does_not_start_one() -> None:
    schedule = NoWaitExploreSchedule(max_cpl=0)
    explore = make(table_with(at_cpl(0, 1)), schedule)
    assert isinstance(explore.advance(ExploreStop(), 0.0), ExploreIdle)
    drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
    states = drain(explore, explore.advance(ExploreStop(), 1.0), 1.0)
    assert [type(s) for s in states] == [ExploreCancelRequest, ExploreQueryFinished]
    assert states[-1].reason is FinishReason.CANCELLED  # type: ignore[union-attr]


def test_empty_table_skips_walks_or_fails_them() -> None:
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=3, interval=10.0)
    explore = make(RoutingTable(SELF), schedule)
    assert isinstance(explore.advance(ExplorePoll(), 0.0), ExploreIdle)
    assert explore.next_due() == 10.0
    no_skip = ExploreConfig(skip_beyond_deepest_bucket=False)
    explore = make(RoutingTable(SELF), NoWaitExploreSchedule(), no_skip)
    state = explore.advance(ExplorePoll(), 0.0)
    assert isinstance(state, ExploreQueryFinished) and state.reason is FinishReason.FAILED


def test_cpls_beyond_the_deepest_bucket_are_skipped() -> None:
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=5, interval=10.0)
    explore = make(table_with(at_cpl(0, 1), at_cpl(2, 1)), schedule)
    seen = []
    for _ in range(10):
        states = drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
        if isinstance(states[-1], ExploreIdle):
            break
        walk = [st for st in states if isinstance(st, ExploreFindCloser)]
        seen.append(walk[0].cpl)
        for st in walk:
            end = explore.advance(ExploreFindCloserFailure(st.node), 0.0)
        assert isinstance(end, ExploreQueryFinished)
    assert seen == [0, 1, 2]


def test_late_answers_after_a_walk_are_ignored() -> None:
    seed = at_cpl(0, 1)
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=0, interval=10.0)
    explore = make(table_with(seed), schedule)
    explore.advance(ExplorePoll(), 0.0)
    state = explore.advance(ExploreFindCloserResponse(seed), 1.0)
    assert isinstance(state, ExploreQueryFinished) and state.reason is FinishReason.DONE
    late = explore.advance(ExploreFindCloserResponse(seed, (at_cpl(0, 2),)), 2.0)
    assert isinstance(late, ExploreIdle)


# -- random keys at a CPL --------------------------------------------------------------------


def test_random_digest_with_cpl_is_exact_for_every_cpl() -> None:
    rng = random.Random(5)
    for cpl in range(256):
        key = random_digest_with_cpl(SELF, cpl, rng)
        assert SELF.common_prefix_length(key) == cpl and key.preimage == b""
    with pytest.raises(ValueError):
        random_digest_with_cpl(SELF, 256, rng)


def test_random_key_with_cpl_has_a_real_preimage() -> None:
    rng = random.Random(6)
    for cpl in range(11):
        key = random_key_with_cpl(SELF, cpl, rng)
        assert len(key.preimage) == 32
        assert hashlib.sha256(key.preimage).digest() == key.digest
        assert SELF.common_prefix_length(key) == cpl
    for bad in (-1, MAX_PREIMAGE_CPL + 1):
        with pytest.raises(ValueError):
            random_key_with_cpl(SELF, bad, rng)
    a = preimage_targets(SELF, random.Random(1))(3)
    assert a == preimage_targets(SELF, random.Random(1))(3)


# -- walks sized to the job ------------------------------------------------------------------


def test_full_buckets_are_not_walked() -> None:
    table = RoutingTable(SELF, bucket_size=2)
    for key in (at_cpl(0, 1), at_cpl(0, 2), at_cpl(1, 1)):
        table.add(key, 0.0)
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=1, interval=10.0)
    explore = make(table, schedule)
    state = explore.advance(ExplorePoll(), 0.0)
    # Bucket 0 is full (no seat a walk could fill): only bucket 1 is walked.
    assert isinstance(state, ExploreFindCloser) and state.cpl == 1
    assert schedule.due_at(0) == 0.0 + schedule.interval_for(0)


def test_a_walk_stops_once_its_bucket_is_full() -> None:
    table = RoutingTable(SELF, bucket_size=2)
    table.add(at_cpl(0, 1), 0.0)
    explore = make(table, NoWaitExploreSchedule(max_cpl=0))
    states = drain(explore, explore.advance(ExplorePoll(), 0.0), 0.0)
    first = states[0]
    assert isinstance(first, ExploreFindCloser) and first.cpl == 0
    new = [at_cpl(0, s) for s in range(10, 20)]
    table.add(new[0], 0.5)  # the bucket filled up (the routing behaviour admitted a node)
    answer = ExploreFindCloserResponse(first.node, tuple(new))
    states = drain(explore, explore.advance(answer, 1.0), 1.0)
    finished = states[-1]
    assert isinstance(finished, ExploreQueryFinished) and finished.reason is FinishReason.DONE
    assert not any(isinstance(st, ExploreFindCloser) for st in states)


def test_self_lookup_coverage_refreshes_deep_buckets_and_makes_shallow_ones_due() -> None:
    table = table_with(*[at_cpl(c, 1) for c in range(6)])
    schedule = DynamicExploreSchedule(random.Random(0), max_cpl=5, start=100.0, interval=10.0)
    explore = make(table, schedule)
    state = explore.advance(ExploreCovered(3), 50.0)
    # Shallow buckets are due at once (the shallowest first), deep ones are refreshed.
    assert isinstance(state, ExploreFindCloser) and state.cpl == 0
    for cpl in (1, 2):
        assert schedule.due_at(cpl) == 50.0
    for cpl in range(3, 6):
        assert schedule.due_at(cpl) == 50.0 + schedule.interval_for(cpl)


def test_a_dropped_request_is_asked_again_not_failed() -> None:
    seed = at_cpl(0, 1)
    cfg = ExploreConfig(request_concurrency=1)
    explore = make(table_with(seed), NoWaitExploreSchedule(max_cpl=0), cfg)
    first = explore.advance(ExplorePoll(), 0.0)
    assert isinstance(first, ExploreFindCloser) and first.node == seed
    # Our own admission control refused it: the walk must not treat the seed as failed.
    state = explore.advance(ExploreFindCloserDropped(seed), 0.0)
    assert not isinstance(state, ExploreQueryFinished)
    due = explore.next_due()
    assert due is not None and due > 0.0
    states = drain(explore, explore.advance(ExplorePoll(), due), due)
    assert any(isinstance(st, ExploreFindCloser) and st.node == seed for st in states)
