#!/usr/bin/env python3
"""Reproviding many CIDs on a loopback network: the sweep against the classic reprovider.

Prints one JSON document. For each strategy (``--strategies sweep,classic``) a
fresh network of ``--nodes`` nodes of ours runs on 127.0.0.1: ``--nodes - 1``
servers in this process and one ``zikade daemon`` child (``--reprovide
STRATEGY``). Then, measured:

1. ``provide``: ``zikade provide --from-file`` hands the daemon ``--cids`` CIDs;
   it announces them (sweep: in bursts by region; classic: one by one) — wall
   time until done;
2. every provider record the servers hold is expired (their stores are
   collected as if 49 h had passed), so what follows is judged alone;
3. ``reprovide``: ``zikade provide reprovide`` re-announces everything once —
   wall time, the daemon's CPU time, kad **streams** it opened (one per request,
   per classic ADD_PROVIDER, per sweep batch) and kad **messages** it sent (each
   ADD_PROVIDER counted, whether alone or in a batch), from ``provide stat``;
4. ``found_rate``: find-providers for ``--sample`` of the CIDs from random
   servers of this process (count 1, 10 s each) — the share that found the daemon.

``streams_ratio`` is classic streams over sweep streams (acceptance: at least 10).

Run from the repo: ``.venv/bin/python scripts/bench/provide.py [--cids 10000] [--nodes 30]``.
Timings on a shared machine are noisy; CPU time is printed beside wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from multiformats import CID, multihash

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.dht import Node, NodeConfig
from zikade_py.p2p.host import HostConfig

BIN = Path(sys.executable).parent
ZIKADE = str(BIN / "zikade")
HOST = HostConfig(
    inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000, max_pending_handshakes=512
)
SERVER = NodeConfig(
    mode="server",
    listen_addrs=["/ip4/127.0.0.1/tcp/0"],
    bootstrap=[],
    host=HOST,
    republish=False,
    coordinator=CoordinatorConfig(routing=RoutingConfig(enable_explore=False)),
)


def cids(n: int, tag: str) -> list[str]:
    """``n`` distinct CIDs."""
    return [
        str(CID("base32", 1, "raw", multihash.digest(f"{tag}-{i}".encode(), "sha2-256")))
        for i in range(n)
    ]


def zikade(repo: Path, *args: str, stdin: bytes = b"", timeout: float = 3600.0) -> str:
    """Run ``zikade ARGS`` on ``repo``; its stdout (raises on failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["ZIKADE_PATH"] = str(repo)
    proc = subprocess.run(
        [ZIKADE, *args], input=stdin, capture_output=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"zikade {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def stat(repo: Path) -> dict[str, Any]:
    doc = json.loads(zikade(repo, "provide", "stat", "--json", timeout=120))
    assert isinstance(doc, dict)
    return doc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def wait_sweep(repo: Path, done: int, timeout: float) -> dict[str, Any]:
    """Poll ``provide stat`` until nothing is queued or running (and ``done`` regions)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = await asyncio.to_thread(stat, repo)
        if (
            doc.get("burst_keys") == 0
            and doc.get("active_regions") == 0
            and doc.get("overdue_regions") == 0
            and int(doc.get("regions_done_cycle") or 0) >= done
        ):
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sweep did not settle: {doc}")
        await asyncio.sleep(0.5)


async def start_daemon(repo: Path, boot: str, strategy: str) -> tuple[subprocess.Popen[str], str]:
    zikade(repo, "init", "--repo", str(repo), "--no-bootstrap")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [ZIKADE, "daemon", "--repo", str(repo), "--listen", "/ip4/127.0.0.1/tcp/0",
         "--api", "127.0.0.1:0", "--bootstrap", boot, "--mode", "server",
         "--reprovide", strategy],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    peer = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise RuntimeError("the daemon exited")
        if line.startswith("peer identity: "):
            peer = line.split()[-1]
        if line.startswith("Daemon is ready"):
            # keep draining its output so it never blocks on a full pipe
            asyncio.get_running_loop().run_in_executor(None, proc.stdout.read)
            return proc, peer
    raise TimeoutError("the daemon did not start")


async def run(strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    servers = [Node(SERVER) for _ in range(args.nodes - 1)]
    await asyncio.gather(*(n.start() for n in servers))
    boot = str(servers[0].multiaddrs[0])
    for node in servers[1:]:
        node.add_peer(boot)
    for first in range(1, len(servers), 5):
        await asyncio.gather(*(n.bootstrap([boot]) for n in servers[first : first + 5]))
    tmp = Path(tempfile.mkdtemp(prefix=f"zikade-bench-provide-{strategy}-"))
    repo = tmp / "repo"
    proc, peer = await start_daemon(repo, boot, strategy)
    try:
        deadline = time.monotonic() + 60
        while True:  # the daemon knows most of the servers
            table = await asyncio.to_thread(zikade, repo, "routing-table", "--json", timeout=60)
            if table.count('"ID"') >= min(20, args.nodes // 2) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        mine = cids(args.cids, f"bench-{strategy}")
        listing = tmp / "cids.txt"
        listing.write_text("\n".join(mine) + "\n")
        t0 = time.perf_counter()
        await asyncio.to_thread(
            zikade, repo, "provide", "--from-file", str(listing), "--timeout", "3600"
        )
        if strategy == "sweep":
            await wait_sweep(repo, 0, 3600)
        provide_s = time.perf_counter() - t0
        now = time.time() + 3 * 86400
        for node in servers:  # forget every record: the reprovide is judged alone
            while await node.providers.gc_async(now, limit=100_000) >= 100_000:
                pass
        before = (await asyncio.to_thread(stat, repo))["wire"]
        cpu0 = cpu_seconds(proc.pid)
        t1 = time.perf_counter()
        await asyncio.to_thread(zikade, repo, "provide", "reprovide", "--timeout", "7200")
        after_doc = await wait_sweep(repo, 1, 7200) if strategy == "sweep" else None
        reprovide_s = time.perf_counter() - t1
        cpu = cpu_seconds(proc.pid) - cpu0
        after = (await asyncio.to_thread(stat, repo))["wire"]
        rng = random.Random(1)
        sample = rng.sample(mine, min(args.sample, len(mine)))
        found = 0
        for cid in sample:
            finder = servers[rng.randrange(len(servers))]
            async with contextlib.aclosing(finder.find_providers(cid, count=1, timeout=10)) as it:
                async for info in it:
                    if str(info.peer_id) == peer:
                        found += 1
                        break
        out: dict[str, Any] = {
            "strategy": strategy,
            "provide_wall_s": round(provide_s, 2),
            "reprovide_wall_s": round(reprovide_s, 2),
            "reprovide_daemon_cpu_s": round(cpu, 2),
            "reprovide_streams": after["streams"] - before["streams"],
            "reprovide_messages": after["messages"] - before["messages"],
            "reprovide_requests": after["requests"] - before["requests"],
            "found_rate": round(found / max(1, len(sample)), 4),
            "sample": len(sample),
        }
        if after_doc is not None:
            out["sweep_regions"] = after_doc.get("regions")
            out["sweep_lookups_cycle"] = after_doc.get("lookups_cycle")
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await asyncio.gather(*(n.close() for n in servers), return_exceptions=True)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cids", type=int, default=10_000)
    p.add_argument("--nodes", type=int, default=30)
    p.add_argument("--sample", type=int, default=200)
    p.add_argument("--strategies", default="sweep,classic")
    args = p.parse_args()
    results = {}
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        results[strategy] = await run(strategy, args)
        print(json.dumps(results[strategy]), file=sys.stderr, flush=True)  # partial results
    doc: dict[str, Any] = {"cids": args.cids, "nodes": args.nodes, "results": results}
    if "sweep" in results and "classic" in results:
        sweep, classic = results["sweep"], results["classic"]
        doc["streams_ratio"] = round(
            classic["reprovide_streams"] / max(1, sweep["reprovide_streams"]), 1
        )
        doc["messages_ratio"] = round(
            classic["reprovide_messages"] / max(1, sweep["reprovide_messages"]), 2
        )
    print(json.dumps(doc))


if __name__ == "__main__":
    asyncio.run(main())
