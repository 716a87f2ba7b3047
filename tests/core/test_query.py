"""The Query state machine, driven with explicit time (no sleeping)."""

from __future__ import annotations

import pytest

from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.query import (
    NodeState,
    Query,
    QueryCancel,
    QueryCancelRequest,
    QueryConfig,
    QueryFindCloser,
    QueryFinished,
    QueryNodeDropped,
    QueryNodeFailure,
    QueryNodeResponse,
    QueryPoll,
    QuerySendMessage,
    QueryState,
    QueryWaitingAtCapacity,
    QueryWaitingWithCapacity,
)
from zikade_py.core.trace import Trace


def k(i: int) -> Key:
    """A key whose top byte is ``i``: distances to k(0) order as the integers do."""
    return Key.from_int(i << 248, preimage=bytes([i]))


SELF = k(0xFF)
TARGET = k(0)


def drain(query: Query, now: float) -> list[QueryState]:
    """Poll until the query wants nothing new (a waiting or finished state)."""
    states: list[QueryState] = []
    for _ in range(1000):
        state = query.advance(QueryPoll(), now)
        states.append(state)
        if isinstance(state, QueryWaitingAtCapacity | QueryWaitingWithCapacity | QueryFinished):
            return states
    raise AssertionError("query never settled")


def requests(states: list[QueryState]) -> list[Key]:
    return [s.node for s in states if isinstance(s, QueryFindCloser)]


def test_keeps_alpha_requests_in_flight_while_candidates_remain() -> None:
    seeds = [k(i) for i in range(1, 31)]
    q = Query("q", SELF, TARGET, seeds, QueryConfig(concurrency=10, num_results=20))
    states = drain(q, 0.0)
    assert requests(states) == seeds[:10]  # closest first, exactly α
    assert isinstance(states[-1], QueryWaitingAtCapacity)
    assert q.in_flight == 10
    # each answer frees a slot that is refilled at once: α stays in flight
    for i, node in enumerate(seeds[:5]):
        state = q.advance(QueryNodeResponse(node), 1.0)
        assert isinstance(state, QueryFindCloser)
        assert state.node == seeds[10 + i]
        assert q.in_flight == 10
        assert isinstance(q.advance(QueryPoll(), 1.0), QueryWaitingAtCapacity)


def test_asks_only_the_k_closest_and_finishes_when_they_answered() -> None:
    seeds = [k(i) for i in range(1, 8)]
    q = Query("q", SELF, TARGET, seeds, QueryConfig(concurrency=5, num_results=3))
    # α is 5, but only the 3 closest live candidates may be asked while they are pending
    assert requests(drain(q, 0.0)) == seeds[:3]
    for node in seeds[:2]:
        q.advance(QueryNodeResponse(node), 1.0)
        drain(q, 1.0)
    state = q.advance(QueryNodeResponse(seeds[2]), 1.0)
    assert isinstance(state, QueryFinished)
    assert state.reason is FinishReason.DONE
    assert state.closest == tuple(seeds[:3])
    assert state.stats.requests == 3
    assert q.in_flight == 0
    # terminal: repeated, never a second different end
    assert q.advance(QueryPoll(), 2.0) is state
    assert q.advance(QueryNodeResponse(seeds[4]), 2.0) is state


def test_closer_nodes_are_followed_and_self_is_skipped() -> None:
    q = Query("q", SELF, TARGET, [k(9)], QueryConfig(concurrency=3, num_results=2))
    assert requests(drain(q, 0.0)) == [k(9)]
    state = q.advance(QueryNodeResponse(k(9), (k(5), SELF, k(3))), 0.5)
    assert isinstance(state, QueryFindCloser) and state.node == k(3)
    assert requests(drain(q, 0.5)) == [k(5)]
    assert q.node_state(SELF) is None


