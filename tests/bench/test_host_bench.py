"""scripts/bench/host.py still runs: a tiny pass, TCP and QUIC, ours and js, one JSON.

The benchmark is not a test and its figures are never asserted; this only proves the
script works end to end on both transports (our sink, the js sink over TCP and over
@chainsafe/libp2p-quic, the fresh-dial find_peer networks) and prints the promised
JSON shape.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "host.py"
JS_READY = (
    shutil.which("node") is not None
    and (ROOT / "tests" / "interop" / "node_modules" / "libp2p").is_dir()
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not JS_READY, reason="needs node and tests/interop/node_modules"),
]


def test_tiny_run_prints_tcp_and_quic_rows() -> None:
    args = ["--dials", "2", "--mib", "1", "--network", "3", "--lookups", "1"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)  # exactly one JSON document, nothing else
    for pair in ("python_to_python", "python_to_js"):
        for transport in ("tcp", "quic"):
            row = result[pair][transport]
            assert row["handshakes_per_s"] > 0, (pair, transport)
            assert row["throughput"]["mib_s"] > 0, (pair, transport)
    for transport in ("tcp", "quic"):
        assert result["find_peer_fresh"][transport]["find_peer_ms"]["median"] > 0
