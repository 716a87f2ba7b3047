"""scripts/bench/attack.py's DHT scenarios still run (issue 9, 1d/1e): a small pass without js.

Its figures are never asserted (loop lag is a timing); this proves every scenario
runs end to end against a real node and prints one JSON object with one key per
scenario, the flood capped as configured and the huge answer cut to the parse cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zikade_py.dht.messages import MAX_CLOSER_PEERS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "attack.py"

pytestmark = pytest.mark.timeout(180)


def test_attack_benchmark_prints_one_key_per_scenario() -> None:
    proc = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--scenario", "store_flood",
            "--scenario", "huge_find_node_answer", "--no-js", "--settle", "0", "--records", "300",
            "--entries", "5000", "--cap-providers", "50", "--cap-values", "5",
        ],
        capture_output=True, text=True, timeout=170, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    flood, answer = result["store_flood"], result["huge_find_node_answer"]
    assert "error" not in flood and "error" not in answer, (flood, answer)
    assert flood["stored"]["attacker_providers"] == 50 and flood["stored"]["attacker_values"] == 5
    assert flood["capped"] and flood["legit"]["ok"] == flood["legit"]["tries"] > 0
    assert answer["closer_peers_kept"] == MAX_CLOSER_PEERS and answer["answers"] == 10
    for scenario in (flood, answer):
        assert set(scenario["resources"]) == {"before", "during_peak", "after"}
        assert set(scenario["resources"]["after"]) == {"rss", "fds", "tasks", "pymalloc_arenas"}
        verdict = scenario["verdict"]
        assert verdict["rounds"] == 1 and len(verdict["fds_after"]) == 1
        assert verdict["fds_back"] is (verdict["fds_after"][0] == verdict["baseline"]["fds"])
        assert scenario["loop_lag"]["samples"] > 0
