"""The Coordinator, driven by hand with explicit time: the driver contract end to end."""

from __future__ import annotations

import random
from dataclasses import replace

from opentelemetry.trace import SpanContext, TraceFlags

from zikade_py.core.coordinator import Coordinator, CoordinatorConfig
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    BroadcastFinished,
    BroadcastStored,
    BroadcastStrategy,
    CancelRequest,
    CoordinatorOutput,
    QueryFinished,
    QueryProgressed,
    RequestFailed,
    RequestSucceeded,
    RoutingUpdated,
    SendFindNode,
    SendMessage,
    StartBootstrap,
    StartBroadcast,
    StartFindCloserQuery,
    StartMessageQuery,
    StopQuery,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.network import DROPPED, NetworkConfig
from zikade_py.core.pool import PoolConfig
from zikade_py.core.query import QueryConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.core.trace import NO_TRACE, Trace


def k(i: int) -> Key:
    return Key.from_int(i << 248, preimage=bytes([i]))


SELF = k(0xFF)
TARGET = k(0)
QUIET = RoutingConfig(enable_probe=False, enable_explore=False, candidates_from_answers=False)


def coordinator(**overrides: object) -> Coordinator:
    cfg = replace(CoordinatorConfig(routing=QUIET), **overrides)  # type: ignore[arg-type]
    return Coordinator(SELF, cfg, rng=random.Random(1))


def drain(c: Coordinator, now: float) -> list[CoordinatorOutput]:
    out: list[CoordinatorOutput] = []
    for _ in range(10_000):
        ev = c.poll(now)
        if ev is None:
            return out
        out.append(ev)
    raise AssertionError("coordinator did not settle")


def sends(out: list[CoordinatorOutput]) -> list[SendFindNode]:
    return [o for o in out if isinstance(o, SendFindNode)]


def fill(c: Coordinator, nodes: list[Key]) -> None:
    for n in nodes:
        c.routing_table.add(n, 0.0)


SPAN = SpanContext(
    trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
)


def test_query_keeps_alpha_requests_in_flight_and_copies_the_trace() -> None:
    c = coordinator(pool=PoolConfig(query=QueryConfig(concurrency=10)))
    fill(c, [k(i) for i in range(1, 40)])
    c.notify(StartFindCloserQuery("q", TARGET, trace=Trace(SPAN, 50.0)), 0.0)
    out = drain(c, 0.0)
    assert len(sends(out)) == 10
    assert c.requests_in_flight == 10
    assert all(s.span_context == SPAN for s in sends(out))
    assert all(s.deadline == 10.0 for s in sends(out))  # request timeout before the query's
    # every answer frees a slot that is refilled at once
    for s in sends(out)[:3]:
        c.notify(RequestSucceeded(s.request_id, ()), 1.0)
        step = drain(c, 1.0)
        assert len(sends(step)) == 1
        assert any(isinstance(o, QueryProgressed) for o in step)
        assert c.requests_in_flight == 10


