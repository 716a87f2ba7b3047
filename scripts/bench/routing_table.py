"""Micro-benchmark of RoutingTable.nearest(): calls per second on a 10,000-node table.

Not a test (tests never assert timings). Prints one JSON object:

* ``k20``: a k=20 table offered 10,000 random nodes (what a real node holds);
* ``all``: a table whose buckets are large enough to hold all 10,000 nodes;
* ``brute_force_calls_per_s``: a full sort of the 10,000 nodes per call, for scale.

Run: ``.venv/bin/python scripts/bench/routing_table.py [--nodes N] [--calls C] [--seed S]``
"""

from __future__ import annotations

import argparse
import json
import random
import time

from zikade_py.core.key import Key, closest
from zikade_py.core.routing_table import RoutingTable


def calls_per_s(fn: object, targets: list[Key], n: int) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for target in targets:
        fn(target, n)
    return len(targets) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=20, help="nodes asked of each nearest() call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    me = Key.from_int(rng.getrandbits(256))
    keys = [Key.from_int(rng.getrandbits(256)) for _ in range(args.nodes)]
    targets = [Key.from_int(rng.getrandbits(256)) for _ in range(args.calls)]

    k20 = RoutingTable(me)
    full = RoutingTable(me, bucket_size=args.nodes)
    for key in keys:
        k20.add(key, 0.0)
        full.add(key, 0.0)

    def brute(target: Key, n: int) -> list[Key]:
        return closest(keys, target, n)

    brute_targets = targets[: max(1, args.calls // 1000)]
    result = {
        "nodes_offered": args.nodes,
        "n": args.n,
        "k20": {
            "table_size": len(k20),
            "calls": args.calls,
            "calls_per_s": round(calls_per_s(k20.nearest, targets, args.n)),
        },
        "all": {
            "table_size": len(full),
            "calls": args.calls // 10,
            "calls_per_s": round(calls_per_s(full.nearest, targets[: args.calls // 10], args.n)),
        },
        "brute_force_calls_per_s": round(calls_per_s(brute, brute_targets, args.n)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