def test_hard_request_timeout_fails_the_node_and_moves_on() -> None:
    cfg = QueryConfig(concurrency=3, num_results=1, request_timeout=10.0)
    q = Query("q", SELF, TARGET, [k(1)], cfg)
    drain(q, 0.0)
    assert q.next_due() == 10.0
    state = q.advance(QueryPoll(), 9.9)
    assert isinstance(state, QueryWaitingWithCapacity)
    state = q.advance(QueryPoll(), 10.0)
    assert q.node_state(k(1)) is NodeState.FAILED
    # the only node timed out: the request is cancelled, then the query fails
    assert isinstance(state, QueryCancelRequest) and state.node == k(1)
    end = q.advance(QueryPoll(), 10.0)
    assert isinstance(end, QueryFinished) and end.reason is FinishReason.FAILED


def test_request_timeout_at_capacity_makes_room() -> None:
    cfg = QueryConfig(concurrency=2, num_results=5, request_timeout=5.0, adaptive_timeout=False)
    seeds = [k(i) for i in range(1, 5)]
    q = Query("q", SELF, TARGET, seeds, cfg)
    assert isinstance(drain(q, 0.0)[-1], QueryWaitingAtCapacity)
    state = q.advance(QueryPoll(), 5.0)
    assert isinstance(state, QueryFindCloser) and state.node == seeds[2]
    assert q.node_state(seeds[0]) is NodeState.FAILED
    assert q.stats.failure == 2


def test_late_response_from_unresponsive_node_counts() -> None:
    cfg = QueryConfig(concurrency=2, num_results=1, request_timeout=1.0)
    q = Query("q", SELF, TARGET, [k(1), k(2)], cfg)
    drain(q, 0.0)
    q.advance(QueryPoll(), 1.5)  # both unresponsive now; cancels start
    q2 = Query("q2", SELF, TARGET, [k(1), k(2), k(3)], QueryConfig(concurrency=2, num_results=1))
    drain(q2, 0.0)
    q2.advance(QueryPoll(), 10.0)  # k1, k2 unresponsive, k3 asked
    state = q2.advance(QueryNodeResponse(k(1)), 11.0)  # late, but an answer
    assert q2.node_state(k(1)) is NodeState.SUCCEEDED
    while isinstance(state, QueryCancelRequest):
        state = q2.advance(QueryPoll(), 11.0)
    assert isinstance(state, QueryFinished) and state.closest == (k(1),)


def test_duplicate_and_unknown_responses_are_ignored() -> None:
    q = Query("q", SELF, TARGET, [k(1), k(2)], QueryConfig(concurrency=2, num_results=2))
    drain(q, 0.0)
    q.advance(QueryNodeResponse(k(1), (k(3),)), 1.0)
    drain(q, 1.0)
    before = q.stats
    q.advance(QueryNodeResponse(k(1), (k(4),)), 1.0)  # duplicate
    q.advance(QueryNodeResponse(k(7), (k(5),)), 1.0)  # never asked
    assert q.stats.success == before.success
    assert q.node_state(k(4)) is None and q.node_state(k(5)) is None


def test_failed_nodes_are_skipped() -> None:
    q = Query("q", SELF, TARGET, [k(1), k(2), k(3)], QueryConfig(concurrency=3, num_results=2))
    drain(q, 0.0)
    q.advance(QueryNodeFailure(k(1), "reset"), 1.0)
    q.advance(QueryNodeResponse(k(2)), 1.0)
    state = q.advance(QueryNodeResponse(k(3)), 1.0)
    assert isinstance(state, QueryFinished)
    assert state.closest == (k(2), k(3))
    assert state.stats.failure == 1 and state.stats.success == 2


def test_empty_seeds_fail_at_once() -> None:
    q = Query("q", SELF, TARGET, [], QueryConfig())
    state = q.advance(QueryPoll(), 0.0)
    assert isinstance(state, QueryFinished)
    assert state.reason is FinishReason.FAILED and state.stats.exhausted


