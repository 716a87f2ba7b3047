#!/usr/bin/env python3
"""Benchmark of the libp2p host on loopback; prints one JSON object.

Measures, between two of our hosts and between our host and a real js-libp2p
node (tests/interop/bench_sink.mjs, pinned npm packages):

* ``handshakes_per_s``: sequential dial-to-ready rate (TCP + mss + Noise XX +
  mss + yamux start; the connection is closed again right after);
* ``throughput_mib_s``: one yamux stream, ``--mib`` MiB written by us to a sink
  that counts the bytes and answers with the total (the time includes that answer).

Usage: ``.venv/bin/python scripts/bench/host.py [--dials N] [--mib M] [--no-js]``.
Everything runs on 127.0.0.1; loops are bounded by the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zikade_py.p2p.connection import Stream  # noqa: E402
from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host, HostConfig  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402
from zikade_py.p2p.peer_id import PeerID  # noqa: E402

SINK = "/zikade/bench/sink/1.0.0"
JS_SINK_SCRIPT = ROOT / "tests" / "interop" / "bench_sink.mjs"
CHUNK = 1 << 20
BENCH_CONFIG = HostConfig(
    inbound_per_ip_rate=1e6, inbound_per_ip_burst=1_000_000, max_connections=10_000
)


async def sink(stream: Stream) -> None:
    """Our side of the sink protocol: count bytes to EOF, answer with the count."""
    n = 0
    while data := await stream.read():
        n += len(data)
    await stream.write(n.to_bytes(8, "big"))
    await stream.close()


async def handshakes(dialer: Host, peer: PeerID, addr: Multiaddr, count: int) -> float:
    """Sequential dial-to-ready connections per second."""
    start = time.perf_counter()
    for _ in range(count):
        conn = await dialer.connect(peer, [addr], timeout=10)
        await conn.close()
        for _ in range(1000):  # let the host drop it so the next dial is a fresh one
            if dialer.connmgr.get(peer) is None:
                break
            await asyncio.sleep(0)
    return count / (time.perf_counter() - start)


async def throughput(dialer: Host, peer: PeerID, addr: Multiaddr, mib: int) -> float:
    """MiB/s through one stream to the peer's sink, including its final count."""
    await dialer.connect(peer, [addr], timeout=10)
    stream = await dialer.new_stream(peer, [SINK], timeout=10)
    chunk = bytes(CHUNK)
    start = time.perf_counter()
    for _ in range(mib):
        await stream.write(chunk)
    await stream.close()
    reply = await stream.reader.read_exactly(8)
    elapsed = time.perf_counter() - start
    if int.from_bytes(reply, "big") != mib * CHUNK:
        raise RuntimeError(f"sink counted {int.from_bytes(reply, 'big')} bytes")
    return mib / elapsed


async def bench_python(dials: int, mib: int) -> dict[str, Any]:
    server, client = Host(PrivateKey.generate(), BENCH_CONFIG), Host(PrivateKey.generate())
    server.set_stream_handler(SINK, sink)
    await server.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    await client.start([])
    try:
        addr = server.listen_addrs[0]
        rate = await handshakes(client, server.peer_id, addr, dials)
        mib_s = await throughput(client, server.peer_id, addr, mib)
    finally:
        await client.close()
        await server.close()
    return {"handshakes_per_s": round(rate, 1), "throughput_mib_s": round(mib_s, 1)}


async def bench_js(dials: int, mib: int) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (ROOT / "tests" / "interop" / "node_modules" / "libp2p").is_dir():
        return {"skipped": "node or tests/interop/node_modules missing (npm ci in tests/interop)"}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_SINK_SCRIPT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stdin is not None
    client = Host(PrivateKey.generate())
    await client.start([])
    try:
        async with asyncio.timeout(60):
            ready = json.loads(await proc.stdout.readline())
        addr = Multiaddr.parse(ready["addrs"][0])
        peer = PeerID.from_string(ready["peerId"])
        rate = await handshakes(client, peer, addr, dials)
        mib_s = await throughput(client, peer, addr, mib)
    finally:
        await client.close()
        proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return {"handshakes_per_s": round(rate, 1), "throughput_mib_s": round(mib_s, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dials", type=int, default=200, help="connections per handshake run")
    parser.add_argument("--mib", type=int, default=64, help="MiB through the stream")
    parser.add_argument("--no-js", action="store_true", help="skip the js-libp2p peer")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "dials": args.dials,
        "stream_mib": args.mib,
        "python_to_python": await bench_python(args.dials, args.mib),
    }
    if not args.no_js:
        result["python_to_js"] = await bench_js(args.dials, args.mib)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
