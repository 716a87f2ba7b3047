"""Small simulations end to end, plus the simulator's own building blocks."""

from __future__ import annotations

import json
import random

import pytest

from zikade_py.core.coordinator_events import (
    CancelRequest,
    CoordinatorInput,
    CoordinatorOutput,
    RequestFailed,
    RequestSucceeded,
    SendFindNode,
)
from zikade_py.core.key import Key
from zikade_py.sim import run_simulation
from zikade_py.sim.__main__ import main
from zikade_py.sim.clock import VirtualClock
from zikade_py.sim.driver import CoordinatorLike, RoutingTableView
from zikade_py.sim.events import Wake
from zikade_py.sim.factory import coordinator_factory, sim_coordinator_config
from zikade_py.sim.keyspace import LiveKeys
from zikade_py.sim.metrics import UNFINISHED, percentile
from zikade_py.sim.network import LatencyConfig, Network, NetworkConfig
from zikade_py.sim.simulation import SimConfig, Simulation

REQUIRED = (
    "nodes",
    "lookups",
    "success_rate",
    "closest_overlap_mean",
    "hops_p50",
    "hops_p95",
    "messages_per_lookup_mean",
    "virtual_latency_ms_p50",
    "virtual_latency_ms_p95",
    "wall_s",
    "peak_rss_mb",
)


# -- building blocks -------------------------------------------------------------------------


def test_clock_pops_in_time_then_scheduling_order() -> None:
    clock = VirtualClock()
    clock.schedule(2.0, Wake(10, 0))
    clock.schedule(1.0, Wake(20, 0))
    clock.schedule(1.0, Wake(30, 0))
    order = [clock.pop()[2] for _ in range(3)]
    assert [w.node for w in order if isinstance(w, Wake)] == [20, 30, 10]
    assert clock.now == 2.0
    clock.schedule(0.5, Wake(40, 0))  # the past is clamped to now
    assert clock.pop()[0] == 2.0


def test_live_keys_closest_matches_brute_force() -> None:
    rng = random.Random(7)
    live = LiveKeys()
    values = [rng.getrandbits(256) for _ in range(300)]
    for i, v in enumerate(values):
        live.add(v, i)
    for _ in range(50):
        target = rng.getrandbits(256)
        brute = sorted(range(len(values)), key=lambda i: values[i] ^ target)
        assert live.closest(target, 20) == brute[:20]
        odd = [i for i in brute if i % 2][:20]
        assert live.closest(target, 20, lambda i: i % 2 == 1) == odd
    live.remove(values[0])
    assert 0 not in live.closest(values[0], 5)
    assert len(live.closest(0, 1000)) == 299


def test_live_keys_buckets_are_true_buckets() -> None:
    rng = random.Random(3)
    live = LiveKeys()
    keys = [Key.from_int(rng.getrandbits(256)) for _ in range(400)]
    for i, k in enumerate(keys):
        live.add(k.value, i)
    me = keys[0]
    picked = live.buckets(me.value, 5, random.Random(1))
    assert 0 not in picked
    per_bucket: dict[int, int] = {}
    for i in picked:
        cpl = me.common_prefix_length(keys[i])
        per_bucket[cpl] = per_bucket.get(cpl, 0) + 1
    for cpl in range(256):
        true_size = sum(1 for k in keys[1:] if me.common_prefix_length(k) == cpl)
        assert per_bucket.get(cpl, 0) == min(5, true_size)


