#!/usr/bin/env python3
"""Peak memory of a daemon that is handed many CIDs at once (``zikade provide --from-file``).

Prints one JSON document. ``--nodes`` servers of ours run in this process on
127.0.0.1; one ``zikade daemon`` child (``--reprovide sweep``) runs under
``/usr/bin/time -v``. The daemon is handed ``--cids`` CIDs from a file and
announces them (sweep: a burst); when its ``provide stat`` shows nothing queued,
running or pending, it is stopped (SIGTERM) and its peak RSS, user and system
CPU seconds are read from ``time``'s report. With fewer than ``k`` servers the
whole keyspace is one region: the burst is as large as a burst gets.

The servers keep at most 50,000 of the daemon's records each (the store's
per-peer limit), so their memory stays small; they still read every record.

Run from the repo: ``.venv/bin/python scripts/bench/provide_rss.py [--cids 1000000] [--nodes 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from multiformats import CID, multihash

from zikade_py.dht import Node, NodeConfig
from zikade_py.p2p.host import HostConfig

BIN = Path(sys.executable).parent
ZIKADE = str(BIN / "zikade")
SERVER = NodeConfig(
    mode="server",
    listen_addrs=["/ip4/127.0.0.1/tcp/0"],
    bootstrap=[],
    host=HostConfig(inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000),
    republish=False,
)


def env() -> dict[str, str]:
    """This environment without OpenTelemetry exporters."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def zikade(repo: Path, *args: str, timeout: float = 3600.0) -> str:
    """Run ``zikade ARGS`` on ``repo``; its stdout (raises on failure)."""
    e = env()
    e["ZIKADE_PATH"] = str(repo)
    proc = subprocess.run(
        [ZIKADE, *args], capture_output=True, env=e, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"zikade {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def write_cids(path: Path, n: int) -> None:
    """``n`` distinct CIDs (v1, raw, sha2-256, base32), one per line, written without
    holding them all (spelled out by hand: ``multiformats`` takes ~1 ms per CID here)."""
    with path.open("w") as f:
        for i in range(n):
            digest = hashlib.sha256(f"rss-{i}".encode()).digest()
            text = base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().rstrip("=")
            f.write(f"b{text.lower()}\n")


def child_of(pid: int) -> int:
    """The one child process of ``pid`` (the daemon under ``time``)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        if kids:
            return int(kids[0])
    raise RuntimeError("time has no child")


def time_report(text: str) -> dict[str, float]:
    """Peak RSS (MB) and CPU seconds from ``/usr/bin/time -v`` output."""
    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.:]+)", text)
        if m is None:
            raise RuntimeError(f"no {name!r} in time's report: {text[-2000:]}")
        return float(m.group(1))

    return {
        "peak_rss_mb": round(field("Maximum resident set size (kbytes)") / 1024, 1),
        "user_s": field("User time (seconds)"),
        "system_s": field("System time (seconds)"),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = [Node(SERVER) for _ in range(args.nodes)]
    await asyncio.gather(*(n.start() for n in servers))
    boot = str(servers[0].multiaddrs[0])
    for node in servers[1:]:
        await node.bootstrap([boot])
    tmp = Path(tempfile.mkdtemp(prefix="zikade-bench-provide-rss-"))
    repo = tmp / "repo"
    listing = tmp / "cids.txt"
    write_cids(listing, args.cids)
    first = listing.open().readline().strip()
    want = CID("base32", 1, "raw", multihash.digest(b"rss-0", "sha2-256"))
    assert first == str(want), (first, str(want))
    zikade(repo, "init", "--repo", str(repo), "--no-bootstrap")
    report = tmp / "time.txt"
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", "-o", str(report), ZIKADE, "daemon", "--repo", str(repo),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--bootstrap", boot,
         "--mode", "server", "--reprovide", "sweep"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                raise RuntimeError("the daemon exited")
            if line.startswith("Daemon is ready"):
                asyncio.get_running_loop().run_in_executor(None, proc.stdout.read)
                break
        t0 = time.perf_counter()
        await asyncio.to_thread(
            zikade, repo, "provide", "--from-file", str(listing), "--timeout", "3600"
        )
        handed = time.perf_counter() - t0
        deadline = time.monotonic() + args.timeout
        while True:
            doc = json.loads(await asyncio.to_thread(zikade, repo, "provide", "stat", "--json"))
            if (
                doc.get("keys") == args.cids
                and doc.get("burst_keys") == 0
                and doc.get("active_regions") == 0
                and int(doc.get("messages_total") or 0) >= args.cids
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the burst did not finish: {doc}")
            await asyncio.sleep(2.0)
        announced = time.perf_counter() - t0
        os.kill(child_of(proc.pid), signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 120)
        out: dict[str, Any] = {
            "cids": args.cids,
            "servers": args.nodes,
            "handed_wall_s": round(handed, 1),
            "announced_wall_s": round(announced, 1),
            "messages": doc.get("messages_total"),
            "streams": doc.get("streams_total"),
        }
        out.update(time_report(report.read_text()))
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.gather(*(n.close() for n in servers), return_exceptions=True)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cids", type=int, default=1_000_000)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args()
    print(json.dumps(await run(args)))


if __name__ == "__main__":
    asyncio.run(main())