def test_exhausted_with_answers_is_done() -> None:
    q = Query("q", SELF, TARGET, [k(1)], QueryConfig(num_results=20))
    drain(q, 0.0)
    state = q.advance(QueryNodeResponse(k(1)), 1.0)
    assert isinstance(state, QueryFinished)
    assert state.reason is FinishReason.DONE and state.closest == (k(1),)


def test_cancel_emits_cancel_for_every_request_in_flight_then_one_finish() -> None:
    seeds = [k(i) for i in range(1, 20)]
    q = Query("q", SELF, TARGET, seeds, QueryConfig(concurrency=4, num_results=20))
    drain(q, 0.0)
    q.advance(QueryNodeResponse(seeds[0]), 0.1)
    drain(q, 0.1)
    in_flight = {s.value for s in seeds[1:5]}
    assert q.in_flight == 4
    state = q.advance(QueryCancel(), 0.2)
    cancelled = set()
    while isinstance(state, QueryCancelRequest):
        cancelled.add(state.node.value)
        state = q.advance(QueryPoll(), 0.2)
    assert cancelled == in_flight
    assert isinstance(state, QueryFinished)
    assert state.reason is FinishReason.CANCELLED
    assert state.closest == (seeds[0],)  # partial result kept
    assert q.next_due() is None


def test_query_deadline_ends_with_timeout_and_partial_results() -> None:
    trace = Trace(deadline=3.0)
    seeds = [k(i) for i in range(1, 6)]
    q = Query("q", SELF, TARGET, seeds, QueryConfig(concurrency=2), trace=trace)
    first = drain(q, 0.0)
    assert all(s.trace.deadline == 3.0 for s in first if isinstance(s, QueryFindCloser))
    q.advance(QueryNodeResponse(seeds[0]), 1.0)
    drain(q, 1.0)
    assert q.next_due() == 3.0
    state = q.advance(QueryPoll(), 3.0)
    while isinstance(state, QueryCancelRequest):
        state = q.advance(QueryPoll(), 3.0)
    assert isinstance(state, QueryFinished)
    assert state.reason is FinishReason.TIMEOUT
    assert state.closest == (seeds[0],)


def test_request_trace_copies_span_and_takes_earlier_deadline() -> None:
    q = Query("q", SELF, TARGET, [k(1)], QueryConfig(request_timeout=10.0),
              trace=Trace(deadline=100.0))
    state = q.advance(QueryPoll(), 5.0)
    assert isinstance(state, QueryFindCloser)
    assert state.trace.deadline == 15.0
    assert state.trace.span_context == q.trace.span_context


def test_message_query_sends_its_message() -> None:
    q = Query("q", SELF, TARGET, [k(1)], QueryConfig(), message="GET_PROVIDERS")
    state = q.advance(QueryPoll(), 0.0)
    assert isinstance(state, QuerySendMessage) and state.message == "GET_PROVIDERS"


def test_max_closer_per_response_bounds_a_hostile_answer() -> None:
    cfg = QueryConfig(concurrency=1, num_results=50, max_closer_per_response=3)
    q = Query("q", SELF, TARGET, [k(200)], cfg)
    drain(q, 0.0)
    q.advance(QueryNodeResponse(k(200), tuple(k(i) for i in range(1, 100))), 1.0)
    known = [i for i in range(1, 100) if q.node_state(k(i)) is not None]
    assert known == [1, 2, 3]


@pytest.mark.parametrize(
    "cfg",
    [QueryConfig(concurrency=0), QueryConfig(num_results=0), QueryConfig(request_timeout=0)],
)
def test_invalid_config_is_refused(cfg: QueryConfig) -> None:
    with pytest.raises(ValueError):
        cfg.validate()


def test_never_finishes_past_a_closer_node_not_yet_asked() -> None:
    # α=1 in flight; an answer names a closer node while 2 farther ones already
    # answered: the query must ask the closer one before it may finish.
    cfg = QueryConfig(concurrency=1, num_results=2, adaptive_timeout=False)
    q = Query("q", SELF, TARGET, [k(10), k(11), k(12)], cfg)
    drain(q, 0.0)
    q.advance(QueryNodeResponse(k(10)), 0.1)
    q.advance(QueryNodeResponse(k(11), (k(1),)), 0.2)
    state = q.advance(QueryPoll(), 0.2)
    assert not isinstance(state, QueryFinished)
    assert q.node_state(k(1)) in (NodeState.WAITING, NodeState.NOT_CONTACTED)


