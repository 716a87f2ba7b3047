"""Command line of ``scripts/fuzz``: choose targets and a count, print the JSON report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .engine import Failure, Report, run_targets
from .targets import TARGETS


def _batch(report: Report) -> None:
    print(
        f"  {report.name}: {report.examples} examples so far, {report.crashes} crashes, "
        f"{report.hangs} hangs, {report.wall_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def _failure(failure: Failure) -> None:
    print(json.dumps(dataclasses.asdict(failure)), file=sys.stderr, flush=True)


def _progress(report: Report) -> None:
    print(
        f"{report.name}: {report.examples} examples, {report.crashes} crashes, "
        f"{report.hangs} hangs, {report.wall_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen decoders; exit status 1 if any example crashed or hung."""
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz",
        description="Fuzz every decoder a peer or HTTP client can reach; prints JSON.",
    )
    parser.add_argument("--examples", type=int, default=1000, help="examples per decoder")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(TARGETS),
        metavar="NAME",
        help=f"run only this decoder (repeatable): {', '.join(TARGETS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed (runs are reproducible)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="per-example CPU-time bound in seconds (a hang; awaits get 6x that in wall time)",
    )
    parser.add_argument("--list", action="store_true", help="list the decoders and exit")
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name}: {target.doc}")
        return 0
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    chosen = [TARGETS[name] for name in (args.only or TARGETS)]
    result = run_targets(
        chosen,
        args.examples,
        seed=args.seed,
        timeout=args.timeout,
        progress=_progress,
        on_batch=_batch,
        on_failure=_failure,
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 1 if result["crashes"] or result["hangs"] else 0
