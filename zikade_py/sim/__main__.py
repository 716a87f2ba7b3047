"""``python -m zikade_py.sim``: run one simulation and print its report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from zikade_py.sim import format_summary, run_simulation, sim_coordinator_config
from zikade_py.sim.network import LatencyConfig, NetworkConfig
from zikade_py.sim.simulation import SimConfig


def build_parser() -> argparse.ArgumentParser:
    """The command line (flags mirror :class:`SimConfig` and :class:`NetworkConfig`)."""
    p = argparse.ArgumentParser(
        prog="python -m zikade_py.sim",
        description="Simulate a Kademlia network of zikade-py coordinators in virtual time.",
    )
    p.add_argument("--nodes", type=int, default=1000, help="nodes in the network (default 1000)")
    p.add_argument("--lookups", type=int, default=100, help="lookups to run (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--loss", type=float, default=0.0, help="message loss probability")
    p.add_argument(
        "--unresponsive", type=float, default=0.0, help="fraction of nodes that go silent"
    )
    p.add_argument("--slow", type=float, default=0.0, help="fraction of slow nodes")
    p.add_argument(
        "--slow-delay", type=float, default=2.0, help="extra answer delay of slow nodes (s)"
    )
    p.add_argument(
        "--churn", type=float, default=0.0, help="fraction of nodes replaced per virtual minute"
    )
    p.add_argument(
        "--latency-ms", type=float, default=50.0, help="median one-way link latency (ms)"
    )
    p.add_argument(
        "--latency-sigma", type=float, default=0.5, help="log-normal sigma (0: fixed latency)"
    )
    p.add_argument(
        "--prefill", action="store_true", help="fill routing tables from global knowledge"
    )
    p.add_argument("--join-batch", type=int, default=50, help="nodes joining together")
    p.add_argument(
        "--join-interval", type=float, default=5.0, help="virtual seconds between join batches"
    )
    p.add_argument(
        "--settle", type=float, default=0.0, help="virtual seconds to run before the lookups"
    )
    p.add_argument(
        "--lookup-interval", type=float, default=0.05, help="virtual seconds between lookups"
    )
    p.add_argument(
        "--explore",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the coordinators' explore walks (default: on, off with --prefill)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run, print; exit status 2 for bad settings."""
    args = build_parser().parse_args(argv)
    try:
        config = SimConfig(
            nodes=args.nodes,
            lookups=args.lookups,
            seed=args.seed,
            prefill=args.prefill,
            join_batch=args.join_batch,
            join_interval=args.join_interval,
            settle=args.settle,
            lookup_interval=args.lookup_interval,
            network=NetworkConfig(
                latency=LatencyConfig(args.latency_ms / 1000.0, args.latency_sigma),
                loss=args.loss,
                unresponsive=args.unresponsive,
                slow=args.slow,
                slow_delay=args.slow_delay,
                churn=args.churn,
            ),
        )
        config.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coordinator = sim_coordinator_config(prefill=args.prefill, explore=args.explore)
    report = run_simulation(config, coordinator)
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(format_summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
