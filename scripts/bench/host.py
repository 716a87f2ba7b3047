#!/usr/bin/env python3
"""Benchmark of the libp2p host on loopback, TCP beside QUIC; prints one JSON object.

For each transport (``tcp``: TCP + mss + Noise XX + mss + yamux; ``quic``: QUIC v1 with
the libp2p TLS certificates, up once the handshake is confirmed), between two of our
hosts and from our host to a real js-libp2p node (tests/interop/bench_sink.mjs with
@chainsafe/libp2p-quic, pinned npm packages):

* ``handshakes_per_s``: sequential dial-to-ready rate over ``--dials`` fresh
  connections (each closed, and gone on our side(s), before the next), with the
  dial's median/p90 (``dial_ms``) and this process's CPU per dial;
* ``throughput``: one stream, ``--mib`` MiB written by us to a sink that counts the
  bytes and answers with the total (the time includes that answer); MiB/s and this
  process's CPU per MiB.

``find_peer_fresh``: two networks of ``--network`` of our DHT servers, one TCP-only and
one QUIC-only; a querier that knows only the bootstrap node runs ``--lookups``
find_peer lookups, closing all its connections before each, so every hop is a fresh
dial (scripts/bench/quic.py has more QUIC rows: dial + RPC, emulated RTT, js → js).

CPU figures are this process's (``resource``); ``js_cpu_s`` is the js sink's whole
life. Usage: ``.venv/bin/python scripts/bench/host.py [--dials N] [--mib M]
[--network N] [--lookups M] [--transports tcp,quic] [--no-js]``.
Everything runs on 127.0.0.1; loops are bounded by the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hostbench import (  # noqa: E402
    BENCH_HOST,
    LISTEN,
    SINK,
    TRANSPORTS,
    cpu_seconds,
    find_peer_fresh,
    handshake_row,
    js_missing,
    js_sink,
    pick,
    sink,
    throughput,
)

from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402


async def bench_python(dials: int, mib: int, transports: tuple[str, ...]) -> dict[str, Any]:
    """Ours → ours: handshakes and one sink stream per transport."""
    server, client = Host(PrivateKey.generate(), BENCH_HOST), Host(PrivateKey.generate())
    server.set_stream_handler(SINK, sink)
    await server.start([Multiaddr.parse(LISTEN[t]) for t in transports])
    await client.start([])
    out: dict[str, Any] = {}
    try:
        for transport in transports:
            addr = pick(server.listen_addrs, transport)
            row = await handshake_row(client, server.peer_id, addr, dials, server)
            row["throughput"] = await throughput(client, server.peer_id, addr, mib)
            out[transport] = row
    finally:
        await client.close()
        await server.close()
    return out


async def bench_js(dials: int, mib: int, transports: tuple[str, ...]) -> dict[str, Any]:
    """Ours → js: the same rows against bench_sink.mjs listening on every transport."""
    if (why := js_missing()) is not None:
        return {"skipped": why}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = {}
    client = Host(PrivateKey.generate())
    await client.start([])
    try:
        async with js_sink(transports) as (peer, addrs):
            for transport in transports:
                addr = pick(addrs, transport)
                row = await handshake_row(client, peer, addr, dials, None)
                row["throughput"] = await throughput(client, peer, addr, mib)
                out[transport] = row
    finally:
        await client.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["js_cpu_s"] = round(
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 2
    )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dials", type=int, default=200, help="connections per handshake run")
    parser.add_argument("--mib", type=int, default=32, help="MiB through the stream")
    parser.add_argument("--network", type=int, default=12, help="nodes per find_peer network")
    parser.add_argument("--lookups", type=int, default=10, help="fresh-dial find_peer lookups")
    parser.add_argument(
        "--transports", default=",".join(TRANSPORTS), help="comma-separated: tcp,quic"
    )
    parser.add_argument("--no-js", action="store_true", help="skip the js-libp2p peer")
    args = parser.parse_args()
    transports = tuple(t for t in args.transports.split(",") if t)
    if not transports or any(t not in TRANSPORTS for t in transports):
        parser.error(f"--transports: a comma-separated subset of {','.join(TRANSPORTS)}")
    wall, cpu = time.perf_counter(), cpu_seconds()
    result: dict[str, Any] = {
        "dials": args.dials,
        "stream_mib": args.mib,
        "python_to_python": await bench_python(args.dials, args.mib, transports),
    }
    if not args.no_js:
        result["python_to_js"] = await bench_js(args.dials, args.mib, transports)
    if args.lookups > 0:
        result["find_peer_fresh"] = await find_peer_fresh(args.network, args.lookups, transports)
    result["total_wall_s"] = round(time.perf_counter() - wall, 2)
    result["total_cpu_s"] = round(cpu_seconds() - cpu, 2)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
