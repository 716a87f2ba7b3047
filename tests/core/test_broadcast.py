"""Broadcast state machines (FollowUp, Static, Optimistic) with explicit time."""

from __future__ import annotations

from zikade_py.core.broadcast import (
    BcastCancelRequest,
    BcastFindCloser,
    BcastFinished,
    BcastLookupDropped,
    BcastLookupFailure,
    BcastLookupResponse,
    BcastPoll,
    BcastState,
    BcastStop,
    BcastStored,
    BcastStoreDropped,
    BcastStoreFailure,
    BcastStoreRecord,
    BcastStoreSuccess,
    BcastWaiting,
    Broadcast,
    BroadcastConfig,
    FollowUp,
    Optimistic,
    Static,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.query import QueryConfig
from zikade_py.core.trace import Trace


def k(i: int) -> Key:
    return Key.from_int(i << 248, preimage=bytes([i]))


SELF = k(0xFF)
TARGET = k(0)
CFG = BroadcastConfig(num_replicas=3, store_concurrency=2, query=QueryConfig(concurrency=3))


def settle(b: Broadcast, now: float, first: BcastState | None = None) -> list[BcastState]:
    out: list[BcastState] = [] if first is None else [first]
    if isinstance(first, BcastWaiting | BcastFinished):
        return out
    for _ in range(500):
        state = b.advance(BcastPoll(), now)
        out.append(state)
        if isinstance(state, BcastWaiting | BcastFinished):
            return out
    raise AssertionError("broadcast never settled")


def stored(b: Broadcast, node: Key, now: float) -> BcastState:
    """Report a successful store: the broadcast says so first, then goes on."""
    state = b.advance(BcastStoreSuccess(node), now)
    assert isinstance(state, BcastStored) and state.node == node
    return b.advance(BcastPoll(), now)


def test_follow_up_looks_up_then_stores_to_the_closest() -> None:
    b = FollowUp("p", SELF, TARGET, "ADD_PROVIDER", [k(1), k(2), k(3), k(4)], CFG)
    states = settle(b, 0.0)
    asked = [s.node for s in states if isinstance(s, BcastFindCloser)]
    assert asked == [k(1), k(2), k(3)]
    assert not any(isinstance(s, BcastStoreRecord) for s in states)
    for node in asked[:2]:
        settle(b, 1.0, b.advance(BcastLookupResponse(node), 1.0))
    states = settle(b, 1.0, b.advance(BcastLookupResponse(k(3)), 1.0))
    stores = [s.node for s in states if isinstance(s, BcastStoreRecord)]
    assert stores == [k(1), k(2)]  # store concurrency 2
    assert all(s.message == "ADD_PROVIDER" for s in states if isinstance(s, BcastStoreRecord))
    states = settle(b, 2.0, stored(b, k(1), 2.0))
    assert [s.node for s in states if isinstance(s, BcastStoreRecord)] == [k(3)]
    settle(b, 2.0, b.advance(BcastStoreFailure(k(2), "reset"), 2.0))
    end = stored(b, k(3), 3.0)
    assert isinstance(end, BcastFinished)
    assert end.reason is FinishReason.DONE
    assert end.contacted == (k(1), k(3))
    assert end.errors == ((k(2), "reset"),)


def test_static_stores_to_seeds_only() -> None:
    b = Static("p", SELF, TARGET, "PUT", [k(5), SELF, k(6)], CFG)
    states = settle(b, 0.0)
    assert [s.node for s in states if isinstance(s, BcastStoreRecord)] == [k(5), k(6)]
    stored(b, k(5), 1.0)
    end = stored(b, k(6), 1.0)
    assert isinstance(end, BcastFinished) and end.contacted == (k(5), k(6))


def test_nobody_to_store_to_fails() -> None:
    end = Static("p", SELF, TARGET, "PUT", [], CFG).advance(BcastPoll(), 0.0)
    assert isinstance(end, BcastFinished) and end.reason is FinishReason.FAILED
    end = FollowUp("p", SELF, TARGET, "PUT", [], CFG).advance(BcastPoll(), 0.0)
    assert isinstance(end, BcastFinished) and end.reason is FinishReason.FAILED


def test_stop_during_lookup_cancels_lookup_requests() -> None:
    b = FollowUp("p", SELF, TARGET, "PUT", [k(1), k(2), k(3)], CFG)
    settle(b, 0.0)
    state = b.advance(BcastStop(), 0.5)
    cancels = []
    while isinstance(state, BcastCancelRequest):
        assert not state.store
        cancels.append(state.node)
        state = b.advance(BcastPoll(), 0.5)
    assert sorted(c.value for c in cancels) == sorted(k(i).value for i in (1, 2, 3))
    assert isinstance(state, BcastFinished) and state.reason is FinishReason.CANCELLED
    assert b.advance(BcastPoll(), 1.0) is state


def test_stop_during_stores_cancels_store_requests() -> None:
    b = Static("p", SELF, TARGET, "PUT", [k(1), k(2), k(3)], CFG)
    settle(b, 0.0)
    state = b.advance(BcastStop(), 0.5)
    cancels = []
    while isinstance(state, BcastCancelRequest):
        assert state.store
        cancels.append(state.node)
        state = b.advance(BcastPoll(), 0.5)
    assert cancels == [k(1), k(2)]
    assert isinstance(state, BcastFinished) and state.reason is FinishReason.CANCELLED
    assert {n for n, _ in state.errors} == {k(1), k(2), k(3)}


def test_store_timeout_cancels_and_counts_as_error() -> None:
    cfg = BroadcastConfig(num_replicas=3, store_concurrency=1, store_timeout=5.0)
    b = Static("p", SELF, TARGET, "PUT", [k(1), k(2)], cfg)
    settle(b, 0.0)
    assert b.next_due() == 5.0
    state = b.advance(BcastPoll(), 5.0)
    assert isinstance(state, BcastCancelRequest) and state.node == k(1) and state.store
    state = b.advance(BcastPoll(), 5.0)
    assert isinstance(state, BcastStoreRecord) and state.node == k(2)
    end = stored(b, k(2), 6.0)
    assert isinstance(end, BcastFinished) and end.errors == ((k(1), "timeout"),)


def test_deadline_ends_broadcast_with_timeout() -> None:
    b = FollowUp("p", SELF, TARGET, "PUT", [k(1)], CFG, trace=Trace(deadline=2.0))
    settle(b, 0.0)
    state = b.advance(BcastPoll(), 2.0)
    while isinstance(state, BcastCancelRequest):
        state = b.advance(BcastPoll(), 2.0)
    assert isinstance(state, BcastFinished) and state.reason is FinishReason.TIMEOUT


def test_lookup_failures_are_skipped() -> None:
    b = FollowUp("p", SELF, TARGET, "PUT", [k(1), k(2)], BroadcastConfig(num_replicas=1))
    settle(b, 0.0)
    settle(b, 1.0, b.advance(BcastLookupFailure(k(1), "refused"), 1.0))
    states = settle(b, 1.0, b.advance(BcastLookupResponse(k(2)), 1.0))
    assert [s.node for s in states if isinstance(s, BcastStoreRecord)] == [k(2)]


def test_optimistic_stores_before_the_lookup_ends_and_covers_the_final_set() -> None:
    cfg = BroadcastConfig(num_replicas=2, store_concurrency=5, query=QueryConfig(concurrency=2))
    b = Optimistic("p", SELF, TARGET, "PUT", [k(10), k(11)], cfg)
    settle(b, 0.0)
    # both answer and point at closer nodes; the lookup goes on
    settle(b, 1.0, b.advance(BcastLookupResponse(k(10), (k(3),)), 1.0))
    states = settle(b, 1.0, b.advance(BcastLookupResponse(k(11), (k(2),)), 1.0))
    early = [s.node for s in states if isinstance(s, BcastStoreRecord)]
    assert early == [k(10), k(11)]  # stored while k(2), k(3) are still being asked
    assert any(isinstance(s, BcastFindCloser) for s in states) or not b.finished
    for node in (k(10), k(11)):
        stored(b, node, 1.5)
    states = settle(b, 2.0, b.advance(BcastLookupResponse(k(3)), 2.0))
    states += settle(b, 2.0, b.advance(BcastLookupResponse(k(2)), 2.0))
    late = [s.node for s in states if isinstance(s, BcastStoreRecord)]
    assert set(late) == {k(2), k(3)}
    end: BcastState = BcastWaiting("p")
    for node in late:
        end = stored(b, node, 3.0)
    assert isinstance(end, BcastFinished)
    assert set(end.contacted) >= {k(2), k(3)}


def test_every_store_is_reported_and_an_optimistic_broadcast_settles_once_at_75_percent() -> None:
    cfg = BroadcastConfig(num_replicas=4, store_concurrency=4)
    seeds = [k(i) for i in range(1, 5)]
    b = Optimistic("p", SELF, TARGET, "PUT", seeds, cfg)
    settle(b, 0.0)
    for node in seeds:
        settle(b, 1.0, b.advance(BcastLookupResponse(node), 1.0))
    reports = []
    for node in seeds:
        state = b.advance(BcastStoreSuccess(node), 2.0)
        assert isinstance(state, BcastStored)
        reports.append((state.stored, state.settled))
        b.advance(BcastPoll(), 2.0)
    assert reports == [(1, False), (2, False), (3, True), (4, False)]  # ceil(0.75 × 4) = 3


def test_follow_up_never_settles_before_its_end() -> None:
    b = Static("p", SELF, TARGET, "PUT", [k(1), k(2)], CFG)
    settle(b, 0.0)
    first = b.advance(BcastStoreSuccess(k(1)), 1.0)
    assert isinstance(first, BcastStored) and not first.settled


def test_a_dropped_store_is_retried_after_a_back_off_not_counted_as_an_error() -> None:
    cfg = BroadcastConfig(
        num_replicas=3, store_concurrency=2, query=QueryConfig(drop_retry_delay=0.1)
    )
    b = Static("p", SELF, TARGET, "PUT", [k(1), k(2)], cfg)
    settle(b, 0.0)
    states = settle(b, 0.0, b.advance(BcastStoreDropped(k(1)), 0.0))
    assert not any(isinstance(s, BcastStoreRecord) for s in states)  # not at once
    assert b.next_due() == 0.1
    state = b.advance(BcastPoll(), 0.1)
    assert isinstance(state, BcastStoreRecord) and state.node == k(1)
    stored(b, k(2), 0.2)
    end = stored(b, k(1), 0.2)
    assert isinstance(end, BcastFinished)
    assert end.contacted == (k(2), k(1)) and end.errors == ()


def test_a_retry_due_while_stores_are_at_capacity_is_not_named_by_next_due() -> None:
    # A dropped store's retry time passes while store_concurrency requests are in flight:
    # a poll then sends nothing, so next_due must not name that past time (the driver
    # would re-arm its timer in the past forever); the answer that frees a slot sends it.
    cfg = BroadcastConfig(
        num_replicas=3, store_concurrency=2, query=QueryConfig(drop_retry_delay=0.1)
    )
    b = Static("p", SELF, TARGET, "PUT", [k(1), k(2), k(3)], cfg)
    settle(b, 0.0)
    states = settle(b, 0.0, b.advance(BcastStoreDropped(k(1)), 0.0))
    assert [s.node for s in states if isinstance(s, BcastStoreRecord)] == [k(3)]
    assert isinstance(b.advance(BcastPoll(), 0.2), BcastWaiting)
    due = b.next_due()
    assert due is not None and due > 0.2
    state = stored(b, k(2), 0.3)
    assert isinstance(state, BcastStoreRecord) and state.node == k(1)


def test_a_dropped_lookup_request_is_retried() -> None:
    cfg = BroadcastConfig(num_replicas=1, query=QueryConfig(drop_retry_delay=0.1))
    b = FollowUp("p", SELF, TARGET, "PUT", [k(1)], cfg)
    settle(b, 0.0)
    settle(b, 0.0, b.advance(BcastLookupDropped(k(1)), 0.0))
    state = b.advance(BcastPoll(), 0.1)
    assert isinstance(state, BcastFindCloser) and state.node == k(1)


def test_lookup_answers_reach_the_lookup_with_their_trace() -> None:
    trace = Trace(deadline=42.0)
    b = FollowUp("p", SELF, TARGET, "PUT", [k(1), k(2), k(3)], CFG)
    settle(b, 0.0)
    assert b._query is not None
    advance = b._query.advance
    seen: list[Trace] = []

    def recording(event: object, now: float) -> object:
        seen.append(event.trace)  # type: ignore[attr-defined]
        return advance(event, now)  # type: ignore[arg-type]

    b._query.advance = recording  # type: ignore[method-assign]
    b.advance(BcastLookupResponse(k(1), trace=trace), 1.0)
    b.advance(BcastLookupFailure(k(2), "reset", trace=trace), 1.0)
    b.advance(BcastLookupDropped(k(3), trace=trace), 1.0)
    assert [t for t in seen if t == trace] == [trace, trace, trace]
