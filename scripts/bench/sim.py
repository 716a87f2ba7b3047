"""The simulator's benchmark scenarios (issue 8), one after the other, one JSON line each.

Not a test (tests never assert timings). Each scenario runs
``python -m zikade_py.sim ... --json`` in its own process, so its peak RSS is
its own, and prints the figures that matter for it plus ``wall_s``, ``cpu_s``
and ``peak_rss_mb``:

* ``amino-ops`` — 5,000 nodes on the Amino model, lookups, provides and
  find-providers (goals: first provider p90 ≤ 1.0 s, optimistic provide p50
  ≤ 1.0 s of virtual time);
* ``join-10k`` — 10,000 nodes joined realistically, 1,000 lookups (goal: ≤ 5 min wall);
* ``prefill-100k`` — 100,000 prefilled nodes, 1,000 lookups (goal: ≤ 15 min, ≤ 12 GB).

Run: ``.venv/bin/python scripts/bench/sim.py [SCENARIO ...]`` (default: all three,
never two at once). Big runs take minutes; run them in the background.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SCENARIOS: dict[str, list[str]] = {
    "amino-ops": [
        "--nodes", "5000", "--preset", "amino", "--ops", "lookup,provide,find-providers",
        "--lookups", "300", "--seed", "1",
    ],
    "join-10k": ["--nodes", "10000", "--lookups", "1000", "--seed", "1"],
    "prefill-100k": ["--nodes", "100000", "--prefill", "--lookups", "1000", "--seed", "1"],
}

FIELDS = (
    "success_rate",
    "closest_overlap_mean",
    "virtual_latency_ms_p50",
    "virtual_latency_ms_p95",
    "messages_per_lookup_mean",
    "join_requests_per_node_mean",
    "provide_ms_p50",
    "provide_ms_p90",
    "provide_optimistic_ms_p50",
    "provide_optimistic_ms_p90",
    "find_providers_success_rate",
    "find_providers_first_ms_p50",
    "find_providers_first_ms_p90",
    "join_wall_s",
    "lookup_wall_s",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"some of {', '.join(SCENARIOS)}")
    names = parser.parse_args().scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    for name in names:
        argv = [sys.executable, "-m", "zikade_py.sim", *SCENARIOS[name], "--json"]
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        report = json.loads(done.stdout)
        picked = {k: report[k] for k in FIELDS if report.get(k) is not None}
        print(json.dumps({"scenario": name, "args": " ".join(SCENARIOS[name]), **picked}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
