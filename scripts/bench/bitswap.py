#!/usr/bin/env python3
"""Bitswap fetch and serve throughput, ours beside Helia's, on loopback; prints ONE JSON object.

Issue 13, acceptance 6. Three of our nodes (``ContentNode``, DHT servers, one the seed of
the other two) each add the same ``--size-mib`` file and provide it through the DHT. Then:

* ``fetch.zikade`` — a fresh zikade node in a child process joins through the seed and
  ``cat``s the file (providers from the DHT, blocks from all three);
* ``fetch.helia`` — a fresh Helia node (tests/interop/helianode.mjs, pinned npm packages)
  connects to the seed and ``cat``s the same file from the same three providers;
* ``serve_to_helia`` — one more of our nodes alone holds the file; a fresh Helia node
  connected only to it fetches it (our serving throughput to a js peer);
* ``reference_helia_serves_helia`` — the same with a Helia node serving (same CID), to
  tell Helia's own fetch speed from our serving.

Each fetch reports MiB/s, time to first byte, the fetcher's CPU seconds (ours) and its
memory (RSS at the end; ``max_rss_mib`` for ours). Our fetches check the bytes' SHA-256,
Helia's report it. A machine shared by other jobs makes wall times noisy: compare the
CPU figures too, and repeat with ``--runs``.

Usage: ``.venv/bin/python scripts/bench/bitswap.py [--size-mib 50] [--runs 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.interop.jsnode import INTEROP_DIR, JsNode  # noqa: E402
from zikade_py.dht import NodeConfig  # noqa: E402
from zikade_py.files import ContentNode  # noqa: E402
from zikade_py.p2p.host import HostConfig  # noqa: E402


class HeliaNode(JsNode):
    """tests/interop/helianode.mjs: Helia with bitswap and unixfs on js-libp2p."""

    script = INTEROP_DIR / "helianode.mjs"


def config(**kw: Any) -> NodeConfig:
    base: dict[str, Any] = dict(
        mode="server", listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], republish=False,
        host=HostConfig(inbound_per_ip_rate=1000.0, inbound_per_ip_burst=1000),
    )
    base.update(kw)
    return NodeConfig(**base)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def addr(node: ContentNode) -> str:
    return str(node.listen_addrs[0].with_peer_id(node.peer_id))


async def fetch_here(cid: str, seed: str) -> dict[str, Any]:
    """The child's job: join through ``seed``, cat ``cid``, report."""
    async with ContentNode(config(bootstrap=[seed])) as node:
        await node.bootstrap()
        c0, t0 = cpu(), time.perf_counter()
        ttfb = None
        size = 0
        digest = hashlib.sha256()
        async for chunk in node.cat(cid):
            if ttfb is None:
                ttfb = time.perf_counter() - t0
            size += len(chunk)
            digest.update(chunk)
        wall = time.perf_counter() - t0
        stat = node.bitswap.stat()
        return {
            "bytes": size, "sha256": digest.hexdigest(), "seconds": round(wall, 3),
            "mib_s": round(size / 2**20 / wall, 1), "ttfb_ms": round((ttfb or 0) * 1000, 1),
            "cpu_s": round(cpu() - c0, 2),
            "max_rss_mib": round(_hwm() / 2**20, 1),
            "rss_mib": round(_rss() / 2**20, 1),
            "duplicate_blocks": stat.duplicate_blocks,
            "peers_sent_blocks": stat.peers,
        }


def _hwm() -> int:
    """Peak RSS of this process image (VmHWM; ru_maxrss would carry the parent's peak
    across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def fetch_zikade(cid: str, seed: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--fetch", cid, "--seed", seed,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    if proc.returncode != 0:
        raise RuntimeError(f"fetcher failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


async def fetch_helia(cid: str, connect: list[str], tmp: Path) -> dict[str, Any]:
    async with HeliaNode(start_timeout=120) as helia:
        for a in connect:
            await helia.call("connect", addr=a)
        res = await helia.call("cat", cid=cid, file=str(tmp / "helia.out"), timeout_ms=600_000)
        stats = await helia.call("stats")
        size = int(res["size"])
        return {
            "bytes": size, "sha256": res["sha256"], "seconds": round(res["ms"] / 1000, 3),
            "mib_s": round(size / 2**20 / (res["ms"] / 1000), 1),
            "ttfb_ms": round(res["ttfbMs"] or 0, 1), "rss_mib": round(stats["memory"] / 2**20, 1),
        }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if len(runs) == 1:
        return runs[0]
    return {
        "runs": runs,
        "median_mib_s": statistics.median(r["mib_s"] for r in runs),
        "median_ttfb_ms": statistics.median(r["ttfb_ms"] for r in runs),
    }


async def bench(size_mib: int, runs: int) -> dict[str, Any]:
    data = os.urandom(size_mib * 2**20)
    want = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        async with ContentNode(config()) as seed:
            boot = [addr(seed)]
            async with ContentNode(config(bootstrap=boot)) as p2, ContentNode(
                config(bootstrap=boot)
            ) as p3:
                await p2.bootstrap()
                await p3.bootstrap()
                added = [await n.add(data) for n in (seed, p2, p3)]
                cid = added[0].cid
                assert all(a.cid == cid for a in added)
                ours = [await fetch_zikade(cid, addr(seed)) for _ in range(runs)]
                c0 = cpu()
                helia = [await fetch_helia(cid, boot, tmp) for _ in range(runs)]
                providers_cpu_helia = round(cpu() - c0, 2)
        async with ContentNode(config()) as alone:
            await alone.add(data, provide=False)
            c0 = cpu()
            serve = [await fetch_helia(cid, [addr(alone)], tmp) for _ in range(runs)]
            serve_cpu = round(cpu() - c0, 2)
        src = tmp / "file.bin"
        src.write_bytes(data)
        async with HeliaNode(start_timeout=120) as provider:
            added_js = await provider.call("add", file=str(src), profile="default",
                                           timeout_ms=120_000)
            assert added_js["cid"] == cid, "Helia's importer made another CID"
            reference = [await fetch_helia(cid, provider.addrs[:1], tmp) for _ in range(runs)]
    for r in (*ours, *helia, *serve, *reference):
        assert r["sha256"] == want and r["bytes"] == len(data), "bytes differ"
    return {
        "file_mib": size_mib, "cid": cid, "providers": 3,
        "fetch": {"zikade": summarize(ours), "helia": summarize(helia)},
        "providers_cpu_s_while_helia_fetched": providers_cpu_helia,
        "serve_to_helia": {**summarize(serve), "server_cpu_s": serve_cpu},
        "reference_helia_serves_helia": summarize(reference),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=50)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--fetch", help=argparse.SUPPRESS)
    ap.add_argument("--seed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fetch:
        print(json.dumps(asyncio.run(fetch_here(args.fetch, args.seed))))
        return
    print(json.dumps(asyncio.run(bench(args.size_mib, args.runs))))


if __name__ == "__main__":
    main()
