"""Probe: check schedule, success/failure verdicts, timeouts, drops, connectivity notices.

The probe never writes the table (the routing behaviour does): a failure is a
:class:`ProbeNodeFailure` verdict and the node stays seated until the behaviour
evicts it.
"""

from __future__ import annotations

import random

import pytest

from zikade_py.core.key import Key
from zikade_py.core.routing.cpl import random_digest_with_cpl
from zikade_py.core.routing.probe import (
    Probe,
    ProbeAdd,
    ProbeCancelCheck,
    ProbeCheckDropped,
    ProbeCheckFailure,
    ProbeCheckSuccess,
    ProbeConfig,
    ProbeConnectivityCheck,
    ProbeIdle,
    ProbeNodeFailure,
    ProbeNotifyConnectivity,
    ProbeNotifyNonConnectivity,
    ProbePoll,
    ProbeRemove,
    ProbeState,
    ProbeWaitingAtCapacity,
    ProbeWaitingWithCapacity,
)
from zikade_py.core.routing_table import RoutingTable

SELF = Key.from_preimage(b"self")
INTERVAL = 600.0


def node(i: int, cpl: int = 0) -> Key:
    return random_digest_with_cpl(SELF, cpl, random.Random(i))


def make(*nodes: Key, concurrency: int = 3, table: RoutingTable | None = None) -> Probe:
    table = RoutingTable(SELF) if table is None else table
    probe = Probe(table, ProbeConfig(check_interval=INTERVAL, concurrency=concurrency))
    for n in nodes:
        table.add(n, 0.0)
        assert isinstance(probe.advance(ProbeAdd(n), 0.0), ProbeIdle)
    return probe


def drain(probe: Probe, now: float, limit: int = 50) -> list[ProbeState]:
    """Poll until a waiting or idle state (bounded); return every state seen."""
    out: list[ProbeState] = []
    for _ in range(limit):
        state = probe.advance(ProbePoll(), now)
        out.append(state)
        if not isinstance(state, ProbeConnectivityCheck | ProbeCancelCheck | ProbeNodeFailure):
            return out
    raise AssertionError("probe did not settle")


def test_first_check_is_due_one_interval_after_add() -> None:
    a = node(1)
    probe = make(a)
    assert probe.scheduled(a) == INTERVAL and probe.next_due() == INTERVAL
    assert isinstance(probe.advance(ProbePoll(), INTERVAL - 1), ProbeIdle)
    state = probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(state, ProbeConnectivityCheck)
    assert state.node == a and state.target == a and state.deadline == INTERVAL + 10.0
    assert isinstance(probe.advance(ProbePoll(), INTERVAL), ProbeWaitingWithCapacity)
    assert probe.next_due() == INTERVAL + 10.0


def test_direct_add_schedules_like_the_add_event() -> None:
    a, b, outside = node(1), node(2, cpl=1), node(3)
    probe = make(a)
    probe.table.add(b, 5.0)
    probe.add(b, 5.0)
    probe.add(outside, 5.0)  # not in the table: ignored, as ProbeAdd ignores it
    probe.add(a, 7.0)  # tracked already: its schedule stays
    assert probe.scheduled(b) == 5.0 + INTERVAL and probe.scheduled(outside) is None
    assert probe.scheduled(a) == INTERVAL and probe.next_due() == INTERVAL


def test_add_ignores_nodes_not_in_the_table() -> None:
    probe = make()
    assert isinstance(probe.advance(ProbeAdd(node(1)), 0.0), ProbeIdle)
    assert probe.next_due() is None


def test_success_pushes_the_next_check_out() -> None:
    a = node(1)
    probe = make(a)
    probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(probe.advance(ProbeCheckSuccess(a, 4), INTERVAL + 2), ProbeIdle)
    assert probe.scheduled(a) == 2 * INTERVAL + 2
    assert probe.table.contains(a) and probe.table.last_seen(a) == 0.0  # not its to write


def test_failure_removes_and_reports() -> None:
    a, b = node(1), node(2)
    probe = make(a, b, concurrency=1)
    check = probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(check, ProbeConnectivityCheck)
    first = check.node
    state = probe.advance(ProbeCheckFailure(first, "reset"), INTERVAL + 1)
    assert state == ProbeNodeFailure(first)
    # A verdict only: the routing behaviour evicts; the probe stops checking it.
    assert probe.table.contains(first) and probe.scheduled(first) is None
    # The other node is still checked afterwards.
    state = probe.advance(ProbePoll(), INTERVAL + 1)
    assert isinstance(state, ProbeConnectivityCheck) and state.node != first


def test_answer_without_closer_nodes_is_a_failure_once_the_table_holds_k() -> None:
    table = RoutingTable(SELF, bucket_size=2)
    a, b = node(1), node(2)
    probe = make(a, b, table=table)
    drain(probe, INTERVAL)
    assert probe.advance(ProbeCheckSuccess(a, 0), INTERVAL + 1) == ProbeNodeFailure(a)


def test_answer_without_closer_nodes_passes_while_the_table_is_small() -> None:
    a = node(1)
    probe = make(a)  # one node in a k=20 table: the network may be that small (go's rule)
    probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(probe.advance(ProbeCheckSuccess(a, 0), INTERVAL + 1), ProbeIdle)
    assert probe.scheduled(a) == 2 * INTERVAL + 1


