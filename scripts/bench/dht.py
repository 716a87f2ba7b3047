#!/usr/bin/env python3
"""DHT benchmark, ours against js-libp2p side by side; prints ONE JSON object.

In one run, for a network of ``--nodes`` of our nodes (one process) and one of
``--nodes`` real js-libp2p kad-dht nodes (one process each, tests/interop/jsnode.mjs,
pinned npm packages), all on 127.0.0.1:

* ``latency_ms``: p50 / p95 of ``find_peer``, ``provide`` and ``find_providers``
  (time to the first provider), ``--ops`` of each, run one after the other from
  rotating nodes. js calls go through the harness's stdin/stdout JSON pipe; its round
  trip is reported as ``harness_rtt_ms`` so it can be subtracted.
* ``find_node``: FIND_NODE requests per second that one node serves, measured by the
  same Python load generator (scripts/bench/kad_load.py) in a child process, so it
  never shares the server's event loop.
* ``memory``: ours as the RSS growth of this process per node built (and the RSS of a
  separate process holding one node); js as the VmRSS of each node process.

Usage: ``.venv/bin/python scripts/bench/dht.py [--nodes 10] [--ops 30] [--requests 3000]
[--concurrency 16] [--quick] [--no-js]``. ``--quick`` = 2 nodes, 3 ops, 200 requests:
a smoke run. Every loop is bounded by these numbers and every call by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from multiformats import CID  # noqa: E402

import zikade_py  # noqa: E402
from tests.interop.jsnode import (  # noqa: E402
    INTEROP_DIR,
    JS_UNAVAILABLE_REASON,
    JsNode,
    js_available,
    sha256_multihash,
)
from zikade_py.dht.config import NodeConfig  # noqa: E402
from zikade_py.dht.node import Node  # noqa: E402
from zikade_py.p2p.peer_id import PeerID  # noqa: E402

LOADGEN = Path(__file__).resolve().parent / "kad_load.py"
OP_TIMEOUT = 30.0
SETUP_TIMEOUT = 120.0
TABLE_WAIT = 20.0
JS_PACKAGES = ("libp2p", "@libp2p/kad-dht", "@chainsafe/libp2p-noise", "@chainsafe/libp2p-yamux")
QUICK = {"nodes": 2, "ops": 3, "requests": 200, "concurrency": 4}


# ------------------------------------------------------------------------------ measuring


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Sample:
    """Latencies (seconds) of one operation and the failures seen."""

    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def time(self, op: Callable[[], Awaitable[bool]]) -> None:
        """Run ``op`` (bounded); it returns whether the answer was the expected one."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                ok = await op()
        except Exception as err:  # a failed op is data, not a crash of the benchmark
            self.failures.append(f"{type(err).__name__}: {err}"[:200])
            return
        if ok:
            self.seconds.append(time.perf_counter() - start)
        else:
            self.failures.append("wrong answer")

    def summary(self) -> dict[str, Any]:
        """p50/p95/mean in milliseconds, count, failures (first few messages)."""
        out: dict[str, Any] = {"n": len(self.seconds), "failures": len(self.failures)}
        if self.seconds:
            ms = [s * 1000 for s in self.seconds]
            out |= {
                "p50": round(percentile(ms, 50), 2),
                "p95": round(percentile(ms, 95), 2),
                "mean": round(statistics.fmean(ms), 2),
            }
        if self.failures:
            out["failure_examples"] = self.failures[:3]
        return out


def vm_rss(pid: int | str = "self") -> int:
    """Resident set size in bytes from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def fresh_cid(tag: str) -> tuple[str, bytes]:
    """A new CIDv1 raw string and its sha2-256 multihash (the provider key)."""
    mh = sha256_multihash(f"{tag}-{os.urandom(8).hex()}".encode())
    return str(CID("base32", 1, "raw", mh)), mh


def pairs(n: int, count: int, rng: random.Random) -> list[tuple[int, int]]:
    """``count`` (querier, target) index pairs with querier != target."""
    out = []
    for _ in range(count):
        a = rng.randrange(n)
        b = rng.randrange(n - 1)
        out.append((a, b if b < a else b + 1))
    return out


async def find_node_load(target: str, requests: int, concurrency: int) -> dict[str, Any]:
    """Run the load generator in a child process against ``target``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LOADGEN),
        target,
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(300):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "load generator timed out"}
    if proc.returncode != 0:
        return {"error": err.decode(errors="replace")[-500:]}
    result: dict[str, Any] = json.loads(out)
    return result


