"""Shared pieces of the host benchmarks (``host.py`` and ``quic.py``).

Both scripts measure the same things per transport (fresh dials, one sink stream,
find_peer over fresh dials); keeping the measuring code here means their figures are
taken the same way and stay comparable. Not a script: imported by its neighbours,
which run with ``scripts/bench`` first on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from zikade_py.dht import Node, NodeConfig
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

ROOT = Path(__file__).resolve().parents[2]
BENCH_HOST = HostConfig(
    inbound_per_ip_rate=1e6, inbound_per_ip_burst=1_000_000, max_connections=10_000
)
LISTEN = {"quic": "/ip4/127.0.0.1/udp/0/quic-v1", "tcp": "/ip4/127.0.0.1/tcp/0"}
TRANSPORTS = ("tcp", "quic")
SINK = "/zikade/bench/sink/1.0.0"
JS_SINK_SCRIPT = ROOT / "tests" / "interop" / "bench_sink.mjs"


def cpu_seconds() -> float:
    """This process's user + system CPU time so far (wall time is noisy on a shared box)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(samples: list[float]) -> dict[str, float]:
    """Median and 90th percentile of ``samples`` (seconds), in ms."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median": round(statistics.median(ordered) * 1000, 2), "p90": round(p90 * 1000, 2)}


def pick(addrs: list[Multiaddr], transport: str) -> Multiaddr:
    """The first of ``addrs`` on ``transport`` ("tcp" or "quic"), without its peer id."""
    for addr in addrs:
        if (addr.quic_endpoint() if transport == "quic" else addr.tcp_endpoint()) is not None:
            return addr.without_peer_id()
    raise RuntimeError(f"no {transport} address in {addrs}")


async def gone(host: Host, peer: PeerID) -> None:
    """Wait (bounded) until ``host`` holds no connection to ``peer``."""
    for _ in range(2000):
        if not host.connmgr.connections(peer):
            return
        await asyncio.sleep(0.001)
    raise RuntimeError("connection did not go away")


async def fresh_dials(
    dialer: Host,
    peer: PeerID,
    addr: Multiaddr,
    count: int,
    after: Callable[[Host, PeerID], Awaitable[None]] | None,
    wait_remote_gone: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[float], float]:
    """``count`` sequential fresh connections (each gone before the next): the time of
    each from dial to up (plus ``after``), and the CPU seconds the loop took."""
    samples: list[float] = []
    cpu = cpu_seconds()
    for _ in range(count):
        start = time.perf_counter()
        conn = await dialer.connect(peer, [addr], timeout=10)
        if after is not None:
            await after(dialer, peer)
        samples.append(time.perf_counter() - start)
        await conn.close()
        await gone(dialer, peer)
        if wait_remote_gone is not None:
            await wait_remote_gone()
    return samples, cpu_seconds() - cpu


async def handshake_row(
    dialer: Host, peer: PeerID, addr: Multiaddr, count: int, remote: Host | None
) -> dict[str, Any]:
    """Dial-to-ready rate over ``count`` fresh connections, their median/p90 and CPU."""
    waiter = (lambda: gone(remote, dialer.peer_id)) if remote is not None else None
    start = time.perf_counter()
    samples, cpu = await fresh_dials(dialer, peer, addr, count, None, waiter)
    return {
        "handshakes_per_s": round(count / (time.perf_counter() - start), 1),
        "dial_ms": summary(samples),
        "cpu_ms_per_dial": round(cpu * 1000 / count, 2),
    }


async def sink(stream: Stream) -> None:
    """Our side of the sink protocol: count bytes to EOF, answer with the count."""
    n = 0
    while data := await stream.read():
        n += len(data)
    await stream.write(n.to_bytes(8, "big"))
    await stream.close()


async def throughput(dialer: Host, peer: PeerID, addr: Multiaddr, mib: int) -> dict[str, float]:
    """MiB/s through one stream to the peer's sink (including its final count), and this
    process's CPU per MiB; the connection is closed again afterwards."""
    await dialer.connect(peer, [addr], timeout=10)
    stream = await dialer.new_stream(peer, [SINK], timeout=10)
    chunk = bytes(1 << 20)
    cpu, start = cpu_seconds(), time.perf_counter()
    for _ in range(mib):
        await stream.write(chunk)
    await stream.close()
    reply = await stream.reader.read_exactly(8)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if int.from_bytes(reply, "big") != mib << 20:
        raise RuntimeError(f"sink counted {int.from_bytes(reply, 'big')} bytes")
    for conn in list(dialer.connmgr.connections(peer)):
        await conn.close()
    await gone(dialer, peer)
    return {"mib_s": round(mib / elapsed, 1), "cpu_ms_per_mib": round(cpu * 1000 / mib, 1)}


