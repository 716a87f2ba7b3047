"""Include: candidate queue, concurrency, check timeouts and drops (it never writes the table)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from zikade_py.core.key import Key
from zikade_py.core.routing.cpl import random_digest_with_cpl
from zikade_py.core.routing.include import (
    Include,
    IncludeAddCandidates,
    IncludeCancelCheck,
    IncludeCheckDropped,
    IncludeCheckFailure,
    IncludeCheckSuccess,
    IncludeConfig,
    IncludeConnectivityCheck,
    IncludeIdle,
    IncludePoll,
    IncludeState,
    IncludeWaitingAtCapacity,
    IncludeWaitingFull,
    IncludeWaitingWithCapacity,
)
from zikade_py.core.routing_table import RoutingTable
from zikade_py.core.trace import NO_TRACE, Trace

SELF = Key.from_preimage(b"self")


def candidate(node: Key, *, trace: Trace = NO_TRACE) -> IncludeAddCandidates:
    """One candidate (the machine takes the nodes of one answer at once)."""
    return IncludeAddCandidates((node,), trace=trace)


def node(i: int, cpl: int = 0) -> Key:
    return random_digest_with_cpl(SELF, cpl, random.Random(i))


def make(**cfg: float) -> tuple[Include, RoutingTable]:
    table = RoutingTable(SELF)
    return Include(table, IncludeConfig(**cfg)), table  # type: ignore[arg-type]


def drain(inc: Include, now: float, limit: int = 50) -> list[IncludeState]:
    """Poll until a waiting or idle state (bounded); return every state seen."""
    out: list[IncludeState] = []
    for _ in range(limit):
        state = inc.advance(IncludePoll(), now)
        out.append(state)
        if not isinstance(state, IncludeConnectivityCheck | IncludeCancelCheck):
            return out
    raise AssertionError("include did not settle")


def test_empty_table_first_candidate_is_checked_and_the_answer_ends_the_check() -> None:
    inc, table = make()
    a = node(1)
    state = inc.advance(candidate(a), 0.0)
    assert state == IncludeConnectivityCheck(a, a, trace=Trace(deadline=10.0))
    assert isinstance(inc.advance(IncludePoll(), 0.0), IncludeWaitingWithCapacity)
    assert inc.next_due() == 10.0
    state = inc.advance(IncludeCheckSuccess(a, closer_count=3), 1.0)
    assert isinstance(state, IncludeIdle)
    # Admission is the routing behaviour's (the one writer of the table).
    assert not table.contains(a)
    assert inc.next_due() is None
    assert inc.stats.answered == 1 and inc.stats.checks == 1


def test_one_event_offers_every_node_of_an_answer() -> None:
    inc, _ = make(concurrency=1)
    a, b, c = node(0), node(1), node(2)
    state = inc.advance(IncludeAddCandidates((a, b, c, a)), 0.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == a
    assert inc.queued() == [b, c] and inc.stats.ignored == 1


def test_dropped_check_requeues_the_candidate_after_a_delay() -> None:
    inc, _ = make(concurrency=1, drop_retry_delay=2.0)
    a, b = node(0), node(1)
    inc.advance(IncludeAddCandidates((a, b)), 0.0)
    # Our own admission control refused a's check: no verdict on a, b goes next.
    state = inc.advance(IncludeCheckDropped(a), 1.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == b
    assert inc.retrying() == [a] and inc.stats.failures == 0
    assert inc.next_due() == 3.0
    inc.advance(IncludeCheckFailure(b), 2.0)
    state = inc.advance(IncludePoll(), 3.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == a
    assert inc.stats.retries == 1


def test_drop_retries_are_bounded() -> None:
    inc, _ = make(concurrency=1, drop_retry_delay=1.0, max_drop_retries=2)
    a = node(0)
    inc.advance(candidate(a), 0.0)
    now = 0.0
    for _ in range(2):
        assert isinstance(inc.advance(IncludeCheckDropped(a), now), IncludeWaitingWithCapacity)
        now += 1.0
        state = inc.advance(IncludePoll(), now)
        assert isinstance(state, IncludeConnectivityCheck) and state.node == a
    # The third refusal: forgotten, so a saturated network cannot make it spin.
    assert isinstance(inc.advance(IncludeCheckDropped(a), now), IncludeIdle)
    assert inc.stats.abandoned == 1 and inc.next_due() is None
    # Heard of again later, it is a fresh candidate.
    assert isinstance(inc.advance(candidate(a), now + 5), IncludeConnectivityCheck)


def test_check_carries_candidate_span_context_and_its_own_deadline() -> None:
    inc, _ = make(check_timeout=4.0)
    ctx = SpanContext(trace_id=7, span_id=9, is_remote=False, trace_flags=TraceFlags(1))
    state = inc.advance(candidate(node(1), trace=Trace(ctx, deadline=1.0)), 2.0)
    assert isinstance(state, IncludeConnectivityCheck)
    assert state.span_context == ctx and state.deadline == 6.0
    assert state.target == state.node


def test_concurrency_cap() -> None:
    inc, _ = make(concurrency=3)
    states = [inc.advance(candidate(node(i)), 0.0) for i in range(5)]
    checks = [s for s in states if isinstance(s, IncludeConnectivityCheck)]
    assert [c.node for c in checks] == [node(0), node(1), node(2)]
    assert all(isinstance(s, IncludeWaitingAtCapacity) for s in states[3:])
    assert inc.queued() == [node(3), node(4)]
    # A failure frees a slot: the next queued candidate is checked, in FIFO order.
    state = inc.advance(IncludeCheckFailure(node(1), "refused"), 1.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == node(3)
    assert isinstance(inc.advance(IncludePoll(), 1.0), IncludeWaitingAtCapacity)


def test_queue_capacity_drops_and_reports_full() -> None:
    inc, _ = make(concurrency=1, queue_capacity=2)
    assert isinstance(inc.advance(candidate(node(0)), 0.0), IncludeConnectivityCheck)
    assert isinstance(inc.advance(candidate(node(1)), 0.0), IncludeWaitingAtCapacity)
    assert isinstance(inc.advance(candidate(node(2)), 0.0), IncludeWaitingFull)
    assert isinstance(inc.advance(candidate(node(3)), 0.0), IncludeWaitingFull)
    assert inc.stats.dropped == 1
    assert inc.queued() == [node(1), node(2)]


def test_duplicates_self_and_present_nodes_are_ignored() -> None:
    inc, table = make(concurrency=1)
    a, b, c = node(0), node(1), node(2)
    table.add(c, 0.0)
    inc.advance(candidate(a), 0.0)  # being checked
    inc.advance(candidate(b), 0.0)  # queued
    for dup in (a, b, c, SELF):
        assert isinstance(inc.advance(candidate(dup), 0.0), IncludeWaitingAtCapacity)
    assert inc.queued() == [b] and inc.checking() == [a]
    assert inc.stats.ignored == 4 and inc.stats.queued == 2


def test_check_timeout_at_capacity_cancels_fails_and_moves_on() -> None:
    inc, table = make(concurrency=1, check_timeout=10.0)
    a, b = node(0), node(1)
    inc.advance(candidate(a), 0.0)
    inc.advance(candidate(b), 5.0)
    assert isinstance(inc.advance(IncludePoll(), 9.9), IncludeWaitingAtCapacity)
    assert inc.next_due() == 10.0
    states = drain(inc, 10.0)
    assert isinstance(states[0], IncludeCancelCheck) and states[0].node == a
    assert isinstance(states[1], IncludeConnectivityCheck) and states[1].node == b
    assert states[1].deadline == 20.0
    assert isinstance(states[2], IncludeWaitingAtCapacity)
    assert inc.stats.timeouts == 1 and inc.stats.failures == 1
    # The late answer of the timed-out check is ignored.
    assert isinstance(inc.advance(IncludeCheckSuccess(a, 5), 11.0), IncludeWaitingAtCapacity)
    assert not table.contains(a)


def test_check_timeout_below_capacity() -> None:
    inc, table = make(concurrency=3, check_timeout=10.0)
    a = node(0)
    inc.advance(candidate(a), 0.0)
    assert isinstance(inc.advance(IncludePoll(), 3.0), IncludeWaitingWithCapacity)
    states = drain(inc, 12.0)
    assert [type(s) for s in states] == [IncludeCancelCheck, IncludeIdle]
    assert states[0].trace.deadline == 10.0
    assert inc.stats.timeouts == 1 and not table.contains(a) and inc.next_due() is None


def test_timeout_is_noticed_whatever_event_arrives() -> None:
    inc, _ = make(concurrency=3, check_timeout=10.0)
    a, b = node(0), node(1)
    inc.advance(candidate(a), 0.0)
    state = inc.advance(candidate(b), 15.0)
    assert isinstance(state, IncludeCancelCheck) and state.node == a


def test_answer_without_closer_nodes_counts_as_failed_once_the_table_holds_k() -> None:
    table = RoutingTable(SELF, bucket_size=1)
    inc = Include(table)
    a = node(0, cpl=3)
    table.add(node(1), 0.0)
    inc.advance(candidate(a), 0.0)
    assert isinstance(inc.advance(IncludeCheckSuccess(a, closer_count=0), 1.0), IncludeIdle)
    assert inc.stats.failures == 1 and inc.stats.answered == 0


def test_unknown_and_duplicate_answers_are_ignored() -> None:
    inc, table = make()
    a, stranger = node(0), node(1)
    inc.advance(candidate(a), 0.0)
    assert isinstance(
        inc.advance(IncludeCheckSuccess(stranger, 1), 1.0), IncludeWaitingWithCapacity
    )
    assert isinstance(inc.advance(IncludeCheckSuccess(a, 1), 1.0), IncludeIdle)
    assert isinstance(inc.advance(IncludeCheckSuccess(a, 1), 1.0), IncludeIdle)
    assert not table.contains(stranger) and inc.stats.answered == 1


def test_full_bucket_costs_no_check() -> None:
    table = RoutingTable(SELF, bucket_size=1, replacement_capacity=1)
    inc = Include(table)
    seated, cand = node(0), node(1)
    table.add(seated, 0.0)
    # No free seat: a check would only feed the replacement cache, which nodes that
    # answer our own requests feed for free. No FIND_NODE is spent on it.
    assert isinstance(inc.advance(candidate(cand), 0.0), IncludeIdle)
    assert inc.stats.ignored == 1 and inc.stats.checks == 0


def test_table_change_while_queued_skips_the_check() -> None:
    inc, table = make(concurrency=1)
    a, b = node(0), node(1)
    inc.advance(candidate(a), 0.0)
    inc.advance(candidate(b), 0.0)
    table.add(b, 0.5)  # someone else added it meanwhile
    inc.advance(IncludeCheckFailure(a), 1.0)
    assert inc.checking() == [] and inc.queued() == []


def test_candidate_we_await_an_answer_from_gets_no_check() -> None:
    # A request of ours to the candidate is in flight (a walk's, a lookup's): its answer
    # is filed by the behaviour's one admission rule, so a check would be a second
    # FIND_NODE to the same node for the same verdict.
    table = RoutingTable(SELF)
    busy, free = node(0), node(1)
    inc = Include(table, asked=lambda n: n == busy)
    states = [inc.advance(candidate(busy), 0.0), *drain(inc, 0.0)]
    assert not any(isinstance(s, IncludeConnectivityCheck) for s in states)
    assert inc.stats.answering == 1 and inc.stats.checks == 0 and inc.queued() == []
    state = inc.advance(candidate(free), 0.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == free


def test_a_candidate_waits_while_checks_in_flight_could_take_its_buckets_last_seats() -> None:
    # Bucket 0 has one free seat (k=2, one seated) and a check for it is in flight: a
    # second check now would, if the first succeeds, only feed the replacement cache.
    table = RoutingTable(SELF, bucket_size=2)
    table.add(node(0), 0.0)
    inc = Include(table)
    first, second, other = node(1), node(2), node(3, cpl=1)
    check = inc.advance(candidate(first), 0.0)
    assert isinstance(check, IncludeConnectivityCheck) and check.node == first
    assert isinstance(inc.advance(candidate(second), 0.0), IncludeWaitingWithCapacity)
    assert inc.stats.parked == 1 and inc.queued() == [second]
    # Another bucket's candidate is not held up.
    state = inc.advance(candidate(other), 0.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == other
    # The first check fails: its seat is free again, the parked candidate is checked.
    state = inc.advance(IncludeCheckFailure(first), 1.0)
    assert isinstance(state, IncludeConnectivityCheck) and state.node == second


def test_a_parked_candidate_is_dropped_once_the_check_in_flight_took_the_seat() -> None:
    table = RoutingTable(SELF, bucket_size=2)
    table.add(node(0), 0.0)
    inc = Include(table)
    first, second = node(1), node(2)
    inc.advance(candidate(first), 0.0)
    inc.advance(candidate(second), 0.0)
    table.add(first, 1.0)  # the behaviour admitted it on its answer
    assert isinstance(inc.advance(IncludeCheckSuccess(first, 3), 1.0), IncludeIdle)
    assert inc.stats.checks == 1 and inc.queued() == []


def test_parked_candidates_count_against_the_queue_capacity() -> None:
    # A remote peer can name any number of candidates for one bucket while a check for
    # its last seat is in flight (a silent node: up to check_timeout): parked ones are
    # queued ones, so together they stay within queue_capacity.
    table = RoutingTable(SELF, bucket_size=2)
    table.add(node(0), 0.0)
    inc = Include(table, IncludeConfig(queue_capacity=4))
    inc.advance(candidate(node(1)), 0.0)  # the check in flight
    for i in range(2, 50):
        inc.advance(candidate(node(i)), 0.0)
    assert len(inc.queued()) == 4 and inc.stats.parked == 4
    assert inc.stats.dropped == 48 - 4


def test_config_validation() -> None:
    for bad in (
        {"queue_capacity": 0}, {"concurrency": 0}, {"check_timeout": 0.0},
        {"drop_retry_delay": 0.0}, {"max_drop_retries": -1},
    ):
        with pytest.raises(ValueError):
            IncludeConfig(**bad).validate()
