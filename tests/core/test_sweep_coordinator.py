"""The coordinator runs the sweep: lookups in its pool, batches as requests, outputs to the
driver (explicit time, a perfect in-memory network answering from global knowledge)."""

from __future__ import annotations

import random
from dataclasses import replace

from tests.core.sweep_harness import page, random_keys
from zikade_py.core.coordinator import Coordinator, CoordinatorConfig
from zikade_py.core.coordinator_events import (
    CancelRequest,
    CoordinatorOutput,
    QueryProgressed,
    RequestSucceeded,
    SendFindNode,
    SendMessage,
    StartBroadcast,
)
from zikade_py.core.key import Key
from zikade_py.core.sweep import SweepConfig
from zikade_py.core.sweep_events import (
    ProvideBatch,
    SweepAddKeys,
    SweepKeys,
    SweepLoadKeys,
    SweepRegionDone,
    SweepReprovideNow,
    SweepScheduleChanged,
)


def _network(n: int, seed: int = 1) -> tuple[Coordinator, list[Key]]:
    rng = random.Random(seed)
    servers = random_keys(n, rng)
    me = random_keys(1, random.Random(seed + 100))[0]
    sweep = SweepConfig(preimage_targets=False, burst_delay=0.5)
    config = replace(CoordinatorConfig(), sweep=sweep)
    coord = Coordinator(me, config, rng=random.Random(seed))
    for s in servers:
        coord.routing_table.add(s, 0.0)
    return coord, servers


def _run(
    coord: Coordinator,
    servers: list[Key],
    stored: list[Key],
    until: float,
    now: float = 0.0,
    pending: set[Key] | None = None,
) -> tuple[list[CoordinatorOutput], float]:
    """Answer every request at once from global knowledge; jump to next_due until ``until``.

    ``pending``: the keys stored as not announced yet (a burst's), cleared as bursts end."""
    pending = set() if pending is None else pending
    stored = sorted(stored, key=lambda k: k.value)
    values = [k.value for k in stored]
    seen: list[CoordinatorOutput] = []
    for _ in range(200_000):
        out = coord.poll(now)
        if out is None:
            due = coord.next_due()
            if due is None or due > until:
                return seen, now
            now = max(now, due)
            continue
        seen.append(out)
        match out:
            case SendFindNode(request_id=rid, target=target):
                t = target.value
                closer = tuple(sorted(servers, key=lambda s: s.value ^ t)[:20])
                coord.notify(RequestSucceeded(rid, closer, closer), now)
            case SendMessage(request_id=rid):
                coord.notify(RequestSucceeded(rid), now)
            case SweepLoadKeys(request_id=rid):
                coord.notify(SweepKeys(rid, page(stored, values, out, pending)), now)
            case SweepRegionDone(burst=True, ok=True, keys=announced):
                pending.difference_update(announced)
            case _:
                pass
    raise AssertionError("the coordinator never settled")


def test_a_burst_runs_through_the_pool_and_leaves_as_batches() -> None:
    coord, servers = _network(300)
    keys = random_keys(400, random.Random(7))
    coord.notify(SweepAddKeys(tuple(keys)), 0.0)
    seen, _ = _run(coord, servers, keys, 60.0, pending=set(keys))
    batches = [o for o in seen if isinstance(o, SendMessage)]
    assert batches and all(isinstance(o.message, ProvideBatch) for o in batches)
    sent: dict[Key, set[Key]] = {}
    for out in batches:
        assert isinstance(out.message, ProvideBatch)
        assert out.deadline is not None, "a batch runs under a deadline"
        for key in out.message.keys:
            sent.setdefault(key, set()).add(out.to)
    for key in keys:
        assert sent[key] == set(sorted(servers, key=lambda s: s.value ^ key.value)[:20])
    assert not [o for o in seen if isinstance(o, QueryProgressed)], "sweep lookups are silent"
    done = [o for o in seen if isinstance(o, SweepRegionDone)]
    assert done and all(d.ok and d.burst for d in done)
    assert sum(len(d.keys) for d in done) == len(keys)
    assert any(isinstance(o, SweepScheduleChanged) for o in seen)
    assert coord.requests_in_flight == 0 and coord.running_queries == 0
    sweep = coord.sweep
    assert sweep is not None and sweep.regions >= 1