def test_network_latency_is_stable_symmetric_and_spread() -> None:
    net = Network(NetworkConfig(latency=LatencyConfig(0.05, 0.5)), random.Random(1))
    assert net.latency(3, 9) == net.latency(9, 3) == net.latency(3, 9)
    samples = sorted(net.latency(0, j) for j in range(1, 2001))
    median = samples[len(samples) // 2]
    assert 0.04 < median < 0.06
    assert samples[0] < 0.03 and samples[-1] > 0.1
    fixed = Network(NetworkConfig(latency=LatencyConfig(0.02, 0.0)), random.Random(1))
    assert {fixed.latency(0, j) for j in range(1, 50)} == {0.02}


def test_network_loss_rate_and_validation() -> None:
    net = Network(NetworkConfig(loss=0.25), random.Random(5))
    lost = sum(net.lost() for _ in range(10_000))
    assert 2_200 < lost < 2_800
    with pytest.raises(ValueError):
        NetworkConfig(loss=1.0).validate()
    with pytest.raises(ValueError):
        NetworkConfig(unresponsive=-0.1).validate()
    with pytest.raises(ValueError):
        SimConfig(nodes=1).validate()


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


# -- whole simulations -----------------------------------------------------------------------


def test_small_network_realistic_join_all_lookups_succeed() -> None:
    report = run_simulation(SimConfig(nodes=50, lookups=40, seed=11, join_batch=10))
    assert report["lookups_judged"] == 40
    assert report["finish_reasons"] == {"done": 40}
    assert report["success_rate"] == 1.0
    assert report["closest_overlap_mean"] == 1.0
    assert report["bootstrap_reasons"] == {"done": 49}
    assert report["requests_lost"] == 0
    table_min = report["table_size_min"]
    assert isinstance(table_min, int) and table_min >= 20
    for name in REQUIRED:
        assert report[name] is not None, name


def test_small_network_prefilled_all_lookups_succeed() -> None:
    report = run_simulation(SimConfig(nodes=50, lookups=40, seed=12, prefill=True))
    assert report["finish_reasons"] == {"done": 40}
    assert report["success_rate"] == 1.0
    assert report["bootstrap_reasons"] == {}
    hops = report["hops_p95"]
    assert isinstance(hops, float) and 0 <= hops <= 3


def test_loss_churn_slow_and_silent_nodes_terminate_with_a_reason() -> None:
    net = NetworkConfig(loss=0.1, unresponsive=0.1, slow=0.1, slow_delay=3.0, churn=0.3)
    report = run_simulation(
        SimConfig(nodes=80, lookups=60, seed=13, join_batch=20, lookup_interval=0.5, network=net)
    )
    reasons = report["finish_reasons"]
    assert isinstance(reasons, dict)
    assert sum(reasons.values()) == 60
    assert UNFINISHED not in reasons  # nothing hung
    assert set(reasons) <= {"done", "timeout", "failed", "origin-departed"}
    assert report["requests_lost"] > 0  # type: ignore[operator]
    assert report["requests_timed_out"] > 0  # type: ignore[operator]
    assert report["churn_leaves"] > 0  # type: ignore[operator]
    assert report["churn_joins"] == report["churn_leaves"]
    for name in ("success_rate", "closest_overlap_mean"):
        value = report[name]
        assert isinstance(value, float) and 0.0 <= value <= 1.0
    assert report["success_rate"] >= 0.5  # type: ignore[operator]
    p50, p95 = report["virtual_latency_ms_p50"], report["virtual_latency_ms_p95"]
    assert isinstance(p50, float) and isinstance(p95, float) and 0 < p50 <= p95


def test_cli_json_prints_one_object_with_the_required_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--nodes", "30", "--lookups", "5", "--seed", "2", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    report = json.loads(out[0])
    for name in REQUIRED:
        assert name in report, name
    assert report["nodes"] == 30 and report["lookups"] == 5


def test_cli_summary_and_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "20", "--lookups", "3", "--prefill"]) == 0
    assert "success rate" in capsys.readouterr().out
    assert main(["--nodes", "20", "--loss", "1.5"]) == 2
    assert "loss" in capsys.readouterr().err


# -- the driver contract ---------------------------------------------------------------------


class _Recording:
    """Wraps a real coordinator and checks the driver answers each request exactly once."""

    def __init__(self, inner: CoordinatorLike) -> None:
        self.inner = inner
        self.sent: dict[int, float | None] = {}
        self.cancelled: dict[int, None] = {}
        self.answered: dict[int, int] = {}

    @property
    def routing_table(self) -> RoutingTableView:
        return self.inner.routing_table

    def notify(self, event: CoordinatorInput, now: float) -> None:
        if isinstance(event, RequestSucceeded | RequestFailed):
            rid = event.request_id
            assert rid in self.sent, "answer to a request never sent"
            assert rid not in self.cancelled, "answer after CancelRequest"
            self.answered[rid] = self.answered.get(rid, 0) + 1
            assert self.answered[rid] == 1, "two answers to one request"
            deadline = self.sent[rid]
            assert deadline is None or now <= deadline, "answered after its deadline"
        self.inner.notify(event, now)

    def poll(self, now: float) -> CoordinatorOutput | None:
        out = self.inner.poll(now)
        if isinstance(out, SendFindNode):
            self.sent[out.request_id] = out.trace.deadline
        elif isinstance(out, CancelRequest):
            self.cancelled[out.request_id] = None
        return out

    def next_due(self) -> float | None:
        return self.inner.next_due()


