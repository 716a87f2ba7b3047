"""The QueryPool state machine with explicit time."""

from __future__ import annotations

import pytest

from zikade_py.core.broadcast import FollowUp, Static
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.pool import (
    DuplicateQueryError,
    PoolAddBroadcast,
    PoolAddQuery,
    PoolBroadcastFinished,
    PoolBroadcastStored,
    PoolCancelRequest,
    PoolConfig,
    PoolFindCloser,
    PoolIdle,
    PoolNodeDropped,
    PoolNodeFailure,
    PoolNodeResponse,
    PoolPoll,
    PoolQueryFinished,
    PoolSendMessage,
    PoolState,
    PoolStopQuery,
    PoolWaitingAtCapacity,
    PoolWaitingWithCapacity,
    QueryPool,
)
from zikade_py.core.query import QueryConfig
from zikade_py.core.trace import Trace


def k(i: int) -> Key:
    return Key.from_int(i << 248, preimage=bytes([i]))


SELF = k(0xFF)


def settle(pool: QueryPool, now: float, first: PoolState | None = None) -> list[PoolState]:
    states: list[PoolState] = [] if first is None else [first]
    if first is not None and isinstance(
        first, PoolWaitingAtCapacity | PoolWaitingWithCapacity | PoolIdle
    ):
        return states
    for _ in range(1000):
        state = pool.advance(PoolPoll(), now)
        states.append(state)
        if isinstance(state, PoolWaitingAtCapacity | PoolWaitingWithCapacity | PoolIdle):
            return states
    raise AssertionError("pool never settled")


def test_idle_pool() -> None:
    pool = QueryPool(SELF)
    assert isinstance(pool.advance(PoolPoll(), 0.0), PoolIdle)
    assert pool.next_due() is None


def test_runs_at_most_max_queries_and_prefers_older_ones() -> None:
    cfg = PoolConfig(max_queries=2, query=QueryConfig(concurrency=1))
    pool = QueryPool(SELF, cfg)
    states: list[PoolState] = []
    for q in ("a", "b", "c"):
        states.append(pool.advance(PoolAddQuery(q, k(0), (k(1), k(2))), 0.0))
    states += settle(pool, 0.0)
    asked = [(s.query_id, s.node) for s in states if isinstance(s, PoolFindCloser)]
    # a and b got one request each (concurrency 1); c waits its turn
    assert [q for q, _ in asked] == ["a", "b"]
    assert isinstance(states[-1], PoolWaitingAtCapacity)
    # a finishes: c starts
    state = pool.advance(PoolNodeResponse("a", k(1)), 1.0)
    assert isinstance(state, PoolFindCloser) and state.query_id == "a" and state.node == k(2)
    settle(pool, 1.0)
    state = pool.advance(PoolNodeResponse("a", k(2)), 1.1)
    assert isinstance(state, PoolQueryFinished) and state.query_id == "a"
    more = settle(pool, 1.1)
    assert [s.query_id for s in more if isinstance(s, PoolFindCloser)] == ["c"]


def test_query_timeout_is_reported_as_a_terminal_state() -> None:
    cfg = PoolConfig(query_timeout=30.0, query=QueryConfig(request_timeout=100.0))
    pool = QueryPool(SELF, cfg)
    pool.advance(PoolAddQuery("q", k(0), (k(1), k(2))), 0.0)
    settle(pool, 0.0)
    assert pool.next_due() == 30.0
    state = pool.advance(PoolPoll(), 30.0)
    cancelled = []
    while isinstance(state, PoolCancelRequest):
        cancelled.append(state.node)
        state = pool.advance(PoolPoll(), 30.0)
    assert {c.value for c in cancelled} == {k(1).value, k(2).value}
    assert isinstance(state, PoolQueryFinished) and state.reason is FinishReason.TIMEOUT
    assert "q" not in pool
    assert isinstance(pool.advance(PoolPoll(), 31.0), PoolIdle)


def test_timeout_when_pool_below_capacity_and_with_capacity() -> None:
    cfg = PoolConfig(max_queries=4, query_timeout=5.0, query=QueryConfig(concurrency=3))
    pool = QueryPool(SELF, cfg)
    pool.advance(PoolAddQuery("q", k(0), (k(1),)), 0.0)
    states = settle(pool, 0.0)
    assert isinstance(states[-1], PoolWaitingWithCapacity)
    state = pool.advance(PoolPoll(), 5.0)
    assert isinstance(state, PoolCancelRequest)
    state = pool.advance(PoolPoll(), 5.0)
    assert isinstance(state, PoolQueryFinished) and state.reason is FinishReason.TIMEOUT