def test_reprovide_now_loads_each_region_and_announces_it_again() -> None:
    coord, servers = _network(200, seed=2)
    keys = random_keys(150, random.Random(3))
    coord.notify(SweepAddKeys(tuple(keys)), 0.0)
    _, now = _run(coord, servers, keys, 30.0, pending=set(keys))
    coord.notify(SweepReprovideNow(), now)
    seen, _ = _run(coord, servers, keys, now + 30.0, now)
    loads = [o for o in seen if isinstance(o, SweepLoadKeys)]
    done = [o for o in seen if isinstance(o, SweepRegionDone)]
    assert loads and done and all(d.ok and not d.burst for d in done)
    assert sum(d.keys_announced for d in done) == len(keys)


def test_batches_refused_by_admission_are_offered_again() -> None:
    coord, servers = _network(150, seed=4)
    tight = replace(CoordinatorConfig().network, max_in_flight=4, max_per_node=1)
    coord = Coordinator(
        coord.self_key, replace(coord.config, network=tight), rng=random.Random(1)
    )
    for s in servers:
        coord.routing_table.add(s, 0.0)
    keys = random_keys(200, random.Random(5))
    coord.notify(SweepAddKeys(tuple(keys)), 0.0)
    seen, _ = _run(coord, servers, keys, 120.0, pending=set(keys))
    assert coord.requests_dropped > 0, "the test needs admission to refuse some batches"
    sent = {k for o in seen if isinstance(o, SendMessage) and isinstance(o.message, ProvideBatch)
            for k in o.message.keys}  # fmt: skip
    assert sent == set(keys)
    assert not [o for o in seen if isinstance(o, CancelRequest)]
    assert all(d.ok for d in seen if isinstance(d, SweepRegionDone))


def _sweep_lookups(seen: list[CoordinatorOutput]) -> list[SendFindNode]:
    return [
        o for o in seen
        if isinstance(o, SendFindNode) and str(o.query_id).startswith("sweep-lookup")
    ]


def test_single_provides_size_the_network_without_calibration_lookups() -> None:
    """A node that provides key by key (provide: SweepAddKeys announced, then a follow-up
    broadcast) learns the network size from those broadcasts' lookups: the sweep makes
    no calibration lookups of its own (they cost 4 lookups per node, issue 9 acc. 6)."""
    coord, servers = _network(300, seed=6)
    keys = random_keys(3, random.Random(8))
    now = 0.0
    seen: list[CoordinatorOutput] = []
    for i, key in enumerate(keys):
        coord.notify(SweepAddKeys((key,), burst=False, announced=True), now)
        coord.notify(StartBroadcast(f"provide-{i}", key, "ADD_PROVIDER"), now)
        out, now = _run(coord, servers, keys, now + 1.0, now)
        seen += out
    out, _ = _run(coord, servers, keys, now + 60.0, now)
    seen += out
    assert not _sweep_lookups(seen), "no calibration lookups: the provides' lookups sized it"
    sweep = coord.sweep
    assert sweep is not None
    size = sweep.network_size()
    assert size is not None and 100 < size < 1000
    assert sweep.regions >= 1, "the keys entered the schedule"


def test_provided_keys_calibrate_after_calibration_delay_when_nothing_else_sizes() -> None:
    """Without other lookups, keys that were just announced still get their regions:
    calibration runs after calibration_delay (burst keys calibrate at once)."""
    coord, servers = _network(300, seed=7)
    keys = random_keys(1, random.Random(9))
    coord.notify(SweepAddKeys(tuple(keys), burst=False, announced=True), 0.0)
    delay = SweepConfig().calibration_delay
    early, now = _run(coord, servers, keys, delay - 0.5)
    assert not _sweep_lookups(early)
    seen, _ = _run(coord, servers, keys, delay + 30.0, now)
    assert _sweep_lookups(seen), "calibrated after the delay"
    sweep = coord.sweep
    assert sweep is not None and sweep.network_size() is not None and sweep.regions >= 1
