#!/usr/bin/env python3
"""How long ``zikade`` takes to answer, as a person running it in a loop sees it.

Prints one JSON document. Every figure is the median wall time of ``--runs``
runs, measured in this one run beside ``python -c pass`` (the floor any Python
command pays on this machine):

* ``zikade --help`` and ``zikade id`` (a repo, no daemon), each a fresh process;
  beside each wall time (``*_ms``) the CPU time the process used (``*_cpu_ms``,
  user + system), which a busy machine hardly changes;
* ``zikade id``, ``find-peer``, ``find-providers`` and ``provide`` against the
  daemon of a running devnet (``zikade devnet``), each a fresh process, and the
  same RPC query made from Python in this process against that daemon
  (``python_query_ms``); ``overhead_ms`` is the difference, the price of the
  command line itself.

Run from the repo: ``.venv/bin/python scripts/bench/cli.py [--runs 7] [--nodes 8]``.
``--zikade PATH`` measures another installation of the command, e.g. one made by
``pip install .`` (the project's ``.venv`` has an editable install, whose import
hook costs every command some 10-30 ms of start-up that users of a normal install
never pay).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ZIKADE = str(BIN / "zikade")
"""The command measured (``--zikade`` changes it)."""
READY_TIMEOUT = 60.0


def _median_ms(samples: Sequence[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def child(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``argv``, which must succeed.

    The CPU time hardly depends on what else the machine runs, the wall time does:
    both are reported, so a run on a busy machine still says what the command costs.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def wall(argv: Sequence[str], env: dict[str, str]) -> float:
    """Wall seconds of one run of ``argv``."""
    return child(argv, env)[0]


def measure(argv: Callable[[], list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    """Of ``runs`` runs (after a warm-up): median wall ``ms``, ``min_ms`` (the least disturbed
    run), median ``cpu_ms`` (user + system)."""
    child(argv(), env)
    samples = [child(argv(), env) for _ in range(runs)]
    return {
        "ms": _median_ms([w for w, _ in samples]),
        "min_ms": round(min(w for w, _ in samples) * 1000, 1),
        "cpu_ms": _median_ms([c for _, c in samples]),
    }


def repeat(fn: Callable[[], float], runs: int) -> list[float]:
    """``runs`` timings of ``fn`` after one warm-up run (file cache, .pyc)."""
    fn()
    return [fn() for _ in range(runs)]


def _always(argv: list[str]) -> Callable[[], list[str]]:
    return lambda: argv


def rpc(api: tuple[str, int], command: str, args: Sequence[str], **options: str) -> float:
    """One RPC query from Python (a fresh connection, the whole answer read); seconds."""
    query = urllib.parse.urlencode([*(("arg", a) for a in args), *options.items()])
    start = time.perf_counter()
    conn = http.client.HTTPConnection(*api, timeout=60)
    conn.request("POST", f"/api/v0/{command}?{query}", body=b"")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    took = time.perf_counter() - start
    if resp.status != 200 or b'"Type":"error"' in body:
        raise SystemExit(f"RPC {command} failed: {body[:300]!r}")
    return took


class Devnet:
    """``zikade devnet -n N`` as a child; node 0's daemon serves the RPC API on a repo."""

    def __init__(self, nodes: int, repo: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [ZIKADE, "devnet", "-n", str(nodes), "--repo", str(repo)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.repo = repo
        self.peers: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().startswith("node "):
                self.peers.append(line.split()[2].rsplit("/p2p/", 1)[1])
            if line.startswith("devnet is ready") or time.monotonic() > deadline:
                break
        if not self.peers:
            self.stop()
            raise SystemExit("the devnet did not start")
        addr = (repo / "api").read_text().strip().split("/")
        self.api = (addr[2], int(addr[4]))

    def stop(self) -> None:
        """SIGTERM, bounded wait, kill."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def new_cid(i: int) -> str:
    """A fresh CIDv1 (raw, sha2-256) in base32, without multiformats."""
    import base64

    digest = hashlib.sha256(f"zikade cli bench {time.time_ns()} {i}".encode()).digest()
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def main() -> None:
    """Measure and print the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--zikade", default=None, help="the zikade command to measure")
    ns = parser.parse_args()
    runs: int = ns.runs
    global ZIKADE
    ZIKADE = ns.zikade or ZIKADE

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result: dict[str, Any] = {
        "runs": runs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "zikade": ZIKADE,
    }
    with tempfile.TemporaryDirectory(prefix="zikade-bench-cli-") as tmp:
        offline = Path(tmp) / "offline"
        env["ZIKADE_PATH"] = str(offline)
        wall([ZIKADE, "init", "--no-bootstrap"], env)  # measured offline: never the public peers
        for name, argv in (
            ("python_c_pass", [sys.executable, "-c", "pass"]),
            ("help", [ZIKADE, "--help"]),
            ("id_no_daemon", [ZIKADE, "id"]),
        ):
            got = measure(_always(argv), env, runs)
            for key, value in got.items():
                result[f"{name}_{key}"] = value

        net = Devnet(ns.nodes, Path(tmp) / "devnet", env)
        try:
            env["ZIKADE_PATH"] = str(net.repo)
            target = net.peers[-1]
            provided = new_cid(-1)
            wall([ZIKADE, "provide", provided], env)
            counter = iter(range(10**6))
            cases: dict[str, tuple[Callable[[], list[str]], Callable[[], float]]] = {
                "id": (lambda: [ZIKADE, "id"], lambda: rpc(net.api, "id", [])),
                "find_peer": (
                    lambda: [ZIKADE, "find-peer", target],
                    lambda: rpc(net.api, "routing/findpeer", [target], timeout="1m"),
                ),
                "find_providers": (
                    lambda: [ZIKADE, "find-providers", provided],
                    lambda: rpc(
                        net.api, "routing/findprovs", [provided], timeout="1m",
                        **{"num-providers": "20"},
                    ),
                ),
                # a fresh CID every run, for the command and for the Python query alike
                "provide": (
                    lambda: [ZIKADE, "provide", new_cid(next(counter))],
                    lambda: rpc(
                        net.api, "routing/provide", [new_cid(next(counter))], timeout="1m"
                    ),
                ),
            }  # fmt: skip
            daemon: dict[str, Any] = {}
            for name, (make_argv, query) in cases.items():
                cli = measure(make_argv, env, runs)
                py = _median_ms(repeat(query, runs))
                daemon[name] = {
                    "cli_ms": cli["ms"],
                    "cli_min_ms": cli["min_ms"],
                    "cli_cpu_ms": cli["cpu_ms"],
                    "python_query_ms": py,
                    "overhead_ms": round(cli["ms"] - py, 1),
                }
            result["via_daemon"] = daemon
            result["devnet_nodes"] = ns.nodes
        finally:
            net.stop()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