def test_stop_cancels_every_request_then_finishes_once() -> None:
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=3)))
    pool.advance(PoolAddQuery("q", k(0), (k(1), k(2), k(3), k(4))), 0.0)
    settle(pool, 0.0)
    state = pool.advance(PoolStopQuery("q"), 1.0)
    cancels = []
    while isinstance(state, PoolCancelRequest):
        cancels.append(state.node.value)
        state = pool.advance(PoolPoll(), 1.0)
    assert sorted(cancels) == sorted([k(1).value, k(2).value, k(3).value])
    assert isinstance(state, PoolQueryFinished) and state.reason is FinishReason.CANCELLED
    # a late answer and a second stop for the finished query change nothing
    assert isinstance(pool.advance(PoolNodeResponse("q", k(1)), 2.0), PoolIdle)
    assert isinstance(pool.advance(PoolStopQuery("q"), 2.0), PoolIdle)


def test_failures_and_responses_route_to_their_query() -> None:
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=1, num_results=1)))
    first = pool.advance(PoolAddQuery("a", k(0), (k(1), k(2))), 0.0)
    assert isinstance(first, PoolFindCloser) and first.node == k(1)
    second = pool.advance(PoolAddQuery("b", k(0), (k(3),)), 0.0)
    assert isinstance(second, PoolFindCloser) and second.node == k(3)
    settle(pool, 0.0)
    state = pool.advance(PoolNodeFailure("a", k(1), "refused"), 1.0)
    assert isinstance(state, PoolFindCloser) and (state.query_id, state.node) == ("a", k(2))
    state = pool.advance(PoolNodeResponse("b", k(3)), 1.0)
    assert isinstance(state, PoolQueryFinished) and state.query_id == "b"
    assert state.closest == (k(3),)


def test_num_results_is_honoured() -> None:
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=5, num_results=20)))
    pool.advance(PoolAddQuery("q", k(0), (k(1), k(2), k(3)), num_results=1), 0.0)
    settle(pool, 0.0)
    state = pool.advance(PoolNodeResponse("q", k(1)), 1.0)
    while isinstance(state, PoolCancelRequest):
        state = pool.advance(PoolPoll(), 1.0)
    assert isinstance(state, PoolQueryFinished) and state.closest == (k(1),)


def test_duplicate_query_id_is_a_local_error() -> None:
    pool = QueryPool(SELF)
    pool.advance(PoolAddQuery("q", k(0), (k(1),)), 0.0)
    with pytest.raises(DuplicateQueryError):
        pool.advance(PoolAddQuery("q", k(0), (k(1),)), 0.0)


def test_empty_table_query_fails_instead_of_hanging() -> None:
    pool = QueryPool(SELF)
    state = pool.advance(PoolAddQuery("q", k(0), ()), 0.0)
    assert isinstance(state, PoolQueryFinished) and state.reason is FinishReason.FAILED


def test_a_queued_query_times_out_and_next_due_never_names_a_time_poll_ignores() -> None:
    # The old pool counted the queued query's due times in next_due while its poll
    # never reached it: next_due stayed in the past and a driver spun on it.
    cfg = PoolConfig(max_queries=1, query_timeout=30.0, query=QueryConfig(request_timeout=5.0))
    pool = QueryPool(SELF, cfg)
    pool.advance(PoolAddQuery("a", k(0), (k(1),)), 0.0)
    settle(pool, 0.0)
    pool.advance(PoolAddQuery("b", k(0), (k(2),), trace=Trace(deadline=3.0)), 1.0)
    settle(pool, 1.0)
    assert pool.admitted == 1 and len(pool) == 2
    due = pool.next_due()
    assert due == 3.0  # b's caller deadline (a's request waits until 5.0)
    state = pool.advance(PoolPoll(), due)
    # b never sent anything: it just ends, with a timeout
    assert isinstance(state, PoolQueryFinished) and state.query_id == "b"
    assert state.reason is FinishReason.TIMEOUT and state.stats.requests == 0
    settle(pool, due)
    assert pool.next_due() == 5.0


def test_next_due_is_after_now_once_settled() -> None:
    cfg = PoolConfig(max_queries=2, query=QueryConfig(concurrency=1, request_timeout=5.0))
    pool = QueryPool(SELF, cfg)
    for i, q in enumerate("abcde"):
        pool.advance(PoolAddQuery(q, k(0), (k(i + 1),)), 0.0)
        settle(pool, 0.0)
    now = 0.0
    for _ in range(50):
        due = pool.next_due()
        if due is None:
            break
        assert due > now  # a settled pool never asks to be polled in the past
        now = due
        settle(pool, now)
    assert len(pool) == 0


