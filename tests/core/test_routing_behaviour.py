"""The routing behaviour through the coordinator: drops are drops, one writer of the table.

Each test drives a real :class:`Coordinator` with explicit time, so it checks
what a driver sees (requests, routing updates, removals), not internals.
"""

from __future__ import annotations

import random
from dataclasses import replace

from zikade_py.core.coordinator import Coordinator, CoordinatorConfig
from zikade_py.core.coordinator_events import (
    AddCandidates,
    BootstrapFinished,
    CoordinatorOutput,
    RequestFailed,
    RequestSucceeded,
    RoutingRemoved,
    RoutingUpdated,
    SendFindNode,
    StartBootstrap,
    StartFindCloserQuery,
)
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.core.network import NetworkConfig
from zikade_py.core.routing.behaviour import (
    RoutingBehaviour,
    RoutingConfig,
    RoutingMachine,
    RoutingRequest,
)
from zikade_py.core.routing.bootstrap import BootstrapConfig
from zikade_py.core.routing.cpl import random_digest_with_cpl
from zikade_py.core.routing.explore import DynamicExploreSchedule
from zikade_py.core.routing.include import IncludeConfig
from zikade_py.core.routing.probe import ProbeConfig
from zikade_py.core.routing_table import RoutingTable


def k(i: int) -> Key:
    return Key.from_int(i << 248, preimage=bytes([i]))


SELF = k(0xFF)
INTERVAL = 100.0
ROUTING = RoutingConfig(
    enable_explore=False,
    candidates_from_answers=False,
    probe=ProbeConfig(check_interval=INTERVAL),
)


def coordinator(routing: RoutingConfig = ROUTING, **overrides: object) -> Coordinator:
    cfg = replace(CoordinatorConfig(routing=routing), **overrides)  # type: ignore[arg-type]
    return Coordinator(SELF, cfg, rng=random.Random(1))


def drain(c: Coordinator, now: float) -> list[CoordinatorOutput]:
    out: list[CoordinatorOutput] = []
    for _ in range(10_000):
        ev = c.poll(now)
        if ev is None:
            return out
        out.append(ev)
    raise AssertionError("coordinator did not settle")


def sends(out: list[CoordinatorOutput], to: Key | None = None) -> list[SendFindNode]:
    return [o for o in out if isinstance(o, SendFindNode) and (to is None or o.to == to)]


def seat(c: Coordinator, node: Key, now: float) -> None:
    """Seat ``node`` the way the network does: it answers a request of ours."""
    c.notify(StartFindCloserQuery(f"seat-{node.value}", node, seeds=(node,)), now)
    (req,) = sends(drain(c, now), node)
    c.notify(RequestSucceeded(req.request_id, (k(77),)), now)
    out = drain(c, now)
    assert any(isinstance(o, RoutingUpdated) and o.node == node for o in out)
    for extra in sends(out):  # the lookup goes on to k(77): let it fail
        c.notify(RequestFailed(extra.request_id, "reset"), now)
    drain(c, now)


def hold_admission(c: Coordinator, now: float) -> SendFindNode:
    """Fill the only admission slot with a query request left in flight."""
    c.notify(StartFindCloserQuery("hold", k(90), seeds=(k(90),)), now)
    (req,) = sends(drain(c, now), k(90))
    return req


# -- 1. admission drops are drops, never failures of the peer ---------------------------------


def test_a_dropped_probe_check_keeps_the_node_and_is_retried() -> None:
    c = coordinator(network=NetworkConfig(max_in_flight=1))
    a = k(1)
    seat(c, a, 0.0)
    hold_admission(c, INTERVAL - 1)
    # The check of a is due, but our own admission control refuses it.
    out = drain(c, INTERVAL)
    assert not sends(out, a)
    assert not any(isinstance(o, RoutingRemoved) for o in out)  # main evicted a here
    assert a in c.routing_table
    assert c.requests_dropped >= 1
    due = c.next_due()
    assert due is not None and INTERVAL < due <= INTERVAL + ProbeConfig().drop_retry_delay


