#!/usr/bin/env python3
"""FIND_NODE load generator: how many requests per second one kad server answers.

The same generator drives our node and a js-libp2p node (scripts/bench/dht.py runs it
in a child process so it never shares an event loop or a core's time slice with the
server it measures). It opens one connection with our :class:`Host`, ``--concurrency``
kad streams on it, and sends ``--requests`` FIND_NODE requests in total, each stream
one request at a time (write, read the response, repeat: both go and js servers loop
on a stream). Keys are random sha2-256 multihashes, so every answer is a real
closest-peers computation. One warm-up request per stream is not counted.

Usage: ``.venv/bin/python scripts/bench/kad_load.py /ip4/127.0.0.1/tcp/N/p2p/ID
[--requests N] [--concurrency C]``; prints one JSON object. Everything is bounded:
each request by ``--request-timeout``, the whole run by ``--deadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zikade_py.dht.messages import (  # noqa: E402
    MessageError,
    MessageType,
    encode_message,
    find_node,
    message_type,
    read_message,
)
from zikade_py.p2p.connection import Stream  # noqa: E402
from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402
from zikade_py.p2p.peer_id import PeerID  # noqa: E402

KAD_PROTOCOL = "/ipfs/kad/1.0.0"


@dataclass(slots=True)
class _Tally:
    """Shared by the workers: requests still to send, and what came back."""

    left: int
    ok: int = 0
    errors: int = 0
    closer_peers: int = 0


def _random_key() -> bytes:
    return b"\x12\x20" + os.urandom(32)


async def _request(stream: Stream, timeout: float) -> int:
    """One FIND_NODE round trip; the number of closer peers in the answer."""
    async with asyncio.timeout(timeout):
        await stream.write(encode_message(find_node(_random_key())))
        resp = await read_message(stream.reader)
    if resp is None:
        raise MessageError("stream ended before the response")
    if message_type(resp) is not MessageType.FIND_NODE:
        raise MessageError(f"answer of type {message_type(resp)!r}")
    return len(resp.closerPeers)


async def _open(host: Host, peer: PeerID, timeout: float) -> Stream:
    return await host.new_stream(peer, [KAD_PROTOCOL], timeout=timeout)


async def _worker(host: Host, peer: PeerID, stream: Stream, tally: _Tally, timeout: float) -> None:
    current: Stream | None = stream
    while tally.left > 0:
        tally.left -= 1
        try:
            if current is None:
                current = await _open(host, peer, timeout)
            closer = await _request(current, timeout)  # not `+= await`: lost updates
            tally.closer_peers += closer
            tally.ok += 1
        except Exception:  # any failure is counted; the stream is replaced
            tally.errors += 1
            if current is not None:
                with contextlib.suppress(Exception):
                    await current.reset()
            current = None
    if current is not None:
        with contextlib.suppress(Exception):
            await current.close()


async def run_load(
    target: str, requests: int, concurrency: int, *, request_timeout: float = 10.0
) -> dict[str, Any]:
    """Connect to ``target`` (a multiaddr with /p2p/), warm up, run, and report."""
    addr = Multiaddr.parse(target)
    peer = addr.peer_id()
    if peer is None:
        raise ValueError("target needs a /p2p/ component")
    host = Host(PrivateKey.generate())
    await host.start([])
    try:
        await host.connect(peer, [addr.without_peer_id()], timeout=request_timeout)
        streams = [await _open(host, peer, request_timeout) for _ in range(concurrency)]
        await asyncio.gather(*(_request(s, request_timeout) for s in streams))
        tally = _Tally(left=requests)
        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(_worker(host, peer, s, tally, request_timeout) for s in streams))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        await host.close()
    return {
        "requests": requests,
        "concurrency": concurrency,
        "ok": tally.ok,
        "errors": tally.errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(tally.ok / elapsed, 1) if elapsed > 0 else None,
        "mean_closer_peers": round(tally.closer_peers / tally.ok, 1) if tally.ok else 0,
        # near 1.0: the generator itself was the bottleneck, not the server
        "generator_cpu_share": round(cpu / elapsed, 2) if elapsed > 0 else None,
    }


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", help="multiaddr of the server, with /p2p/")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16, help="kad streams (js caps at 32)")
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=300.0, help="bound on the whole run")
    args = parser.parse_args()
    async with asyncio.timeout(args.deadline):
        result = await run_load(
            args.target, args.requests, args.concurrency, request_timeout=args.request_timeout
        )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(_main())