def js_missing() -> str | None:
    """Why the js peer cannot run here, or None when node and node_modules are present."""
    if shutil.which("node") is None:
        return "node not on PATH"
    if not (ROOT / "tests" / "interop" / "node_modules" / "libp2p").is_dir():
        return "tests/interop/node_modules missing (npm ci in tests/interop)"
    return None


@asynccontextmanager
async def js_sink(
    transports: tuple[str, ...] = TRANSPORTS,
) -> AsyncIterator[tuple[PeerID, list[Multiaddr]]]:
    """A js-libp2p sink node (tests/interop/bench_sink.mjs) listening on ``transports``:
    yields its peer id and listen addresses, stops it on exit."""
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_SINK_SCRIPT),
        json.dumps({"transports": list(transports)}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        async with asyncio.timeout(60):
            ready = json.loads(await proc.stdout.readline())
        yield PeerID.from_string(ready["peerId"]), [Multiaddr.parse(a) for a in ready["addrs"]]
    finally:
        proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def find_peer_fresh(
    size: int, lookups: int, transports: tuple[str, ...] = TRANSPORTS
) -> dict[str, Any]:
    """Two networks of ``size`` of our DHT servers, one TCP-only and one QUIC-only; a
    querier that knows only the bootstrap node looks up ``lookups`` members
    (``local_first=False``) after closing all its connections, so every hop is a fresh
    dial. Median/p90 per transport and the CPU per lookup (every node is in-process)."""
    from zikade_py.core.coordinator import CoordinatorConfig
    from zikade_py.core.routing.behaviour import RoutingConfig

    base = NodeConfig(
        mode="server",
        bootstrap=[],
        host=BENCH_HOST,
        republish=False,
        coordinator=CoordinatorConfig(routing=RoutingConfig(enable_explore=False)),
    )
    out: dict[str, Any] = {"nodes": size, "lookups": lookups}
    for transport in transports:
        listen = LISTEN[transport]
        boot = Node(replace(base, listen_addrs=[listen]))
        await boot.start()
        seed: list[str | Multiaddr] = [str(a) for a in boot.multiaddrs]
        nodes = [Node(replace(base, listen_addrs=[listen], bootstrap=seed)) for _ in range(size)]
        querier = Node(replace(base, listen_addrs=[listen], bootstrap=seed))
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            for node in nodes:
                await node.bootstrap()
            await querier.start()
            await querier.bootstrap()
            samples: list[float] = []
            cpu = cpu_seconds()
            for i in range(lookups):
                for conn in list(querier.host.connmgr.connections()):
                    await conn.close()
                target = nodes[(i * 7) % size]
                start = time.perf_counter()
                info = await querier.find_peer(target.peer_id, local_first=False, timeout=30)
                samples.append(time.perf_counter() - start)
                assert info.peer_id == target.peer_id
            out[transport] = {
                "find_peer_ms": summary(samples),
                "cpu_ms_per_lookup": round((cpu_seconds() - cpu) * 1000 / lookups, 1),
            }
        finally:
            await querier.close()
            await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)
            await boot.close()
    return out