def test_broadcasts_share_the_bound_and_the_timeout() -> None:
    cfg = PoolConfig(max_queries=1, query_timeout=20.0)
    pool = QueryPool(SELF, cfg)
    first = pool.advance(PoolAddQuery("q", k(0), (k(1),)), 0.0)
    assert isinstance(first, PoolFindCloser)
    settle(pool, 0.0)
    queued = pool.advance(PoolAddBroadcast("p", k(0), "PUT", (k(2),), Static), 0.0)
    assert isinstance(queued, PoolWaitingAtCapacity)  # no store while the query runs
    # the query ends: the broadcast is admitted and stores
    state = pool.advance(PoolNodeResponse("q", k(1)), 1.0)
    assert isinstance(state, PoolQueryFinished)
    states = settle(pool, 1.0)
    stores = [s for s in states if isinstance(s, PoolSendMessage)]
    assert [(s.node, s.store) for s in stores] == [(k(2), True)]


def test_a_broadcast_without_a_caller_deadline_is_bounded_by_the_query_timeout() -> None:
    pool = QueryPool(SELF, PoolConfig(query_timeout=20.0))
    pool.advance(PoolAddBroadcast("p", k(0), "PUT", (k(1), k(2)), FollowUp), 0.0)
    settle(pool, 0.0)
    assert pool.next_due() is not None and pool.next_due() <= 20.0  # type: ignore[operator]
    now = 0.0
    state = None
    for _ in range(20):
        due = pool.next_due()
        assert due is not None
        now = due
        state = pool.advance(PoolPoll(), now)
        while not isinstance(state, PoolWaitingAtCapacity | PoolWaitingWithCapacity | PoolIdle):
            if isinstance(state, PoolBroadcastFinished):
                break
            state = pool.advance(PoolPoll(), now)
        if isinstance(state, PoolBroadcastFinished):
            break
    assert isinstance(state, PoolBroadcastFinished)
    assert state.reason in (FinishReason.TIMEOUT, FinishReason.FAILED)
    assert now <= 20.0


def test_broadcast_answers_route_by_kind_and_stores_are_reported() -> None:
    pool = QueryPool(SELF)
    pool.advance(PoolAddBroadcast("p", k(0), "PUT", (k(1),), Static), 0.0)
    settle(pool, 0.0)
    state = pool.advance(PoolNodeResponse("p", k(1), store=True), 1.0)
    assert isinstance(state, PoolBroadcastStored) and state.stored == 1
    end = pool.advance(PoolPoll(), 1.0)
    assert isinstance(end, PoolBroadcastFinished) and end.contacted == (k(1),)


def test_an_answer_advances_only_its_own_query() -> None:
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=1)))
    for q in ("a", "b"):
        pool.advance(PoolAddQuery(q, k(0), (k(1), k(2))), 0.0)
        settle(pool, 0.0)
    b = pool.query("b")
    assert b is not None
    before = b.stats
    pool.advance(PoolNodeResponse("a", k(1)), 0.5)
    settle(pool, 0.5)
    assert b.stats == before


def test_a_dropped_request_is_asked_again() -> None:
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=1, drop_retry_delay=0.1)))
    first = pool.advance(PoolAddQuery("q", k(0), (k(1),)), 0.0)
    assert isinstance(first, PoolFindCloser)
    settle(pool, 0.0, pool.advance(PoolNodeDropped("q", k(1)), 0.0))
    assert pool.next_due() == 0.1
    again = pool.advance(PoolPoll(), 0.1)
    assert isinstance(again, PoolFindCloser) and again.node == k(1)


def test_events_derived_from_an_input_keep_its_trace() -> None:
    # The pool and the broadcast rebuild each answer as the machine's own event: that
    # event must carry the input's span context and deadline (the old pool dropped it).
    trace = Trace(deadline=99.0)
    seen: list[Trace] = []
    pool = QueryPool(SELF, PoolConfig(query=QueryConfig(concurrency=3)))
    pool.advance(PoolAddQuery("q", k(0), (k(1), k(2), k(3))), 0.0)
    pool.advance(PoolAddBroadcast("p", k(0), "PUT", (k(4),), FollowUp), 0.0)
    settle(pool, 0.0)
    query = pool.query("q")
    assert query is not None
    advance = query.advance

    def recording(event: object, now: float) -> object:
        seen.append(event.trace)  # type: ignore[attr-defined]
        return advance(event, now)  # type: ignore[arg-type]

    query.advance = recording  # type: ignore[method-assign]
    pool.advance(PoolNodeResponse("q", k(1), trace=trace), 1.0)
    pool.advance(PoolNodeFailure("q", k(2), "reset", trace=trace), 1.0)
    pool.advance(PoolNodeDropped("q", k(3), trace=trace), 1.0)
    assert seen[:3] == [trace, trace, trace]