def test_a_dropped_include_check_is_retried_not_failed() -> None:
    include = IncludeConfig(drop_retry_delay=2.0)
    c = coordinator(replace(ROUTING, include=include), network=NetworkConfig(max_in_flight=1))
    held = hold_admission(c, 0.0)
    cand = k(5)
    c.notify(AddCandidates((cand,)), 0.0)
    assert not sends(drain(c, 0.0), cand)  # refused by admission
    assert c.routing.include.retrying() == [cand]
    c.notify(RequestSucceeded(held.request_id, ()), 1.0)
    drain(c, 1.0)
    check = sends(drain(c, 2.0), cand)
    assert len(check) == 1  # main had marked the candidate failed for good
    c.notify(RequestSucceeded(check[0].request_id, (k(6),)), 3.0)
    drain(c, 3.0)
    assert cand in c.routing_table


def test_a_dropped_bootstrap_request_is_asked_again() -> None:
    c = coordinator(network=NetworkConfig(max_in_flight=1))
    held = hold_admission(c, 0.0)
    seed = k(3)
    c.notify(StartBootstrap((seed,)), 0.0)
    out = drain(c, 0.0)
    # main: the only seed "failed" at once and the bootstrap finished FAILED.
    assert not any(isinstance(o, BootstrapFinished) for o in out)
    c.notify(RequestSucceeded(held.request_id, ()), 0.01)
    drain(c, 0.01)
    due = c.next_due()
    assert due is not None
    retry = sends(drain(c, due), seed)
    assert len(retry) == 1
    c.notify(RequestSucceeded(retry[0].request_id, ()), due + 0.1)
    end = [o for o in drain(c, due + 0.1) if isinstance(o, BootstrapFinished)]
    assert len(end) == 1 and end[0].reason is FinishReason.DONE


# -- 2. one writer of the table ----------------------------------------------------------------


def test_a_node_answering_without_closer_nodes_never_enters_a_table_of_k() -> None:
    c = coordinator(bucket_size=2)
    seat(c, k(1), 0.0)
    seat(c, k(2), 0.0)
    assert len(c.routing_table) == 2
    mute = k(0xC0)  # bucket 2: a free seat
    c.notify(StartFindCloserQuery("q", mute, seeds=(mute,)), 1.0)
    (req,) = sends(drain(c, 1.0), mute)
    c.notify(RequestSucceeded(req.request_id, ()), 1.5)
    out = drain(c, 1.5)
    # main admitted it straight away, and its probe evicted it ten minutes later.
    assert mute not in c.routing_table
    assert not any(isinstance(o, RoutingUpdated) and o.node == mute for o in out)


def test_a_small_table_is_not_picky_about_empty_answers() -> None:
    c = coordinator()
    lone = k(1)
    c.notify(StartFindCloserQuery("q", lone, seeds=(lone,)), 0.0)
    (req,) = sends(drain(c, 0.0), lone)
    c.notify(RequestSucceeded(req.request_id, ()), 0.5)
    drain(c, 0.5)
    assert lone in c.routing_table  # a two-node network must still work (go's rule)


def test_a_promoted_replacement_is_checked_at_once() -> None:
    c = coordinator(bucket_size=1)
    seated, spare = k(0x01), k(0x02)  # both in bucket 0
    seat(c, seated, 0.0)
    # spare answers too, but the bucket is full: it is parked as a replacement.
    c.notify(StartFindCloserQuery("q", spare, seeds=(spare,)), 1.0)
    (req,) = sends(drain(c, 1.0), spare)
    c.notify(RequestSucceeded(req.request_id, (k(77),)), 1.0)
    drain(c, 1.0)
    assert c.routing_table.replacements(0) == [spare]
    # The probe of `seated` fails: it is evicted and spare promoted into its seat ...
    (check,) = sends(drain(c, INTERVAL), seated)
    c.notify(RequestSucceeded(check.request_id, ()), INTERVAL + 1)  # zero closer: useless
    out = drain(c, INTERVAL + 1)
    assert any(isinstance(o, RoutingRemoved) and o.node == seated for o in out)
    assert any(isinstance(o, RoutingUpdated) and o.node == spare for o in out)
    # ... and checked at once, not one interval later (it may have gone stale).
    assert len(sends(out, spare)) == 1


# -- 3. next_due is a real time and has no side effects --------------------------------------