def test_adaptive_wait_widens_the_walk_but_never_finishes_past_a_slow_node() -> None:
    cfg = QueryConfig(concurrency=3, num_results=3, request_timeout=10.0,
                      adaptive_factor=2.0, adaptive_floor=0.1, adaptive_min_samples=2)
    seeds = [k(i) for i in range(1, 7)]
    q = Query("q", SELF, TARGET, seeds, cfg)
    assert requests(drain(q, 0.0)) == seeds[:3]
    assert q.wait_timeout() == 10.0  # no answers yet: the hard limit
    q.advance(QueryNodeResponse(k(2)), 0.1)
    q.advance(QueryNodeResponse(k(3)), 0.1)
    assert isinstance(drain(q, 0.1)[-1], QueryWaitingWithCapacity)
    # two answers in 0.1 s: k(1) holds its slot until 2 × 0.1 = 0.2 s
    assert q.wait_timeout() == pytest.approx(0.2)
    assert q.next_due() == pytest.approx(0.2)
    state = q.advance(QueryPoll(), 0.2)
    assert q.node_state(k(1)) is NodeState.SLOW
    # slowness widens the walk by one: k(4) is asked in parallel
    assert isinstance(state, QueryFindCloser) and state.node == k(4)
    drain(q, 0.2)
    state = q.advance(QueryNodeResponse(k(4)), 0.3)
    # three answers, but k(1) is closer and still in flight: not done
    assert not isinstance(state, QueryFinished | QueryCancelRequest)
    assert q.next_due() == pytest.approx(10.0)  # k(1)'s hard timeout
    end = q.advance(QueryNodeResponse(k(1)), 2.0)  # slow, but it answered
    assert isinstance(end, QueryFinished) and end.reason is FinishReason.DONE
    assert end.closest == (k(1), k(2), k(3))


def test_a_silent_node_among_the_closest_is_waited_for_until_its_hard_timeout() -> None:
    cfg = QueryConfig(concurrency=3, num_results=3, request_timeout=10.0,
                      adaptive_factor=2.0, adaptive_floor=0.1, adaptive_min_samples=2)
    seeds = [k(i) for i in range(1, 7)]
    q = Query("q", SELF, TARGET, seeds, cfg)
    drain(q, 0.0)
    for node in (k(2), k(3)):
        q.advance(QueryNodeResponse(node), 0.1)
    drain(q, 0.2)
    q.advance(QueryNodeResponse(k(4)), 0.3)
    assert not q.finished
    state = q.advance(QueryPoll(), 10.0)
    assert q.node_state(k(1)) is NodeState.FAILED
    assert isinstance(state, QueryCancelRequest) and state.node == k(1)
    end = q.advance(QueryPoll(), 10.0)
    assert isinstance(end, QueryFinished) and end.reason is FinishReason.DONE
    assert end.closest == (k(2), k(3), k(4))


