"""Same seed, same report: the simulator is exactly reproducible (issue 2, acceptance 4)."""

from __future__ import annotations

import json
from dataclasses import replace

from zikade_py.sim import NON_DETERMINISTIC, run_simulation
from zikade_py.sim.factory import coordinator_factory, sim_coordinator_config
from zikade_py.sim.network import NetworkConfig
from zikade_py.sim.presets import AMINO
from zikade_py.sim.simulation import SimConfig, Simulation


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


def _run_with_contacts(config: SimConfig, skip: bool) -> str:
    sim = Simulation(config, coordinator_factory(sim_coordinator_config(prefill=config.prefill)))
    sim.skip_idle_contacts = skip
    return _canonical(sim.run())


def test_skipping_contacts_that_change_nothing_changes_no_report() -> None:
    # The simulator leaves out the inbound-contact event when the server's table
    # neither holds nor would seat the asker and nothing is due: the run must be the
    # same as with every event delivered (realistic join with explore and probes,
    # then churn, loss, slow and silent nodes, and the amino model's operations).
    plain = SimConfig(
        nodes=150, lookups=20, seed=5, join_batch=25, lookup_interval=0.3, settle=1500.0,
        network=NetworkConfig(loss=0.05, unresponsive=0.1, slow=0.1, churn=0.3),
    )  # settling past the 10-minute probe interval: seen-marks decide which checks run
    amino = SimConfig(
        nodes=120, lookups=10, seed=3, join_batch=30, lookup_interval=0.3,
        ops=("lookup", "provide", "find-providers"), network=replace(AMINO, churn=0.2),
    )
    for config in (plain, amino):
        skipped = _run_with_contacts(config, True)
        assert skipped == _run_with_contacts(config, False)
        assert '"requests_total"' in skipped
