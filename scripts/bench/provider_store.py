#!/usr/bin/env python3
"""Event-loop lag of a node whose SQLite store holds 1M provider records (issue 9,
acceptance 4); prints ONE JSON object.

The repo is filled directly with SQL (``--records`` provider records, a tenth of them
expired, and as many keys we provide ourselves), then a node opens it and serves a
load generator in a child process: ``--streams`` kad streams, each alternating
GET_PROVIDERS for stored keys and ADD_PROVIDER for new ones, for ``--seconds``. Halfway
through, the node runs one garbage collection (the expired tenth, in batches).
A probe in the node's event loop sleeps 5 ms at a time and records how late it
wakes: ``loop_lag.max_ms`` is the longest stall. ``busy_max_ms`` counts only the
lag during which the loop's thread itself was on the CPU (what our code did, not
the OS giving the CPU to another process on a small machine); ``idle_loop_lag`` is
the same probe for 3 s before the load starts (the machine's own noise).

Usage: ``.venv/bin/python scripts/bench/provider_store.py [--records 1000000]
[--seconds 20] [--streams 8] [--quick]`` (``--quick`` = 50,000 records, 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zikade_py.dht.config import NodeConfig  # noqa: E402
from zikade_py.dht.messages import (  # noqa: E402
    Message,
    encode_message,
    get_providers,
    read_message,
)
from zikade_py.dht.node import Node  # noqa: E402
from zikade_py.dht.protocol import KAD_PROTOCOL  # noqa: E402
from zikade_py.dht.stores import PROVIDER_VALIDITY, SqliteDatastore  # noqa: E402
from zikade_py.dht.stores.sqlite import DATASTORE_FILENAME  # noqa: E402
from zikade_py.dht.stores.sqlite_providers import pack_addrs  # noqa: E402
from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host, HostConfig  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
HOST = HostConfig(inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000)


def key(i: int) -> bytes:
    return b"\x12\x20" + i.to_bytes(32, "big")


def fill(repo: Path, records: int, peers: int = 1000) -> dict[str, float]:
    """``records`` provider rows from ``peers`` peers (a tenth expired) and ``records``
    local keys, inserted with plain SQL."""
    SqliteDatastore(repo / DATASTORE_FILENAME).close()  # schema
    started = time.perf_counter()
    pids = [b"\x00\x24\x08\x01\x12\x20" + os.urandom(32) for _ in range(peers)]
    blob = pack_addrs([Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")])
    now = time.time()
    old = now - PROVIDER_VALIDITY - 3600
    conn = sqlite3.connect(repo / DATASTORE_FILENAME)
    conn.execute("PRAGMA synchronous=OFF")
    batch = 100_000
    for start in range(0, records, batch):
        rows = [
            (key(i), pids[i % peers], old if i % 10 == 0 else now, blob, now)
            for i in range(start, min(start + batch, records))
        ]
        conn.executemany("INSERT INTO providers VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO local_provides VALUES (?, ?)", [(r[0], now) for r in rows]
        )
        conn.commit()
    conn.close()
    return {"fill_seconds": round(time.perf_counter() - started, 1)}


async def child_load(target: str, records: int, seconds: float, streams: int) -> None:
    addr = Multiaddr.parse(target)
    peer = addr.peer_id()
    assert peer is not None
    host = Host(PrivateKey.generate(), HOST)
    await host.start([Multiaddr.parse(LOOPBACK)])
    me = [a.to_bytes() for a in host.listen_addrs]
    await host.connect(peer, [addr.without_peer_id()], timeout=10)
    counts = {"get_providers": 0, "found": 0, "add_provider": 0, "errors": 0}
    deadline = time.monotonic() + seconds

    async def worker(w: int) -> None:
        stream = await host.new_stream(peer, [KAD_PROTOCOL], timeout=10)
        i = w
        while time.monotonic() < deadline:
            try:
                await stream.write(encode_message(get_providers(key((i * 7919) % records))))
                async with asyncio.timeout(10):
                    answer = await read_message(stream.reader)
                counts["get_providers"] += 1
                counts["found"] += bool(answer is not None and answer.providerPeers)
                msg = Message(type=Message.ADD_PROVIDER, key=key(records + i))
                msg.providerPeers.add(id=host.peer_id.multihash, addrs=me)
                await stream.write(encode_message(msg))
                counts["add_provider"] += 1
            except Exception:
                counts["errors"] += 1
                stream = await host.new_stream(peer, [KAD_PROTOCOL], timeout=10)
            i += streams

    await asyncio.gather(*(worker(w) for w in range(streams)))
    await host.close()
    print(json.dumps(counts), flush=True)


async def probe(lags: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t, c = time.perf_counter(), time.thread_time()
        await asyncio.sleep(0.005)
        lags.append((time.perf_counter() - t - 0.005, time.thread_time() - c))


def summary(lags: list[tuple[float, float]]) -> dict[str, Any]:
    walls = sorted(w for w, _ in lags) or [0.0]
    busy = sorted(min(w, c) for w, c in lags) or [0.0]
    return {
        "samples": len(lags),
        "max_ms": round(walls[-1] * 1000, 2),
        "p99_ms": round(walls[int(0.99 * (len(walls) - 1))] * 1000, 2),
        "busy_max_ms": round(busy[-1] * 1000, 2),
        "over_50ms": sum(1 for w in walls if w > 0.05),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "records": args.records,
    }
    with tempfile.TemporaryDirectory(prefix="zikade-1m-") as tmp:
        repo = Path(tmp)
        out.update(fill(repo, args.records))
        config = NodeConfig(mode="server", listen_addrs=[LOOPBACK], host=HOST, republish=False,
                            repo=repo,
                            gc_interval=10**6)
        t = time.perf_counter()
        async with Node(config) as node:
            out["open_seconds"] = round(time.perf_counter() - t, 2)
            # The same probe with no load first: what this machine's scheduler alone costs.
            idle: list[tuple[float, float]] = []
            stop_idle = asyncio.Event()
            idling = asyncio.create_task(probe(idle, stop_idle))
            await asyncio.sleep(3)
            stop_idle.set()
            await idling
            out["idle_loop_lag"] = summary(idle)
            lags: list[tuple[float, float]] = []
            stop = asyncio.Event()
            probing = asyncio.create_task(probe(lags, stop))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--child",
                str(node.multiaddrs[0]), str(args.records), str(args.seconds), str(args.streams),
                stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            )
            commits = node._datastore.commits if node._datastore else 0
            await asyncio.sleep(args.seconds / 2)
            t = time.perf_counter()
            removed = await node.collect_garbage()
            gc_seconds = time.perf_counter() - t
            out_bytes, _ = await asyncio.wait_for(proc.communicate(), args.seconds + 120)
            stop.set()
            await probing
            out["load"] = json.loads(out_bytes.decode().strip().splitlines()[-1])
            out["served_per_second"] = round(
                (out["load"]["get_providers"] + out["load"]["add_provider"]) / args.seconds
            )
            out["commits"] = (node._datastore.commits if node._datastore else 0) - commits
            out["loop_lag"] = summary(lags)
            now = time.time()
            expired_left = sum(
                1 for i in range(0, args.records, 10) if node.providers.get(key(i), now)
            )
            out["gc"] = {
                "removed": removed,
                "seconds": round(gc_seconds, 2),
                "expired_left": expired_left,
                "usage_after": node.providers.usage().records,
            }
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        target, records, seconds, streams = sys.argv[2:6]
        asyncio.run(child_load(target, int(records), float(seconds), int(streams)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.records, args.seconds = min(args.records, 50_000), min(args.seconds, 5.0)
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
