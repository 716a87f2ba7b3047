#!/usr/bin/env python3
"""QUIC vs TCP: fresh dial, and dial + first RPC, on loopback; prints one JSON object.

For each pair and transport, ``--dials`` sequential fresh connections (each closed, and
gone on both sides, before the next), measuring:

* ``dial_ms``: connect until the connection is up (TCP: TCP + mss + Noise XX + mss +
  yamux; QUIC: one handshake with the libp2p TLS certificates, until confirmed);
* ``dial_ping_ms``: a fresh dial plus one ``/ipfs/ping/1.0.0`` round trip (new stream,
  multistream-select, 32 bytes each way);
* ``dial_find_node_ms``: a fresh dial plus one kad FIND_NODE request and its answer;
* ``handshakes_per_s``: the dial-only loop's rate (dial to ready, close, gone both sides);
* ``throughput_mib_s`` (ours → ours): ``--mib`` MiB through one stream to a sink that
  counts the bytes and answers with the total.

``find_peer_fresh``: two networks of ``--network`` of our DHT servers, one on TCP only
and one on QUIC only; a querier that knows only the bootstrap node looks up
``--lookups`` members (``local_first=False``), closing all its connections before each
lookup, so every hop of every lookup is a fresh dial.

``with_rtt``: ours → ours again, through an in-process relay that delays every UDP
datagram and TCP chunk by half of ``--rtt-ms`` each way: on loopback the round trip is
~0 and CPU decides; on a real network the round trips a handshake needs decide. The
relay accepts TCP at once (user space cannot delay a SYN), so the real TCP dial pays
one more round trip than measured: ``tcp`` rows also give ``*_with_syn`` (+ one RTT).

Pairs: ours → ours (two hosts in this process, the target a DHT node), ours → js
(a js-libp2p kad-dht node with @chainsafe/libp2p-quic), and js → js (two js nodes, timed
from here around the js ``ping`` command on a fresh connection; ``ipc_ms`` is the same
command path's own cost, measured with a no-op command, to subtract when comparing).
Medians and 90th percentiles in ms, plus this process's CPU time per run.

``scripts/bench/host.py`` gives the headline QUIC vs TCP rows in one run (handshakes/s
and stream throughput to ours and to js, find_peer over fresh dials); this script adds
dial + RPC, the emulated RTT and js → js. Both measure through ``hostbench.py``.

Usage: ``.venv/bin/python scripts/bench/quic.py [--dials N] [--mib M] [--network N]
[--lookups M] [--rtt-ms R] [--no-js]``.
Everything runs on 127.0.0.1; loops are bounded by the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hostbench import (  # noqa: E402
    BENCH_HOST,
    LISTEN,
    SINK,
    cpu_seconds,
    find_peer_fresh,
    fresh_dials,
    gone,
    pick,
    sink,
    summary,
    throughput,
)

from zikade_py.dht import Node, NodeConfig  # noqa: E402
from zikade_py.dht.messages import encode_message, find_node, read_message  # noqa: E402
from zikade_py.dht.protocol import KAD_PROTOCOL  # noqa: E402
from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402
from zikade_py.p2p.peer_id import PeerID  # noqa: E402

LISTEN_BOTH: list[str | Multiaddr] = [LISTEN["quic"], LISTEN["tcp"]]


async def ping_once(host: Host, peer: PeerID) -> None:
    await host.ping(peer, 1, timeout=10)


async def find_node_once(host: Host, peer: PeerID) -> None:
    stream = await host.new_stream(peer, [KAD_PROTOCOL], timeout=10)
    await stream.write(encode_message(find_node(peer.multihash)))
    answer = await read_message(stream.reader)
    await stream.close()
    if answer is None:
        raise RuntimeError("no FIND_NODE answer")


async def rows_to(
    dialer: Host, peer: PeerID, addrs: list[Multiaddr], count: int, remote: Host | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for transport in ("tcp", "quic"):
        addr = pick(addrs, transport)
        row: dict[str, Any] = {}
        cpu_total = 0.0
        for name, after in (
            ("dial_ms", None),
            ("dial_ping_ms", ping_once),
            ("dial_find_node_ms", find_node_once),
        ):
            waiter = (lambda r=remote: gone(r, dialer.peer_id)) if remote is not None else None
            start = time.perf_counter()
            samples, cpu = await fresh_dials(dialer, peer, addr, count, after, waiter)
            if after is None:
                row["handshakes_per_s"] = round(count / (time.perf_counter() - start), 1)
            row[name] = summary(samples)
            cpu_total += cpu
        row["cpu_s_per_dial"] = round(cpu_total / (3 * count), 5)
        out[transport] = row
    return out


class UdpRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between clients and ``target``, each ``delay`` late."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.upstream.get(addr)
        if up is None:
            self.loop.create_task(self._open(addr, data))
            return
        self.loop.call_later(self.delay, up.sendto, data)

    async def _open(self, client: tuple[str, int], first: bytes) -> None:
        relay = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if relay.transport is not None:
                    relay.loop.call_later(relay.delay, relay.transport.sendto, data, client)

        up, _ = await self.loop.create_datagram_endpoint(Back, remote_addr=self.target)
        self.upstream[client] = up
        self.loop.call_later(self.delay, up.sendto, first)

    def close(self) -> None:
        for up in self.upstream.values():
            up.close()
        if self.transport is not None:
            self.transport.close()


async def tcp_relay(target: tuple[str, int], delay: float) -> asyncio.Server:
    """A TCP proxy to ``target`` delaying each chunk by ``delay`` (order kept)."""
    loop = asyncio.get_running_loop()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                loop.call_later(delay, writer.write, data)
        except (ConnectionError, OSError):
            pass
        loop.call_later(delay, writer.close)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def bench_rtt(count: int, rtt_ms: float) -> dict[str, Any]:
    """Fresh dial and dial + FIND_NODE through relays adding ``rtt_ms`` of round trip."""
    target = Node(
        NodeConfig(mode="server", listen_addrs=LISTEN_BOTH, bootstrap=[], host=BENCH_HOST)
    )
    await target.start()
    dialer = Host(PrivateKey.generate(), BENCH_HOST)
    await dialer.start([])
    delay = rtt_ms / 2000
    loop = asyncio.get_running_loop()
    quic_ep = pick(target.listen_addrs, "quic").quic_endpoint()
    tcp_ep = pick(target.listen_addrs, "tcp").tcp_endpoint()
    assert quic_ep is not None and tcp_ep is not None
    udp_transport, udp = await loop.create_datagram_endpoint(
        lambda: UdpRelay(quic_ep, delay), local_addr=("127.0.0.1", 0)
    )
    tcp = await tcp_relay(tcp_ep, delay)
    try:
        relayed = {
            "quic": Multiaddr.from_quic("127.0.0.1", udp_transport.get_extra_info("sockname")[1]),
            "tcp": Multiaddr.from_tcp("127.0.0.1", tcp.sockets[0].getsockname()[1]),
        }
        out: dict[str, Any] = {"rtt_ms": rtt_ms}
        for transport, addr in relayed.items():
            row: dict[str, Any] = {}
            for name, after in (("dial_ms", None), ("dial_find_node_ms", find_node_once)):
                samples, _ = await fresh_dials(dialer, target.peer_id, addr, count, after)
                row[name] = summary(samples)
                if transport == "tcp":
                    row[name.replace("_ms", "_with_syn_ms")] = {
                        k: round(v + rtt_ms, 2) for k, v in row[name].items()
                    }
            out[transport] = row
        return out
    finally:
        udp.close()
        tcp.close()
        await dialer.close()
        await target.close()


async def bench_ours(count: int, mib: int) -> dict[str, Any]:
    target = Node(
        NodeConfig(mode="server", listen_addrs=LISTEN_BOTH, bootstrap=[], host=BENCH_HOST)
    )
    await target.start()
    target.host.set_stream_handler(SINK, sink)
    dialer = Host(PrivateKey.generate(), BENCH_HOST)
    await dialer.start([])
    try:
        rows = await rows_to(dialer, target.peer_id, target.listen_addrs, count, target.host)
        for transport in ("tcp", "quic"):
            addr = pick(target.listen_addrs, transport)
            rows[transport]["throughput"] = await throughput(dialer, target.peer_id, addr, mib)
        return rows
    finally:
        await dialer.close()
        await target.close()


async def bench_js(count: int) -> dict[str, Any]:
    from interop.jsnode import JsNode, js_available
    from interop.jsnode_types import JsNodeOptions

    if not js_available():
        return {"skipped": "node or tests/interop/node_modules missing (npm ci in tests/interop)"}
    options = JsNodeOptions(monitor=False, transports=("tcp", "quic"))
    result: dict[str, Any] = {}
    async with JsNode(options) as a, JsNode(options) as b:
        dialer = Host(PrivateKey.generate(), BENCH_HOST)
        await dialer.start([])
        try:
            addrs = [Multiaddr.parse(x) for x in b.addrs]
            result["ours_to_js"] = await rows_to(
                dialer, PeerID.from_string(b.peer_id), addrs, count, None
            )
        finally:
            await dialer.close()
        ipc: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            await a.peers()
            ipc.append(time.perf_counter() - start)
        js_rows: dict[str, Any] = {"ipc_ms": summary(ipc)}
        for transport in ("tcp", "quic"):
            addr = str(pick(addrs, transport).with_peer_id(PeerID.from_string(b.peer_id)))
            samples: list[float] = []
            for _ in range(count):
                start = time.perf_counter()
                await a.ping(addr, 1, timeout_ms=10_000)
                samples.append(time.perf_counter() - start)
                await a.hang_up(b.peer_id)
                for _ in range(200):  # until b saw it go too
                    if not await b.connections(a.peer_id):
                        break
                    await asyncio.sleep(0.005)
            js_rows[transport] = {"dial_ping_ms": summary(samples)}
        result["js_to_js"] = js_rows
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dials", type=int, default=50, help="fresh dials per measurement")
    parser.add_argument("--mib", type=int, default=16, help="MiB through the sink stream")
    parser.add_argument("--network", type=int, default=12, help="nodes per find_peer network")
    parser.add_argument("--lookups", type=int, default=10, help="fresh-dial find_peer lookups")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="emulated round trip")
    parser.add_argument("--no-js", action="store_true", help="skip the js-libp2p rows")
    args = parser.parse_args()
    wall, cpu = time.perf_counter(), cpu_seconds()
    result: dict[str, Any] = {
        "dials": args.dials,
        "ours_to_ours": await bench_ours(args.dials, args.mib),
    }
    result["with_rtt"] = await bench_rtt(args.dials, args.rtt_ms)
    result["find_peer_fresh"] = await find_peer_fresh(args.network, args.lookups)
    if not args.no_js:
        result.update(await bench_js(args.dials))
    result["total_wall_s"] = round(time.perf_counter() - wall, 2)
    result["total_cpu_s"] = round(cpu_seconds() - cpu, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
