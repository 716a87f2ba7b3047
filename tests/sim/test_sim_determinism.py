"""Same seed, same report: the simulator is exactly reproducible (issue 2, acceptance 4)."""

from __future__ import annotations

import json
from dataclasses import replace

from zikade_py.sim import NON_DETERMINISTIC, run_simulation
from zikade_py.sim.network import NetworkConfig
from zikade_py.sim.presets import AMINO
from zikade_py.sim.simulation import SimConfig


def _run(seed: int) -> str:
    net = NetworkConfig(loss=0.05, unresponsive=0.1, slow=0.1, churn=0.2)
    config = SimConfig(
        nodes=40, lookups=25, seed=seed, join_batch=10, lookup_interval=0.3, network=net
    )
    return _canonical(run_simulation(config))


def _run_ops(seed: int) -> str:
    """The amino model (handshakes, jitter, undialable, clients) with every operation."""
    config = SimConfig(
        nodes=120,
        lookups=12,
        seed=seed,
        join_batch=30,
        lookup_interval=0.3,
        ops=("lookup", "provide", "find-providers"),
        network=replace(AMINO, churn=0.2, loss=0.02),
    )
    return _canonical(run_simulation(config))


def _canonical(report: dict[str, object]) -> str:
    for name in NON_DETERMINISTIC:
        report.pop(name, None)
    return json.dumps(report, sort_keys=True)


def test_same_seed_gives_identical_reports() -> None:
    first, second = _run(21), _run(21)
    assert first == second
    assert '"requests_total"' in first


def test_a_different_seed_gives_a_different_run() -> None:
    assert _run(21) != _run(22)


def test_operations_on_the_amino_model_are_reproducible() -> None:
    first = _run_ops(7)
    assert first == _run_ops(7)
    assert '"find_providers_first_ms_p90"' in first and '"handshakes"' in first
    assert first != _run_ops(8)