async def wait_tables(
    sizes: Callable[[], list[int] | Awaitable[list[int]]], want: int, limit: float = TABLE_WAIT
) -> None:
    """Wait (at most ``limit`` s) until every routing table holds ``want`` peers, so both
    networks are measured fully joined; whatever the sizes then, they are reported."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = sizes()
        current = await got if not isinstance(got, list) else got
        if min(current) >= want:
            return
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------------------ our network


@asynccontextmanager
async def our_network(n: int) -> AsyncIterator[list[Node]]:
    """``n`` of our server nodes; the first is everyone's bootstrap peer."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(NodeConfig(mode="server", bootstrap=[])))
        seed = str(first.listen_addrs[0].with_peer_id(first.peer_id))
        rest = [Node(NodeConfig(mode="server", bootstrap=[seed])) for _ in range(n - 1)]
        for node in rest:
            await stack.enter_async_context(node)
        nodes = [first, *rest]
        async with asyncio.timeout(SETUP_TIMEOUT):
            await asyncio.gather(*(node.bootstrap() for node in rest))
            # a second round lets early joiners learn about the later ones
            await asyncio.gather(*(node.bootstrap() for node in nodes))
        await wait_tables(lambda: [len(node.routing_table()) for node in nodes], n - 1)
        yield nodes


async def first_provider(node: Node, cid: str) -> str | None:
    """The first provider ``node`` finds for ``cid`` (then the lookup is stopped)."""
    it = node.find_providers(cid, count=1, timeout=OP_TIMEOUT)
    try:
        async for provider in it:
            return str(provider.peer_id)
        return None
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


async def bench_ours(n: int, ops: int, requests: int, concurrency: int) -> dict[str, Any]:
    """Latencies, FIND_NODE rate and memory of ``n`` of our nodes in this process."""
    rng = random.Random(1)
    gc.collect()
    rss_before = vm_rss()
    find_peer, provide, find_providers = Sample(), Sample(), Sample()
    async with our_network(n) as nodes:
        table_sizes = [len(node.routing_table()) for node in nodes]
        for a, b in pairs(n, ops, rng):
            want = nodes[b].peer_id

            async def fp(a: int = a, want: PeerID = want) -> bool:
                # a network lookup, like the harness's findPeer (useCache: false)
                found = await nodes[a].find_peer(want, timeout=OP_TIMEOUT, local_first=False)
                return found.peer_id == want

            await find_peer.time(fp)
        provided: list[tuple[int, str]] = []
        for i in range(ops):
            cid, _ = fresh_cid(f"ours-{i}")
            provider = i % n

            async def pv(provider: int = provider, cid: str = cid) -> bool:
                result = await nodes[provider].provide(cid, timeout=OP_TIMEOUT)
                return bool(result.contacted)

            await provide.time(pv)
            provided.append((provider, cid))
        for i, (provider, cid) in enumerate(provided):
            querier = (provider + 1 + i % (n - 1)) % n
            want_id = str(nodes[provider].peer_id)

            async def fpr(querier: int = querier, cid: str = cid, want_id: str = want_id) -> bool:
                return await first_provider(nodes[querier], cid) == want_id

            await find_providers.time(fpr)
        gc.collect()
        rss_after = vm_rss()
        target = str(nodes[0].listen_addrs[0].with_peer_id(nodes[0].peer_id))
        load = await find_node_load(target, requests, concurrency)
        load["server_routing_table"] = len(nodes[0].routing_table())
        one_node_rss = await one_node_process_rss(target)
    return {
        "routing_table_sizes": table_sizes,
        "latency_ms": {
            "find_peer": find_peer.summary(),
            "provide": provide.summary(),
            "find_providers": find_providers.summary(),
        },
        "find_node": load,
        "memory": {
            "rss_delta_per_node_bytes": (rss_after - rss_before) // n,
            "process_rss_before_nodes_bytes": rss_before,
            "process_rss_one_node_bytes": one_node_rss,
        },
    }


