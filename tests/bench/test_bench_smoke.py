"""scripts/bench/dht.py still runs: a ``--quick`` pass (2 nodes each side, 3 operations).

The benchmark is not a test and its figures are never asserted; this only proves the
script works end to end (our network, the js network through the harness, the
FIND_NODE load generator, the memory probes) and prints the promised JSON shape with
every operation answered correctly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "dht.py"
JS_READY = (
    shutil.which("node") is not None
    and (ROOT / "tests" / "interop" / "node_modules" / "libp2p").is_dir()
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not JS_READY, reason="needs node and tests/interop/node_modules"),
]

OPS = ("find_peer", "provide", "find_providers")


def test_quick_benchmark_prints_one_json_object() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)  # exactly one JSON document, nothing else

    assert result["machine"]["nproc"] >= 1
    assert result["versions"]["zikade_py"] and result["versions"]["@libp2p/kad-dht"]
    assert result["config"] == {
        "nodes": 2,
        "ops": 3,
        "find_node_requests": 200,
        "find_node_concurrency": 4,
        "quick": True,
    }
    for side in ("ours", "js"):
        section = result[side]
        for op in OPS:
            summary = section["latency_ms"][op]
            assert summary["failures"] == 0, (side, op, summary)
            assert summary["n"] == 3 and 0 < summary["p50"] <= summary["p95"], (side, op)
        load = section["find_node"]
        assert load["ok"] == 200 and load["errors"] == 0, (side, load)
        assert load["requests_per_s"] > 0
        # the other node of the pair is in the server's table and comes back
        assert load["mean_closer_peers"] >= 1, (side, load)
    assert result["ours"]["memory"]["process_rss_one_node_bytes"] > 0
    assert result["js"]["memory"]["process_rss_mean_bytes"] > 0
