"""``python -m zikade_py.sim``: run one simulation and print its report."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from zikade_py.sim import format_summary, run_simulation, sim_coordinator_config
from zikade_py.sim.network import LatencyConfig, NetworkConfig
from zikade_py.sim.presets import PRESETS
from zikade_py.sim.reprovide import STRATEGIES, run_reprovide
from zikade_py.sim.simulation import SimConfig

_NETWORK_FLAGS = (
    "loss",
    "unresponsive",
    "undialable",
    "clients",
    "slow",
    "slow_delay",
    "churn",
    "jitter",
    "handshake_rtts",
    "stream_rtts",
    "dial_timeout",
)


def build_parser() -> argparse.ArgumentParser:
    """The command line (flags mirror :class:`SimConfig` and :class:`NetworkConfig`)."""
    p = argparse.ArgumentParser(
        prog="python -m zikade_py.sim",
        description="Simulate a Kademlia network of zikade-py coordinators in virtual time.",
    )
    p.add_argument("--nodes", type=int, default=1000, help="nodes in the network (default 1000)")
    p.add_argument(
        "--lookups", type=int, default=100, help="operations of each kind to run (default 100)"
    )
    p.add_argument(
        "--ops",
        default="lookup",
        help="comma-separated operations: lookup, provide, find-providers (default lookup)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a measured network model (amino: the public IPFS DHT); flags override it",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--loss", type=float, help="message loss probability")
    p.add_argument("--unresponsive", type=float, help="fraction of nodes that go silent")
    p.add_argument(
        "--undialable", type=float, help="fraction of servers whose dials hang (time out)"
    )
    p.add_argument("--clients", type=float, help="fraction of nodes in client mode")
    p.add_argument("--slow", type=float, help="fraction of slow nodes")
    p.add_argument("--slow-delay", type=float, help="extra answer delay of slow nodes (s)")
    p.add_argument("--churn", type=float, help="fraction of nodes replaced per virtual minute")
    p.add_argument("--jitter", type=float, help="per-message jitter, fraction of link delay")
    p.add_argument(
        "--handshake-rtts", type=float, help="round trips of a first contact's handshake"
    )
    p.add_argument("--stream-rtts", type=float, help="round trips to open each request's stream")
    p.add_argument("--dial-timeout", type=float, help="seconds a dial to a dead peer hangs")
    p.add_argument("--latency-ms", type=float, help="median one-way link latency (ms)")
    p.add_argument("--latency-sigma", type=float, help="log-normal sigma (0: fixed latency)")
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
    p.add_argument(
        "--provider-keys",
        type=int,
        help="run one reprovide cycle of this many keys provided by one node (see --reprovide)",
    )
    p.add_argument(
        "--reprovide",
        choices=STRATEGIES,
        default="sweep",
        help="how --provider-keys are reprovided: sweep (region by region) or classic",
    )
    p.add_argument(
        "--reprovide-cycle",
        type=float,
        default=3600.0,
        help="virtual seconds of the sweep's cycle (default 3600; the cost does not depend on it)",
    )
    p.add_argument(
        "--reprovide-sample",
        type=int,
        default=1000,
        help="keys whose providers are looked for after the cycle (default 1000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def network_config(args: argparse.Namespace) -> NetworkConfig:
    """The preset's network (or the perfect default) with the flags given on top."""
    base = PRESETS[args.preset] if args.preset else NetworkConfig()
    given = {name: getattr(args, name) for name in _NETWORK_FLAGS}
    net = replace(base, **{k: v for k, v in given.items() if v is not None})
    if args.latency_ms is not None or args.latency_sigma is not None:
        median = base.latency.median if args.latency_ms is None else args.latency_ms / 1000.0
        sigma = base.latency.sigma if args.latency_sigma is None else args.latency_sigma
        net = replace(net, latency=LatencyConfig(median, sigma))
    return net


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
            ops=tuple(op.strip() for op in args.ops.split(",") if op.strip()),
            network=network_config(args),
        )
        config.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coordinator = sim_coordinator_config(prefill=args.prefill, explore=args.explore)
    if args.provider_keys is not None:
        if args.provider_keys < 1 or args.reprovide_sample < 0 or args.reprovide_cycle <= 0:
            print("error: --provider-keys must be positive", file=sys.stderr)
            return 2
        report = run_reprovide(
            replace(config, lookups=0), coordinator, keys=args.provider_keys,
            strategy=args.reprovide, sample=args.reprovide_sample, cycle=args.reprovide_cycle,
        )
    else:
        report = run_simulation(config, coordinator)
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(format_summary(report))
    return 0


if __name__ == "__main__":
    status = main()
    # The simulated network is garbage in reference cycles (a 10,000-node run: ~1 GB);
    # the interpreter's final collection would walk all of it for seconds only to exit.
    gc.freeze()
    sys.exit(status)
