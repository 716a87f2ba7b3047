"""Issue 2, acceptance 3: 1,000 nodes joined realistically, 10 % of them silent."""

from __future__ import annotations

import pytest

from zikade_py.sim import run_simulation
from zikade_py.sim.network import NetworkConfig
from zikade_py.sim.simulation import SimConfig


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_thousand_nodes_realistic_join_ten_percent_unresponsive() -> None:
    config = SimConfig(
        nodes=1000,
        lookups=200,
        seed=1,
        prefill=False,
        network=NetworkConfig(unresponsive=0.1),
    )
    report = run_simulation(config)
    print(report)
    assert report["lookups_judged"] == 200
    bootstrap = report["bootstrap_reasons"]
    assert isinstance(bootstrap, dict) and sum(bootstrap.values()) == 999
    success = report["success_rate"]
    assert isinstance(success, float)
    assert success >= 0.99, report