async def one_node_process_rss(seed: str) -> int | None:
    """VmRSS of a fresh Python process holding one bootstrapped node (like a js process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--one-node-rss",
        seed,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return int(out) if proc.returncode == 0 and out.strip() else None


async def _one_node_rss(seed: str) -> None:
    async with Node(NodeConfig(mode="server", bootstrap=[seed])) as node:
        await node.bootstrap(timeout=30)
        gc.collect()
        print(vm_rss())


# ------------------------------------------------------------------------------ js network


@asynccontextmanager
async def js_network(n: int) -> AsyncIterator[list[JsNode]]:
    """``n`` js-libp2p DHT servers started concurrently, all bootstrapped via the first."""
    nodes = [JsNode() for _ in range(n)]
    try:
        async with asyncio.timeout(SETUP_TIMEOUT):
            await asyncio.gather(*(node.start() for node in nodes))
            seed = nodes[0].addrs[0]
            await asyncio.gather(*(node.bootstrap([seed], timeout_ms=60_000) for node in nodes[1:]))
            # a second round (a refresh on each) lets early joiners learn about later ones
            await asyncio.gather(*(node.bootstrap([], timeout_ms=60_000) for node in nodes))

        async def sizes() -> list[int]:
            return [len(await node.routing_table()) for node in nodes]

        await wait_tables(sizes, n - 1)
        yield nodes
    finally:
        await asyncio.gather(*(node.close() for node in nodes))


async def bench_js(n: int, ops: int, requests: int, concurrency: int) -> dict[str, Any]:
    """The same operations, rate and memory for ``n`` js-libp2p nodes."""
    rng = random.Random(1)
    find_peer, provide, find_providers, harness = Sample(), Sample(), Sample(), Sample()
    async with js_network(n) as nodes:
        table_sizes = [len(await node.routing_table()) for node in nodes]
        for _ in range(max(ops, 10)):

            async def rtt(node: JsNode = nodes[0]) -> bool:
                return bool(await node.info())

            await harness.time(rtt)
        for a, b in pairs(n, ops, rng):
            want = nodes[b].peer_id

            async def fp(a: int = a, want: str = want) -> bool:
                found = await nodes[a].find_peer(want, timeout_ms=int(OP_TIMEOUT * 1000))
                return found is not None and found["id"] == want

            await find_peer.time(fp)
        provided: list[tuple[int, bytes]] = []
        for i in range(ops):
            _, mh = fresh_cid(f"js-{i}")
            provider = i % n

            async def pv(provider: int = provider, mh: bytes = mh) -> bool:
                res = await nodes[provider].provide(multihash=mh, timeout_ms=int(OP_TIMEOUT * 1000))
                return bool(res["sentTo"])

            await provide.time(pv)
            provided.append((provider, mh))
        for i, (provider, mh) in enumerate(provided):
            querier = (provider + 1 + i % (n - 1)) % n
            want_id = nodes[provider].peer_id

            async def fpr(querier: int = querier, mh: bytes = mh, want_id: str = want_id) -> bool:
                found = await nodes[querier].find_providers(
                    multihash=mh, count=1, timeout_ms=int(OP_TIMEOUT * 1000)
                )
                return bool(found) and found[0]["id"] == want_id

            await find_providers.time(fpr)
        rss = [vm_rss(node.pid) for node in nodes if node.pid is not None]
        heap = [int((await node.metrics())["heapUsedBytes"]) for node in nodes]
        load = await find_node_load(nodes[0].addrs[0], requests, concurrency)
        load["server_routing_table"] = len(await nodes[0].routing_table())
    return {
        "routing_table_sizes": table_sizes,
        "harness_rtt_ms": harness.summary(),
        "latency_ms": {
            "find_peer": find_peer.summary(),
            "provide": provide.summary(),
            "find_providers": find_providers.summary(),
        },
        "find_node": load,
        "memory": {
            "process_rss_mean_bytes": int(statistics.fmean(rss)) if rss else None,
            "process_rss_max_bytes": max(rss, default=None),
            "heap_used_mean_bytes": int(statistics.fmean(heap)) if heap else None,
        },
    }


# ------------------------------------------------------------------------------ the run


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        # other work on the machine skews every figure; this says how busy it was
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, Any]:
    """Our package, Python, Node and the pinned js packages actually installed."""
    out: dict[str, Any] = {
        "zikade_py": zikade_py.__version__,
        "python": platform.python_version(),
    }
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        out["node"] = node.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out["node"] = None
    for pkg in JS_PACKAGES:
        manifest = INTEROP_DIR / "node_modules" / pkg / "package.json"
        out[pkg] = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both sides, ours first (so no js process competes for the CPU while ours runs)."""
    result: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "config": {
            "nodes": args.nodes,
            "ops": args.ops,
            "find_node_requests": args.requests,
            "find_node_concurrency": args.concurrency,
            "quick": args.quick,
        },
    }
    result["ours"] = await bench_ours(args.nodes, args.ops, args.requests, args.concurrency)
    if args.no_js:
        result["js"] = {"skipped": "--no-js"}
    elif not js_available():
        result["js"] = {"skipped": JS_UNAVAILABLE_REASON}
    else:
        result["js"] = await bench_js(args.nodes, args.ops, args.requests, args.concurrency)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    """Parse the arguments, run, print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--ops", type=int, default=30, help="operations of each kind")
    parser.add_argument("--requests", type=int, default=3000, help="FIND_NODE requests")
    parser.add_argument("--concurrency", type=int, default=16, help="load generator streams")
    parser.add_argument("--quick", action="store_true", help="2 nodes, 3 ops: a smoke run")
    parser.add_argument("--no-js", action="store_true", help="skip the js-libp2p network")
    parser.add_argument("--one-node-rss", metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_node_rss:
        asyncio.run(_one_node_rss(args.one_node_rss))
        return
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.nodes < 2 or args.ops < 1:
        parser.error("need --nodes >= 2 and --ops >= 1")
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
