"""Discrete-event simulator: thousands of sans-IO coordinators in virtual time.

It exists because no loopback network can show how the core behaves at the
scale of the real DHT (10,000 nodes, loss, silent and departing peers), and
because virtual time makes such runs exact and repeatable: same seed, same
report. It never opens a socket and never sleeps (DESIGN.md §1, §3).

``python -m zikade_py.sim --nodes N --lookups L --seed S [--json]`` runs one;
:func:`run_simulation` does the same from Python.
"""

from __future__ import annotations

import resource
import sys
import time

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.sim.factory import coordinator_factory, sim_coordinator_config
from zikade_py.sim.metrics import NON_DETERMINISTIC, format_summary
from zikade_py.sim.network import LatencyConfig, NetworkConfig
from zikade_py.sim.presets import PRESETS
from zikade_py.sim.simulation import SimConfig, Simulation, SimulationError

__all__ = [
    "NON_DETERMINISTIC",
    "PRESETS",
    "CoordinatorConfig",
    "LatencyConfig",
    "NetworkConfig",
    "SimConfig",
    "Simulation",
    "SimulationError",
    "format_summary",
    "peak_rss_mb",
    "run_simulation",
    "sim_coordinator_config",
]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def run_simulation(
    config: SimConfig, coordinator: CoordinatorConfig | None = None
) -> dict[str, object]:
    """Run one simulation with real coordinators; the report with ``wall_s`` and ``peak_rss_mb``.

    ``coordinator`` defaults to :func:`sim_coordinator_config` for the run's mode.
    """
    start = time.perf_counter()
    cpu_start = time.process_time()
    if coordinator is None:
        coordinator = sim_coordinator_config(prefill=config.prefill)
    report = Simulation(config, coordinator_factory(coordinator)).run()
    report["explore"] = coordinator.routing.enable_explore
    report["probe"] = coordinator.routing.enable_probe
    report["wall_s"] = round(time.perf_counter() - start, 3)
    report["cpu_s"] = round(time.process_time() - cpu_start, 3)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report