def test_every_request_gets_exactly_one_answer_or_is_cancelled() -> None:
    inner = coordinator_factory(sim_coordinator_config(prefill=False))
    made: list[_Recording] = []

    def factory(key: Key, rng: random.Random, now: float) -> CoordinatorLike:
        made.append(_Recording(inner(key, rng, now)))
        return made[-1]

    net = NetworkConfig(loss=0.1, unresponsive=0.1, slow=0.2, slow_delay=12.0, churn=0.5)
    sim = Simulation(
        SimConfig(nodes=40, lookups=20, seed=5, join_batch=10, lookup_interval=1.0, network=net),
        factory,
    )
    sim.run()
    end = sim.clock.now
    total = 0
    for node, rec in zip(sim.nodes, made, strict=True):
        for rid, deadline in rec.sent.items():
            total += 1
            if rid in rec.cancelled or rid in rec.answered:
                continue
            # unanswered: the node went silent or left, or the answer is still due
            assert not node.running or (deadline is not None and deadline > end - 1.0)
    assert total > 500


# -- the network model -----------------------------------------------------------------------


def test_first_contact_pays_the_handshake_later_requests_reuse_the_connection() -> None:
    config = NetworkConfig(latency=LatencyConfig(0.05, 0.0), handshake_rtts=2.0, stream_rtts=0.5)
    net = Network(config, random.Random(1))
    # first contact: 2 round trips of handshake, then half a round trip for the stream
    assert net.send_at(1, 2, 10.0) == pytest.approx(10.0 + 0.2 + 0.05)
    # the same connection, from either end: only the stream set-up
    assert net.send_at(1, 2, 11.0) == pytest.approx(11.05)
    assert net.send_at(2, 1, 12.0) == pytest.approx(12.05)
    # a request made while the handshake is under way waits for that handshake
    assert net.send_at(1, 3, 20.0) == pytest.approx(20.25)
    assert net.send_at(1, 3, 20.1) == pytest.approx(20.25)
    assert net.handshakes == 2


def test_connections_per_node_are_bounded_least_recently_used_first() -> None:
    config = NetworkConfig(latency=LatencyConfig(0.01, 0.0), handshake_rtts=1.0, max_connections=3)
    net = Network(config, random.Random(1))
    for peer in range(1, 50):
        net.send_at(0, peer, float(peer))
        assert net.connections(0) <= 3
    assert all(net.connections(peer) <= 1 for peer in range(1, 50))
    before = net.handshakes
    net.send_at(0, 49, 100.0)  # still connected
    net.send_at(0, 1, 100.0)  # evicted long ago: a new handshake
    assert net.handshakes == before + 1
    net.disconnect(0)
    assert net.connections(0) == 0 and net.connections(49) == 0


def test_jitter_adds_at_most_its_share_of_the_link_delay() -> None:
    config = NetworkConfig(latency=LatencyConfig(0.05, 0.0), jitter=0.2)
    net = Network(config, random.Random(3))
    delays = [net.delay(1, 2) for _ in range(500)]
    assert min(delays) >= 0.05 and max(delays) <= 0.06
    assert len(set(delays)) > 100


def test_client_mode_nodes_are_in_no_server_table_and_dead_dials_hang() -> None:
    net = NetworkConfig(clients=0.3, undialable=0.2, dial_timeout=4.0)
    sim = Simulation(
        SimConfig(nodes=80, lookups=30, seed=9, join_batch=20, network=net),
        coordinator_factory(sim_coordinator_config(prefill=False)),
    )
    report = sim.run()
    clients = {n.key for n in sim.nodes if n.client}
    assert len(clients) == round(0.3 * 76)
    for node in sim.nodes:
        if not node.client:
            table = node.coord.routing_table
            assert not clients & set(table.nearest(node.key, len(table)))
    assert report["dial_failures"] > 0  # type: ignore[operator]
    assert report["finish_reasons"] == {"done": 30}
    assert report["success_rate"] == 1.0


def test_preset_and_ops_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--nodes", "60", "--lookups", "4", "--seed", "3", "--prefill", "--json"]
    argv += ["--preset", "amino", "--ops", "lookup,provide,find-providers", "--loss", "0.01"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["undialable"] == 0.12 and report["loss"] == 0.01
    for name in (
        "provide_ms_p50",
        "provide_optimistic_ms_p90",
        "find_providers_first_ms_p50",
        "find_providers_success_rate",
        "join_requests_per_node_mean",
    ):
        assert name in report, name
    assert main(["--nodes", "20", "--ops", "find-providers"]) == 2
    assert "provide" in capsys.readouterr().err
