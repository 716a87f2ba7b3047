"""Same seed, same report: the simulator is exactly reproducible (issue 2, acceptance 4)."""

from __future__ import annotations

import json

from zikade_py.sim import NON_DETERMINISTIC, run_simulation
from zikade_py.sim.network import NetworkConfig
from zikade_py.sim.simulation import SimConfig


def _run(seed: int) -> str:
    net = NetworkConfig(loss=0.05, unresponsive=0.1, slow=0.1, churn=0.2)
    config = SimConfig(
        nodes=40, lookups=25, seed=seed, join_batch=10, lookup_interval=0.3, network=net
    )
    report = run_simulation(config)
    for name in NON_DETERMINISTIC:
        report.pop(name, None)
    return json.dumps(report, sort_keys=True)


def test_same_seed_gives_identical_reports() -> None:
    first, second = _run(21), _run(21)
    assert first == second
    assert '"requests_total"' in first


def test_a_different_seed_gives_a_different_run() -> None:
    assert _run(21) != _run(22)
