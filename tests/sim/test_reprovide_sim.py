"""The reprovide cycle in the simulator: the sweep against the classic reprovider (issue 12,
acceptance 1 at a size a test can afford; scripts and README carry the 10,000-node figures)."""

from __future__ import annotations

import json

import pytest

from zikade_py.sim import SimConfig, sim_coordinator_config
from zikade_py.sim.__main__ import main
from zikade_py.sim.reprovide import run_reprovide

pytestmark = pytest.mark.timeout(300)


def cycle(strategy: str, keys: int, seed: int = 3) -> dict[str, object]:
    config = SimConfig(nodes=200, lookups=0, seed=seed, prefill=True)
    coordinator = sim_coordinator_config(prefill=True)
    return run_reprovide(config, coordinator, keys=keys, strategy=strategy, sample=200)


def test_sweep_needs_a_few_percent_of_the_classic_lookups_and_both_are_found() -> None:
    keys = 500
    sweep = cycle("sweep", keys)
    classic = cycle("classic", keys)
    assert classic["reprovide_lookups"] == keys
    assert sweep["stuck_timers"] == 0 and classic["stuck_timers"] == 0
    assert isinstance(sweep["reprovide_lookups"], int)
    # 200 nodes make 4 regions: ~20 lookups whatever the number of keys (at 10,000 nodes
    # and 100,000 keys it is under 1 %: README, Benchmarks).
    assert sweep["reprovide_lookups"] <= 0.1 * keys
    assert sweep["provider_found_rate"] == 1.0
    assert classic["provider_found_rate"] == 1.0
    # Every key reached its k closest either way; the sweep on far fewer streams.
    assert sweep["reprovide_records"] >= 20 * keys
    assert classic["reprovide_records"] == 20 * keys
    assert isinstance(sweep["reprovide_streams"], int)
    assert isinstance(classic["reprovide_streams"], int)
    assert sweep["reprovide_streams"] * 10 <= classic["reprovide_streams"]


def test_same_seed_same_report() -> None:
    a, b = cycle("sweep", 300, seed=9), cycle("sweep", 300, seed=9)
    for name in ("reprovide_lookups", "reprovide_streams", "reprovide_records",
                 "reprovide_virtual_s", "provider_found_rate"):  # fmt: skip
        assert a[name] == b[name], name


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--nodes", "200", "--prefill", "--provider-keys", "200", "--reprovide", "sweep",
            "--reprovide-sample", "50", "--seed", "2", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("reprovide_lookups", "reprovide_messages", "reprovide_virtual_s",
                 "provider_found_rate"):  # fmt: skip
        assert name in report
    assert report["provider_found_rate"] == 1.0
    assert main(["--provider-keys", "0", "--prefill"]) == 2