def test_behaviour_next_due_is_a_real_time() -> None:
    table = RoutingTable(SELF)
    beh = RoutingBehaviour(SELF, table, ROUTING, rng=random.Random(1), now=3.0)
    beh.node_responded(k(1), (k(2),), 7.0)
    assert beh.next_due() == 7.0  # work waits: due "now", never -inf
    assert beh.next_due() == 7.0  # asking again changes nothing
    while beh.poll(7.0) is not None:
        pass
    assert beh.next_due() == 7.0 + INTERVAL  # k(1)'s liveness check
    beh.on_dropped(RoutingMachine.PROBE, k(1), 8.0)  # unknown request: no effect but a poll
    assert beh.next_due() == 8.0


# -- 4. the self-lookup refreshes the buckets it covered --------------------------------------


def at_cpl(cpl: int, seed: int) -> Key:
    return random_digest_with_cpl(SELF, cpl, random.Random(seed))


def test_the_self_lookup_counts_as_refreshing_the_buckets_it_covered() -> None:
    cfg = RoutingConfig(
        bootstrap=BootstrapConfig(num_results=2),
        explore_preimages=False,
        explore_max_cpl=5,
        candidates_from_answers=False,
        enable_probe=False,
    )
    beh = RoutingBehaviour(SELF, RoutingTable(SELF), cfg, rng=random.Random(1), now=0.0)
    seed, near, nearest = at_cpl(1, 1), at_cpl(3, 1), at_cpl(4, 1)
    beh.notify(StartBootstrap((seed,)), 10.0)
    answers = {seed: (near, nearest), near: (nearest,), nearest: (near,)}
    for _ in range(20):
        out = beh.poll(10.0)
        if out is None:
            break
        if isinstance(out, RoutingRequest) and out.machine is RoutingMachine.BOOTSTRAP:
            beh.node_responded(out.node, answers[out.node], 10.0)
            beh.on_response(RoutingMachine.BOOTSTRAP, out.node, answers[out.node], 10.0)
        if isinstance(out, BootstrapFinished):
            break
    else:
        raise AssertionError("bootstrap did not finish")
    beh.poll(10.0)
    schedule = beh.explore.schedule
    assert isinstance(schedule, DynamicExploreSchedule)
    # The two closest answered: buckets deeper than the farther one's (CPL 3) are complete.
    for cpl in (4, 5):
        assert schedule.due_at(cpl) == 10.0 + schedule.interval_for(cpl)
    # Shallower ones were made due at once (one walk runs now, the others wait their turn).
    assert [c for c in range(4) if (schedule.due_at(c) or 0.0) <= 10.0] == [1, 2, 3]
    assert beh.explore.current_cpl == 0


def test_a_self_lookup_cut_short_refreshes_nothing() -> None:
    cfg = RoutingConfig(
        bootstrap=BootstrapConfig(num_results=2, timeout=5.0),
        explore_preimages=False,
        explore_max_cpl=5,
        candidates_from_answers=False,
        enable_probe=False,
    )
    beh = RoutingBehaviour(SELF, RoutingTable(SELF), cfg, rng=random.Random(1), now=0.0)
    seed, deep = at_cpl(1, 1), at_cpl(5, 1)
    beh.notify(StartBootstrap((seed,)), 0.0)
    first = beh.poll(0.0)
    assert isinstance(first, RoutingRequest) and first.node == seed
    beh.node_responded(seed, (deep,), 0.5)
    beh.on_response(RoutingMachine.BOOTSTRAP, seed, (deep,), 0.5)
    while beh.poll(0.5) is not None:
        pass  # deep never answers
    ends = []
    for _ in range(20):
        out = beh.poll(5.0)
        if out is None:
            break
        ends.append(out)
    (end,) = [o for o in ends if isinstance(o, BootstrapFinished)]
    assert end.reason is FinishReason.TIMEOUT
    schedule = beh.explore.schedule
    assert isinstance(schedule, DynamicExploreSchedule)
    # The partial result (seed, CPL 1) vouches for no bucket: none counts as refreshed.
    assert all((schedule.due_at(c) or 0.0) <= 5.0 for c in range(2, 6))
