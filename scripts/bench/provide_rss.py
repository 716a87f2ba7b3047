#!/usr/bin/env python3
"""Peak memory of a node that is handed a million CIDs at once (the sweep's burst).

Prints one JSON document. ``--nodes`` servers of ours run in this process on
127.0.0.1. The provider is a child process under ``/usr/bin/time -v``: a node
with a repo (SQLite, ``reprovide="sweep"``) that reads ``--cids`` CIDs from a
file and hands them to ``Node.provide_many`` 20,000 at a time (as the daemon's
RPC API does per request), then waits until its ``provide_stat`` shows every
key announced and nothing queued or running. Its peak RSS, user and system
CPU seconds come from ``time``'s report. With fewer than ``k`` servers the
whole keyspace is one region: the burst is as large as a burst gets.

(Through ``zikade provide --from-file`` the figure would be the same plus the
CID parsing: the CLI and the daemon each decode every CID with
``multiformats``, ~1 ms apiece here, which makes a million take tens of minutes;
the child reads the base32 CIDs of the file by hand.)

The servers keep at most 50,000 of the provider's records each (the store's
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zikade_py.blocks.cid_text import text_multihash
from zikade_py.dht import Node, NodeConfig
from zikade_py.p2p.host import HostConfig

CHUNK = 20_000
"""CIDs per ``provide_many`` call (the CLI's request size)."""

HOST = HostConfig(inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000)
SERVER = NodeConfig(
    mode="server",
    listen_addrs=["/ip4/127.0.0.1/tcp/0"],
    bootstrap=[],
    host=HOST,
    republish=False,
)


def write_cids(path: Path, n: int) -> None:
    """``n`` distinct CIDs (v1, raw, sha2-256, base32), one per line."""
    with path.open("w") as f:
        for i in range(n):
            digest = hashlib.sha256(f"rss-{i}".encode()).digest()
            text = base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().rstrip("=")
            f.write(f"b{text.lower()}\n")


def multihashes(path: Path) -> Iterator[list[bytes]]:
    """The file's CIDs as multihashes, ``CHUNK`` at a time (parsed as the daemon does)."""
    chunk: list[bytes] = []
    with path.open() as f:
        for line in f:
            chunk.append(text_multihash(line.strip()))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


async def provider(repo: Path, boot: str, listing: Path, n: int) -> None:
    """The measured child: provide the file's CIDs, wait until all are announced."""
    config = NodeConfig(
        mode="server", repo=str(repo), listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        bootstrap=[boot], host=HOST, reprovide="sweep",
    )  # fmt: skip
    async with Node(config) as node:
        await node.bootstrap()
        t0 = time.perf_counter()
        for chunk in multihashes(listing):
            await node.provide_many(chunk)
        handed = time.perf_counter() - t0
        while True:
            doc = await node.provide_stat()
            if (
                doc.get("keys") == n
                and doc.get("burst_keys") == 0
                and doc.get("active_regions") == 0
                and int(str(doc.get("messages_total") or 0)) >= n
            ):
                break
            await asyncio.sleep(1.0)
        out = {
            "handed_wall_s": round(handed, 1),
            "announced_wall_s": round(time.perf_counter() - t0, 1),
            "messages": doc.get("messages_total"),
            "streams": doc.get("streams_total"),
        }
        print(json.dumps(out), flush=True)


def time_report(text: str) -> dict[str, float]:
    """Peak RSS (MB) and CPU seconds from ``/usr/bin/time -v`` output."""

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.]+)", text)
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
    listing = tmp / "cids.txt"
    write_cids(listing, args.cids)
    report = tmp / "time.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    cmd = ["/usr/bin/time", "-v", "-o", str(report), sys.executable, __file__, "--child",
           str(tmp / "repo"), boot, str(listing), "--cids", str(args.cids)]  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, env=env
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), args.timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"the provider failed: {report.read_text()[-2000:]}")
        out: dict[str, Any] = {"cids": args.cids, "servers": args.nodes}
        out.update(json.loads(stdout.decode().strip().splitlines()[-1]))
        out.update(time_report(report.read_text()))
        return out
    finally:
        await asyncio.gather(*(n.close() for n in servers), return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cids", type=int, default=1_000_000)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--child", nargs=3, metavar=("REPO", "BOOT", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        repo, boot, listing = args.child
        asyncio.run(provider(Path(repo), boot, Path(listing), args.cids))
        return
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