def test_dropped_check_keeps_the_seat_and_is_retried_later() -> None:
    a = node(1)
    probe = make(a)
    probe.advance(ProbePoll(), INTERVAL)
    # Our own admission control refused the request: nothing is known about the node.
    state = probe.advance(ProbeCheckDropped(a), INTERVAL + 1)
    assert isinstance(state, ProbeIdle)
    assert probe.table.contains(a) and probe.checking() == []
    retry_at = INTERVAL + 1 + probe.config.drop_retry_delay
    assert probe.scheduled(a) == retry_at and probe.next_due() == retry_at
    assert isinstance(probe.advance(ProbePoll(), retry_at - 0.1), ProbeIdle)
    state = probe.advance(ProbePoll(), retry_at)
    assert isinstance(state, ProbeConnectivityCheck) and state.node == a


def test_timeout_below_capacity_cancels_then_removes() -> None:
    a = node(1)
    probe = make(a, concurrency=3)
    probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(probe.advance(ProbePoll(), INTERVAL + 9), ProbeWaitingWithCapacity)
    states = drain(probe, INTERVAL + 10)
    assert [type(s) for s in states] == [ProbeCancelCheck, ProbeNodeFailure, ProbeIdle]
    assert all(s.node == a for s in states[:2])  # type: ignore[union-attr]
    assert probe.next_due() is None
    # A late answer changes nothing.
    assert isinstance(probe.advance(ProbeCheckSuccess(a, 3), INTERVAL + 11), ProbeIdle)
    assert probe.scheduled(a) is None


def test_timeout_at_capacity_frees_the_slot() -> None:
    a, b = node(1), node(2)
    probe = make(a, b, concurrency=1)
    first = probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(first, ProbeConnectivityCheck)
    assert isinstance(probe.advance(ProbePoll(), INTERVAL), ProbeWaitingAtCapacity)
    # At capacity, next_due is the check's deadline, not the overdue schedule.
    assert probe.next_due() == INTERVAL + 10
    states = drain(probe, INTERVAL + 10)
    assert [type(s) for s in states] == [
        ProbeCancelCheck,
        ProbeNodeFailure,
        ProbeConnectivityCheck,
        ProbeWaitingAtCapacity,
    ]
    assert states[2].node != first.node  # type: ignore[union-attr]


def test_notify_connectivity_pushes_the_check_out() -> None:
    a = node(1)
    probe = make(a)
    assert isinstance(probe.advance(ProbeNotifyConnectivity(a), 500.0), ProbeIdle)
    assert probe.scheduled(a) == 500.0 + INTERVAL
    assert isinstance(probe.advance(ProbePoll(), INTERVAL), ProbeIdle)


def test_notify_connectivity_schedules_an_untracked_table_node() -> None:
    table = RoutingTable(SELF)
    probe = make(table=table)
    a = node(1)
    table.add(a, 0.0)  # added behind the probe's back
    probe.advance(ProbeNotifyConnectivity(a), 5.0)
    assert probe.scheduled(a) == 5.0 + INTERVAL


def test_notify_non_connectivity_brings_the_check_forward() -> None:
    a = node(1)
    probe = make(a)
    state = probe.advance(ProbeNotifyNonConnectivity(a), 30.0)
    assert isinstance(state, ProbeConnectivityCheck) and state.node == a
    assert probe.table.contains(a)  # one failed request does not evict


def test_remove_cancels_a_check_in_flight() -> None:
    a = node(1)
    probe = make(a)
    probe.advance(ProbePoll(), INTERVAL)
    state = probe.advance(ProbeRemove(a), INTERVAL + 1)
    assert state == ProbeCancelCheck(a)
    assert isinstance(probe.advance(ProbePoll(), INTERVAL + 1), ProbeIdle)
    assert probe.scheduled(a) is None


def test_unverified_add_is_checked_at_once() -> None:
    table = RoutingTable(SELF)
    a = node(1)
    probe = make(table=table)
    table.add(a, 0.0)
    # A promoted replacement may have gone stale in the cache: check it now.
    state = probe.advance(ProbeAdd(a, verified=False), 50.0)
    assert isinstance(state, ProbeConnectivityCheck) and state.node == a


def test_due_ties_go_to_the_deeper_bucket_first() -> None:
    shallow, deep = node(1, cpl=0), node(2, cpl=9)
    probe = make(shallow, deep, concurrency=1)
    state = probe.advance(ProbePoll(), INTERVAL)
    assert isinstance(state, ProbeConnectivityCheck) and state.node == deep


def test_node_removed_elsewhere_is_not_checked() -> None:
    a = node(1)
    probe = make(a)
    probe.table.remove(a)
    assert isinstance(probe.advance(ProbePoll(), INTERVAL), ProbeIdle)
    assert probe.next_due() is None


def test_many_notices_do_not_grow_the_schedule_without_bound() -> None:
    nodes = [node(i) for i in range(10)]
    probe = make(*nodes)
    for t in range(1, 2001):
        probe.advance(ProbeNotifyConnectivity(nodes[t % 10]), float(t))
    assert len(probe._heap) <= 2 * 10 + 64 + 1
    assert probe.next_due() == 1991.0 + INTERVAL


def test_config_validation() -> None:
    for bad in (
        {"check_interval": 0.0}, {"concurrency": 0}, {"timeout": 0.0}, {"drop_retry_delay": 0.0}
    ):
        with pytest.raises(ValueError):
            ProbeConfig(**bad).validate()


def test_remove_without_a_check_stops_checking_silently() -> None:
    a, b = node(1), node(2)
    probe = make(a, b)
    assert isinstance(probe.advance(ProbeRemove(a), 3.0), ProbeIdle)
    assert probe.scheduled(a) is None
    assert isinstance(probe.advance(ProbeRemove(a), 4.0), ProbeIdle)
    assert probe.next_due() == INTERVAL  # b is still scheduled
