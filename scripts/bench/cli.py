#!/usr/bin/env python3
"""How long ``zikade`` takes to answer, as a person running it in a loop sees it.

Prints one JSON document. Every figure is the median wall time of ``--runs``
runs, measured in this one run beside ``python -c pass`` (the floor any Python
command pays on this machine):

* ``zikade --help`` and ``zikade id`` (a repo, no daemon), each a fresh process;
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


def wall(argv: Sequence[str], env: dict[str, str], *, ok: bool = True) -> float:
    """Seconds one run of ``argv`` took; fails loudly if it did not succeed."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    took = time.perf_counter() - start
    if ok and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    return took


def repeat(fn: Callable[[], float], runs: int) -> list[float]:
    """``runs`` timings of ``fn`` after one warm-up run (file cache, .pyc)."""
    fn()
    return [fn() for _ in range(runs)]


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
        wall([ZIKADE, "init"], env)
        floor = repeat(lambda: wall([sys.executable, "-c", "pass"], env), runs)
        result["python_c_pass_ms"] = _median_ms(floor)
        result["help_ms"] = _median_ms(repeat(lambda: wall([ZIKADE, "--help"], env), runs))
        result["id_no_daemon_ms"] = _median_ms(repeat(lambda: wall([ZIKADE, "id"], env), runs))

        net = Devnet(ns.nodes, Path(tmp) / "devnet", env)
        try:
            env["ZIKADE_PATH"] = str(net.repo)
            target = net.peers[-1]
            provided = new_cid(-1)
            wall([ZIKADE, "provide", provided], env)
            counter = iter(range(10**6))
            cases: dict[str, tuple[list[str], Callable[[], float]]] = {
                "id": (["id"], lambda: rpc(net.api, "id", [])),
                "find_peer": (
                    ["find-peer", target],
                    lambda: rpc(net.api, "routing/findpeer", [target], timeout="1m"),
                ),
                "find_providers": (
                    ["find-providers", provided],
                    lambda: rpc(
                        net.api, "routing/findprovs", [provided], timeout="1m",
                        **{"num-providers": "20"},
                    ),
                ),
            }  # fmt: skip
            daemon: dict[str, Any] = {}
            for name, (argv, query) in cases.items():
                cli = repeat(lambda argv=argv: wall([ZIKADE, *argv], env), runs)  # type: ignore[misc]
                py = repeat(query, runs)
                daemon[name] = _row(cli, py)
            # provide: a fresh CID every run, for the command and for the Python query alike
            cli = repeat(lambda: wall([ZIKADE, "provide", new_cid(next(counter))], env), runs)
            py = repeat(
                lambda: rpc(net.api, "routing/provide", [new_cid(next(counter))], timeout="1m"),
                runs,
            )
            daemon["provide"] = _row(cli, py)
            result["via_daemon"] = daemon
            result["devnet_nodes"] = ns.nodes
        finally:
            net.stop()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _row(cli: list[float], py: list[float]) -> dict[str, float]:
    return {
        "cli_ms": _median_ms(cli),
        "python_query_ms": _median_ms(py),
        "overhead_ms": round(_median_ms(cli) - _median_ms(py), 1),
    }


if __name__ == "__main__":
    main()