def test_a_slow_request_is_cancelled_once_it_cannot_be_in_the_result() -> None:
    cfg = QueryConfig(concurrency=2, num_results=2, request_timeout=10.0,
                      adaptive_factor=2.0, adaptive_floor=0.1, adaptive_min_samples=1)
    q = Query("q", SELF, TARGET, [k(5), k(6)], cfg)
    assert requests(drain(q, 0.0)) == [k(5), k(6)]
    assert requests([q.advance(QueryNodeResponse(k(5), (k(1), k(2))), 0.1)]) == [k(1)]
    drain(q, 0.1)
    state = q.advance(QueryPoll(), 0.2)  # k(6) slow: the walk widens to k(2)
    assert q.node_state(k(6)) is NodeState.SLOW
    assert isinstance(state, QueryFindCloser) and state.node == k(2)
    drain(q, 0.2)
    # k(2) and k(5) answered: k(6) is farther than two answers and can never be in the
    # result, so its request is cancelled now, while k(1) is still awaited
    state = q.advance(QueryNodeResponse(k(2)), 0.25)
    assert isinstance(state, QueryCancelRequest) and state.node == k(6)
    assert q.node_state(k(6)) is NodeState.SKIPPED
    assert not isinstance(q.advance(QueryPoll(), 0.25), QueryFinished)
    end = q.advance(QueryNodeResponse(k(1)), 0.4)
    assert isinstance(end, QueryFinished) and end.closest == (k(1), k(2))


def test_a_dropped_request_is_retried_not_failed() -> None:
    cfg = QueryConfig(concurrency=2, num_results=2, drop_retry_delay=0.05)
    q = Query("q", SELF, TARGET, [k(1), k(2), k(3)], cfg)
    assert requests(drain(q, 0.0)) == [k(1), k(2)]
    state = q.advance(QueryNodeDropped(k(1)), 0.0)
    assert q.node_state(k(1)) is NodeState.NOT_CONTACTED
    assert not isinstance(state, QueryFindCloser)  # k(3) is beyond the k closest
    assert q.next_due() == pytest.approx(0.05)
    state = q.advance(QueryNodeResponse(k(2)), 0.01)
    assert not isinstance(state, QueryFinished)  # never past the closer k(1)
    state = q.advance(QueryPoll(), 0.05)
    assert isinstance(state, QueryFindCloser) and state.node == k(1)
    end = q.advance(QueryNodeResponse(k(1)), 0.1)
    assert isinstance(end, QueryFinished) and end.closest == (k(1), k(2))
    assert end.stats.requests == 2 and end.stats.failure == 0


def test_repeated_drops_back_off() -> None:
    cfg = QueryConfig(concurrency=1, num_results=1, drop_retry_delay=0.05)
    q = Query("q", SELF, TARGET, [k(1)], cfg)
    now = 0.0
    delays = []
    for _ in range(4):
        state = q.advance(QueryPoll(), now)
        assert isinstance(state, QueryFindCloser)
        q.advance(QueryNodeDropped(k(1)), now)
        due = q.next_due()
        assert due is not None
        delays.append(round(due - now, 3))
        now = due
    assert delays == [0.05, 0.1, 0.2, 0.4]


def test_next_due_has_no_side_effects() -> None:
    cfg = QueryConfig(concurrency=3, num_results=3, adaptive_min_samples=1)
    q = Query("q", SELF, TARGET, [k(i) for i in range(1, 5)], cfg)
    drain(q, 0.0)
    q.advance(QueryNodeResponse(k(1)), 0.1)
    q.advance(QueryNodeResponse(k(2)), 0.1)
    before = (list(q._waiting), list(q._slow), q.stats)
    first = q.next_due()
    assert q.next_due() == first
    assert (list(q._waiting), list(q._slow), q.stats) == before


def test_adaptive_wait_never_exceeds_the_request_timeout_and_has_a_floor() -> None:
    cfg = QueryConfig(concurrency=5, request_timeout=2.0, adaptive_floor=1.0)
    q = Query("q", SELF, TARGET, [k(i) for i in range(1, 6)], cfg)
    drain(q, 0.0)
    for i in (2, 3, 4):
        q.advance(QueryNodeResponse(k(i)), 0.01)
    assert q.wait_timeout() == 1.0  # 3 × 0.01 s is below the floor
    q2 = Query("q2", SELF, TARGET, [k(i) for i in range(1, 6)], cfg)
    drain(q2, 0.0)
    for i in (2, 3, 4):
        q2.advance(QueryNodeResponse(k(i)), 1.9)
    assert q2.wait_timeout() == 2.0  # 3 × 1.9 s is capped by the hard limit