def test_stop_cancels_every_request_in_flight_then_one_terminal_event() -> None:
    c = coordinator()
    fill(c, [k(i) for i in range(1, 30)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    in_flight = {s.request_id for s in sends(drain(c, 0.0))}
    c.notify(StopQuery("q"), 1.0)
    out = drain(c, 1.0)
    cancels = [o.request_id for o in out if isinstance(o, CancelRequest)]
    finished = [o for o in out if isinstance(o, QueryFinished)]
    assert sorted(cancels) == sorted(in_flight)
    assert len(finished) == 1 and finished[0].reason is FinishReason.CANCELLED
    assert out[-1] is finished[0]  # the end comes after every cancel
    assert c.requests_in_flight == 0 and c.running_queries == 0
    # answers to cancelled requests are ignored
    for rid in in_flight:
        c.notify(RequestSucceeded(rid, (k(200),)), 2.0)
    assert drain(c, 2.0) == []


def test_query_timeout_is_reported_and_requests_cancelled() -> None:
    c = coordinator(pool=PoolConfig(query_timeout=30.0, query=QueryConfig(request_timeout=60.0)))
    fill(c, [k(1), k(2)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    drain(c, 0.0)
    assert c.next_due() == 30.0
    assert drain(c, 29.0) == []
    out = drain(c, 30.0)
    assert [type(o) for o in out] == [CancelRequest, CancelRequest, QueryFinished]
    assert isinstance(out[-1], QueryFinished) and out[-1].reason is FinishReason.TIMEOUT


def test_caller_deadline_ends_query_with_partial_results() -> None:
    c = coordinator()
    fill(c, [k(1), k(2), k(3)])
    c.notify(StartFindCloserQuery("q", TARGET, trace=Trace(deadline=0.2)), 0.0)
    out = drain(c, 0.0)
    first = sends(out)[0]
    c.notify(RequestSucceeded(first.request_id, ()), 0.1)
    drain(c, 0.1)
    assert c.next_due() == 0.2
    end = drain(c, 0.2)
    finished = [o for o in end if isinstance(o, QueryFinished)]
    assert finished[0].reason is FinishReason.TIMEOUT
    assert finished[0].closest == (first.to,)


def test_empty_table_query_fails_instead_of_hanging() -> None:
    c = coordinator()
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    out = drain(c, 0.0)
    assert len(out) == 1 and isinstance(out[0], QueryFinished)
    assert out[0].reason is FinishReason.FAILED


def test_admission_drops_are_retried_not_failures_of_the_node() -> None:
    c = coordinator(
        network=NetworkConfig(max_in_flight=3, max_per_node=1),
        pool=PoolConfig(query=QueryConfig(num_results=5, drop_retry_delay=0.1)),
    )
    fill(c, [k(i) for i in range(1, 10)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    first = sends(drain(c, 0.0))
    assert [s.to for s in first] == [k(1), k(2), k(3)]
    assert c.requests_dropped >= 1
    assert c.requests_in_flight == 3
    for s in first:
        c.notify(RequestSucceeded(s.request_id, ()), 0.05)
    drain(c, 0.05)
    due = c.next_due()
    assert due is not None and due <= 0.1 + 1e-9
    retried = sends(drain(c, due))
    # the nodes whose requests our own admission refused are asked now: a local drop
    # is not the remote's failure
    assert {s.to for s in retried} == {k(4), k(5)}
    for s in retried:
        c.notify(RequestSucceeded(s.request_id, ()), 0.2)
    end = drain(c, 0.2)
    finished = [o for o in end if isinstance(o, QueryFinished)]
    assert finished and finished[0].reason is FinishReason.DONE
    assert finished[0].closest == tuple(k(i) for i in range(1, 6))
    assert finished[0].stats.failure == 0


def test_progress_reports_the_counters_with_the_answer_applied() -> None:
    c = coordinator()
    fill(c, [k(1), k(2)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    first, second = sends(drain(c, 0.0))
    c.notify(RequestSucceeded(first.request_id, ()), 1.0)
    progress = [o for o in drain(c, 1.0) if isinstance(o, QueryProgressed)]
    assert progress[0].stats.success == 1  # the old coordinator said 0 here
    c.notify(RequestSucceeded(second.request_id, ()), 1.0)
    out = drain(c, 1.0)
    kinds = [type(o) for o in out]
    # the last answer ends the query: progress (2 answers) first, then the end
    assert kinds.index(QueryProgressed) < kinds.index(QueryFinished)
    last = next(o for o in out if isinstance(o, QueryProgressed))
    assert last.stats.success == 2


def test_next_due_names_a_real_time_while_input_waits() -> None:
    c = coordinator()
    fill(c, [k(1)])
    c.notify(StartFindCloserQuery("q", TARGET), 5.0)
    due = c.next_due()
    assert due == 5.0  # not -inf: "now", the latest time the coordinator was given
    drain(c, 5.0)
    assert c.next_due() == 15.0  # the request's hard timeout


def test_broadcasts_are_bounded_by_max_queries() -> None:
    c = coordinator(pool=PoolConfig(max_queries=1))
    fill(c, [k(1)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    c.notify(StartBroadcast("p", TARGET, "PUT", BroadcastStrategy.STATIC, seeds=(k(2),)), 0.0)
    out = drain(c, 0.0)
    assert not [o for o in out if isinstance(o, SendMessage)]  # queued behind q
    assert c.running_queries == 2
    c.notify(RequestSucceeded(sends(out)[0].request_id, ()), 1.0)
    stores = [o for o in drain(c, 1.0) if isinstance(o, SendMessage)]
    assert [s.to for s in stores] == [k(2)]
    c.notify(RequestSucceeded(stores[0].request_id), 2.0)
    end = drain(c, 2.0)
    ours = [type(o) for o in end if isinstance(o, BroadcastStored | BroadcastFinished)]
    assert ours == [BroadcastStored, BroadcastFinished]


def test_failed_requests_are_skipped_and_query_finishes() -> None:
    c = coordinator()
    fill(c, [k(1), k(2)])
    c.notify(StartFindCloserQuery("q", TARGET), 0.0)
    out = drain(c, 0.0)
    for s in sends(out):
        c.notify(RequestFailed(s.request_id, "connection refused"), 1.0)
    end = drain(c, 1.0)
    assert isinstance(end[-1], QueryFinished) and end[-1].reason is FinishReason.FAILED


def test_message_query_sends_message_and_reports_responses() -> None:
    c = coordinator()
    fill(c, [k(1)])
    c.notify(StartMessageQuery("q", TARGET, message="GET_PROVIDERS"), 0.0)
    out = drain(c, 0.0)
    msgs = [o for o in out if isinstance(o, SendMessage)]
    assert len(msgs) == 1 and msgs[0].message == "GET_PROVIDERS"
    c.notify(RequestSucceeded(msgs[0].request_id, (), response={"providers": 1}), 1.0)
    end = drain(c, 1.0)
    progressed = [o for o in end if isinstance(o, QueryProgressed)]
    assert progressed[0].response == {"providers": 1}
    assert isinstance(end[-1], QueryFinished)


def test_nodes_that_answer_enter_the_routing_table() -> None:
    c = coordinator()
    c.notify(StartFindCloserQuery("q", TARGET, seeds=(k(7),)), 0.0)
    s = sends(drain(c, 0.0))[0]
    assert k(7) not in c.routing_table
    c.notify(RequestSucceeded(s.request_id, ()), 1.0)
    out = drain(c, 1.0)
    assert k(7) in c.routing_table
    updated = [o for o in out if isinstance(o, RoutingUpdated)]
    assert updated and updated[0].trace == NO_TRACE  # side effect: fresh trace


def test_candidates_are_checked_before_they_enter_the_table() -> None:
    c = coordinator()
    c.notify(AddCandidates((k(9),)), 0.0)
    checks = sends(drain(c, 0.0))
    assert len(checks) == 1 and checks[0].to == k(9) and checks[0].target == k(9)
    assert k(9) not in c.routing_table
    c.notify(RequestSucceeded(checks[0].request_id, (k(10),)), 1.0)
    out = drain(c, 1.0)
    assert k(9) in c.routing_table
    assert any(isinstance(o, RoutingUpdated) and o.node == k(9) for o in out)


def test_a_candidate_we_await_an_answer_from_is_admitted_by_that_answer_not_a_check() -> None:
    c = coordinator()
    c.notify(StartFindCloserQuery("q", TARGET, seeds=(k(7),)), 0.0)
    lookup = sends(drain(c, 0.0))[0]
    c.notify(AddCandidates((k(7),)), 0.5)  # named by someone while our request is out
    assert sends(drain(c, 0.5)) == []  # no include check: the lookup's answer will do
    c.notify(RequestSucceeded(lookup.request_id, (k(10),)), 1.0)
    drain(c, 1.0)
    assert k(7) in c.routing_table


def test_bootstrap_timeout_is_reported_not_crashed() -> None:
    c = coordinator()
    c.notify(StartBootstrap((k(1), k(2))), 0.0)
    out = drain(c, 0.0)
    assert len(sends(out)) == 2
    timeout = c.config.routing.bootstrap.timeout
    end = drain(c, timeout)
    assert sum(isinstance(o, CancelRequest) for o in end) == 2
    finished = [o for o in end if isinstance(o, BootstrapFinished)]
    assert len(finished) == 1 and finished[0].reason is FinishReason.TIMEOUT


def test_follow_up_broadcast_stores_with_the_closest_and_finishes_once() -> None:
    c = coordinator()
    fill(c, [k(1), k(2)])
    c.notify(StartBroadcast("p", TARGET, "ADD_PROVIDER"), 0.0)
    lookups = sends(drain(c, 0.0))
    assert len(lookups) == 2
    out: list[CoordinatorOutput] = []
    for s in lookups:
        c.notify(RequestSucceeded(s.request_id, ()), 1.0)
        out += drain(c, 1.0)
    stores = [o for o in out if isinstance(o, SendMessage)]
    assert sorted(s.to.value for s in stores) == sorted([k(1).value, k(2).value])
    for s in stores:
        c.notify(RequestSucceeded(s.request_id), 2.0)
    end = drain(c, 2.0)
    finished = [o for o in end if isinstance(o, BroadcastFinished)]
    assert len(finished) == 1 and finished[0].reason is FinishReason.DONE
    assert len(finished[0].contacted) == 2


def test_stopping_a_broadcast_cancels_its_requests() -> None:
    c = coordinator()
    c.notify(
        StartBroadcast("p", TARGET, "PUT", BroadcastStrategy.STATIC, seeds=(k(1), k(2))), 0.0
    )
    stores = [o for o in drain(c, 0.0) if isinstance(o, SendMessage)]
    assert len(stores) == 2
    c.notify(StopQuery("p"), 1.0)
    out = drain(c, 1.0)
    assert sorted(o.request_id for o in out if isinstance(o, CancelRequest)) == sorted(
        s.request_id for s in stores
    )
    assert isinstance(out[-1], BroadcastFinished) and out[-1].reason is FinishReason.CANCELLED


def test_many_cancelled_queries_leave_nothing_behind() -> None:
    c = coordinator()
    fill(c, [k(i) for i in range(1, 60)])
    for i in range(200):
        c.notify(StartFindCloserQuery(f"q{i}", Key.from_int(i << 200)), float(i))
        drain(c, float(i))
        c.notify(StopQuery(f"q{i}"), float(i))
        drain(c, float(i))
    assert c.requests_in_flight == 0
    assert c.running_queries == 0


def test_next_due_is_none_when_idle() -> None:
    c = coordinator()
    assert drain(c, 0.0) == []
    assert c.next_due() is None


def test_dropped_error_text_is_stable() -> None:
    assert "dropped" in DROPPED


def test_broadcast_lookup_answers_are_reported_as_progress() -> None:
    c = coordinator()
    fill(c, [k(1)])
    c.notify(StartBroadcast("p", TARGET, "ADD_PROVIDER"), 0.0)
    lookup = sends(drain(c, 0.0))[0]
    c.notify(RequestSucceeded(lookup.request_id, (k(2),), response=["closer"]), 1.0)
    out = drain(c, 1.0)
    progressed = [o for o in out if isinstance(o, QueryProgressed)]
    assert len(progressed) == 1
    assert progressed[0].query_id == "p" and progressed[0].node == k(1)
    assert progressed[0].response == ["closer"]
