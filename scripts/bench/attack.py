#!/usr/bin/env python3
"""Attack benchmark (issue 9): hostile peers against a real node on 127.0.0.1; prints ONE
JSON object with one key per scenario.

The node under attack runs in this process (its event loop carries a lag probe, and
its RSS, open file descriptors and asyncio tasks are sampled before, during and
``--settle`` seconds after each scenario). Attackers run in child processes (this
script with ``--child <role>``), so their own work never stalls the node's loop.
While an attack runs, legitimate peers — one of our nodes and, when Node and the
pinned npm packages are installed, a js-libp2p node — keep using the node, and
their successes are counted.

Scenarios (each a separate ``scenario_*`` coroutine returning a dict; add new ones
to :data:`SCENARIOS`):

* ``store_flood`` (1d) — one peer sends ``--records`` ADD_PROVIDER and as many
  PUT_VALUE for distinct keys; the node's SQLite stores cap what that sender keeps
  (``--cap-providers`` / ``--cap-values`` per peer) while the legitimate peers'
  records are still stored.
* ``huge_find_node_answer`` (1e) — the node asks a hostile server that answers
  FIND_NODE with ``--entries`` (87,381) closer peers, ~4 MiB; the loop lag while the
  answers are read must stay ≤ 50 ms. ``unbounded_parse_ms`` is what parsing such an
  answer whole (the old way) costs on this machine, for comparison.

``--rounds N`` repeats every selected scenario N times against the same node (one node,
the same legitimate peers, a fresh attacker each round) and reports RSS, descriptors,
asyncio tasks and CPython's pymalloc arenas after each round under ``rounds``; the
scenario's top-level fields stay those of round 1. ``verdict`` says whether the node came
back: descriptors and tasks after every round equal to the baseline exactly (round 1's
``before``, taken once the legitimate peers have been idle for ``--settle`` s: the state
every ``after`` is measured in), and RSS after the last round at most
``--rss-tolerance-mb`` above RSS after the first (memory that does not grow with
repeated attacks; the first round's rise over the baseline is a high-water mark of
allocator arenas, reported as ``rss_after_over_baseline``).

Usage: ``.venv/bin/python scripts/bench/attack.py [--scenario NAME ...] [--settle 30]
[--records 10000] [--entries 87381] [--rounds 1] [--rss-tolerance-mb 2] [--quick]
[--no-js]``. ``--quick`` = 1,000
records, 20,000 entries, 2 s settle: a smoke run. Every loop is bounded by these
numbers and every call by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from multiformats import CID, multihash  # noqa: E402

from tests.interop.jsnode import JS_UNAVAILABLE_REASON, JsNode, js_available  # noqa: E402
from zikade_py.dht.config import NodeConfig  # noqa: E402
from zikade_py.dht.messages import (  # noqa: E402
    Message,
    add_provider,
    closer_peers,
    decode_message,
    encode_message,
    find_node,
    make_record,
    put_value,
    read_message,
)
from zikade_py.dht.node import Node  # noqa: E402
from zikade_py.dht.protocol import KAD_PROTOCOL  # noqa: E402
from zikade_py.dht.records import make_pk_record  # noqa: E402
from zikade_py.dht.stores.limits import StoreLimits  # noqa: E402
from zikade_py.p2p.connection import Stream  # noqa: E402
from zikade_py.p2p.crypto import PrivateKey  # noqa: E402
from zikade_py.p2p.host import Host, HostConfig  # noqa: E402
from zikade_py.p2p.multiaddr import Multiaddr  # noqa: E402
from zikade_py.p2p.peer_id import PeerID  # noqa: E402
from zikade_py.p2p.rcmgr import ResourceLimits  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
HOST = HostConfig(inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000)
CHILD_TIMEOUT = 600.0
OP_TIMEOUT = 10.0


# ------------------------------------------------------------------------------ measuring


def rss_bytes() -> int:
    """VmRSS of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds() -> int:
    """File descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def resources() -> dict[str, int]:
    """RSS, open descriptors and asyncio tasks of this process right now."""
    return {"rss": rss_bytes(), "fds": open_fds(), "tasks": len(asyncio.all_tasks())}


@dataclass
class LagProbe:
    """Sleeps ``interval`` in a loop and records how late each wake-up was: a stall of
    the event loop shows up as a late wake-up of at least its length."""

    interval: float = 0.005
    lags: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - t - self.interval
            self.lags.append(lag)
            self.busy.append(min(lag, time.thread_time() - c))

    def start(self) -> None:
        self.lags.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lag-probe")

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        samples = len(self.lags)
        lags = sorted(self.lags) or [0.0]
        busy = max(self.busy, default=0.0)
        self.lags, self.busy = [], []  # thousands of floats: not the node's memory afterwards
        return {
            "samples": samples,
            "max_ms": round(lags[-1] * 1000, 2),
            "p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 2),
            # the part of a late wake-up the loop's thread spent on the CPU itself (the
            # rest is the OS running other processes, or another thread holding the GIL)
            "busy_max_ms": round(busy * 1000, 2),
            "over_50ms": sum(1 for lag in lags if lag > 0.05),
        }


@dataclass
class Sampler:
    """The peak of :func:`resources` while an attack runs (sampled every 100 ms)."""

    peak: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for k, v in resources().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sampler")

    async def stop(self) -> dict[str, int]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return dict(self.peak)


def task_names() -> dict[str, int]:
    """How many asyncio tasks of each name run now (what an ``after`` count above
    ``before`` consists of)."""
    names: dict[str, int] = {}
    for task in asyncio.all_tasks():
        names[task.get_name()] = names.get(task.get_name(), 0) + 1
    return names


def more_tasks(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Task names that run more often after than before."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


async def settle_and_measure(settle: float) -> dict[str, int]:
    await asyncio.sleep(settle)
    gc.collect()
    return resources()


def pymalloc_arenas() -> int | None:
    """Arenas (1 MiB each) CPython's small-object allocator holds now, from
    ``sys._debugmallocstats()`` (~0.5 ms): an arena is returned to the OS only when every
    object in it is freed, so a few long-lived objects keep RSS above a baseline without
    any leak. None when pymalloc is not in use."""
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: no full pipe can block us
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    found = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    return int(found.group(1).replace(",", "")) if found else None


def measure() -> dict[str, int]:
    """:func:`resources` plus the pymalloc arena count (before and after a round)."""
    now = resources()
    arenas = pymalloc_arenas()
    if arenas is not None:
        now["pymalloc_arenas"] = arenas
    return now


async def settled(settle: float) -> dict[str, int]:
    """Resources ``settle`` s after an attack (via :func:`settle_and_measure`, which
    ``attack_memory.py`` replaces), with the arena count."""
    after = await settle_and_measure(settle)
    arenas = pymalloc_arenas()
    if arenas is not None:
        after["pymalloc_arenas"] = arenas
    return after


# ------------------------------------------------------------------------------ children


async def run_child(role: str, *args: str) -> dict[str, Any]:
    """This script as ``--child role args…``; its last stdout line is a JSON result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", role, *args,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "no output"}
    return result


@asynccontextmanager
async def child_process(
    role: str, *args: str
) -> AsyncIterator[tuple[list[str], asyncio.subprocess.Process]]:
    """A long-running child (a hostile server): yields the first stdout line's words."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", role, *args,
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        yield line.decode().split(), proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def child_flood(target: str, records: int, concurrency: int) -> dict[str, Any]:
    """One identity: ``records`` ADD_PROVIDER on one stream, then ``records`` PUT_VALUE
    (a fresh stream each, as a refusal resets it)."""
    addr = Multiaddr.parse(target)
    peer = addr.peer_id()
    assert peer is not None
    host = Host(PrivateKey.generate(), HOST)
    await host.start([Multiaddr.parse(LOOPBACK)])
    me_addrs = [a.to_bytes() for a in host.listen_addrs]
    # Records made up front, so the flood itself is I/O, not key generation.
    puts = [
        encode_message(put_value(k, make_record(k, v)))
        for k, v in (make_pk_record(PrivateKey.generate().public_key) for _ in range(records))
    ]
    started = time.perf_counter()
    try:
        await host.connect(peer, [addr.without_peer_id()], timeout=OP_TIMEOUT)
        stream = await host.new_stream(peer, [KAD_PROTOCOL], timeout=OP_TIMEOUT)
        for i in range(records):
            mh = bytes(multihash.digest(b"flood %d" % i, "sha2-256"))
            msg = Message(type=Message.ADD_PROVIDER, key=mh)
            msg.providerPeers.add(id=host.peer_id.multihash, addrs=me_addrs)
            await stream.write(encode_message(msg))
        # The server handles one stream's requests in order: once this is answered,
        # every ADD_PROVIDER before it was stored or refused.
        await stream.write(encode_message(find_node(b"done")))
        async with asyncio.timeout(CHILD_TIMEOUT):
            await read_message(stream.reader)
        await stream.close()
        providers_sent = time.perf_counter() - started
        acked = refused = 0
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for payload in puts:
            queue.put_nowait(payload)

        async def worker() -> None:
            nonlocal acked, refused
            while not queue.empty():
                payload = queue.get_nowait()
                try:
                    s = await host.new_stream(peer, [KAD_PROTOCOL], timeout=OP_TIMEOUT)
                    await s.write(payload)
                    async with asyncio.timeout(OP_TIMEOUT):
                        answer = await read_message(s.reader)
                    await s.close()
                    acked += answer is not None
                except Exception:
                    refused += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {
            "peer": str(host.peer_id),
            "add_provider_sent": records,
            "add_provider_seconds": round(providers_sent, 2),
            "put_value_sent": records,
            "put_value_acked": acked,
            "put_value_refused": refused,
            "seconds": round(time.perf_counter() - started, 2),
        }
    finally:
        await host.close()


async def child_huge_answer(entries: int) -> None:
    """A kad server answering every request with ``entries`` closer peers (pre-encoded)."""
    msg = Message(type=Message.FIND_NODE)
    for i in range(entries):
        msg.closerPeers.add(id=b"\x00\x24\x08\x01\x12\x20" + os.urandom(28) + i.to_bytes(4, "big"))
    payload = encode_message(msg)
    host = Host(PrivateKey.generate(), HOST)
    served = 0

    async def handle(stream: Stream) -> None:
        nonlocal served
        try:
            while await read_message(stream.reader) is not None:
                await stream.write(payload)
                served += 1
        except Exception:
            return

    host.set_stream_handler(KAD_PROTOCOL, handle)
    await host.start([Multiaddr.parse(LOOPBACK)])
    print(host.listen_addrs[0].with_peer_id(host.peer_id), len(payload), flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    await reader.read()  # until the parent closes our stdin or kills us
    await host.close()


# ------------------------------------------------------------------------------ legit peers


@dataclass
class Legit:
    """Legitimate peers using the node during an attack: their tries and successes."""

    ours: Node
    js: JsNode | None
    js_provides: bool = True
    tries: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)

    async def attempt(self, op: Callable[[], Awaitable[bool]]) -> None:
        self.tries += 1
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                good = bool(await op())
            self.ok += good
            if not good and len(self.errors) < 5:
                self.errors.append(f"{op.__name__}: failed")
        except Exception as exc:
            if len(self.errors) < 5:
                self.errors.append(f"{op.__name__}: {type(exc).__name__}: {exc}")

    def reset(self) -> None:
        """New counts for the next round."""
        self.tries, self.ok, self.errors = 0, 0, []

    def summary(self) -> dict[str, Any]:
        return {
            "tries": self.tries,
            "ok": self.ok,
            "success": round(self.ok / self.tries, 4) if self.tries else None,
            "errors": self.errors,
        }


@asynccontextmanager
async def legit_peers(target: Node, use_js: bool) -> AsyncIterator[Legit]:
    async with AsyncExitStack() as stack:
        ours = await stack.enter_async_context(
            Node(NodeConfig(mode="server", listen_addrs=[LOOPBACK], host=HOST, republish=False,
                            bootstrap=[str(a) for a in target.multiaddrs]))
        )
        await ours.bootstrap(timeout=OP_TIMEOUT)
        js: JsNode | None = None
        if use_js:
            js = JsNode()
            await js.start()
            stack.push_async_callback(js.close)
            await js.bootstrap([str(target.multiaddrs[0])], timeout_ms=20_000)
        yield Legit(ours, js)


async def legit_round(target: Node, legit: Legit, i: int) -> None:
    """One round of legitimate use: our peer provides and puts at the node; js pings it,
    and provides there in the store scenario (a provide walks the network, and a hostile
    server in it is not the node's doing)."""
    cid = CID("base32", 1, "raw", multihash.digest(b"legit %d" % i, "sha2-256"))
    mh = bytes(cid.digest)

    async def ours_provide() -> bool:
        await legit.ours.router.send_message(
            target.peer_id, add_provider(mh, legit.ours.self_info())
        )
        for _ in range(100):
            stored = await target.providers.get_async(mh, time.time())  # never block the loop
            if any(p.peer_id == legit.ours.peer_id for p in stored):
                return True
            await asyncio.sleep(0.02)
        return False

    async def ours_put() -> bool:  # its own /pk/ record again: a refresh, as republishing
        key, value = make_pk_record(legit.ours.host.public_key)
        answer = await legit.ours.router.send_message(
            target.peer_id, put_value(key, make_record(key, value))
        )
        return answer is not None and await target.values.get_async(key, time.time()) is not None

    await legit.attempt(ours_provide)
    await legit.attempt(ours_put)
    js = legit.js
    if js is not None:
        js_mh = bytes(multihash.digest(b"js legit %d" % i, "sha2-256"))
        js_id = PeerID.from_string(js.peer_id)

        async def js_provide() -> bool:
            await js.provide(multihash=js_mh, timeout_ms=int(OP_TIMEOUT * 1000))
            for _ in range(100):
                stored = await target.providers.get_async(js_mh, time.time())
                if any(p.peer_id == js_id for p in stored):
                    return True
                await asyncio.sleep(0.02)
            return False

        async def js_ping() -> bool:
            rtts = await js.ping(str(target.peer_id), timeout_ms=int(OP_TIMEOUT * 1000))
            return bool(rtts)

        if legit.js_provides:
            await legit.attempt(js_provide)
        await legit.attempt(js_ping)


async def keep_using(target: Node, legit: Legit, stop: asyncio.Event, first: int = 0) -> None:
    i = first
    while not stop.is_set() and i < first + 10_000:
        await legit_round(target, legit, i)
        i += 1
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ scenarios


@dataclass
class Options:
    records: int
    entries: int
    settle: float
    cap_providers: int
    cap_values: int
    use_js: bool
    quick: bool = False
    rounds: int = 1
    rss_tolerance: int = 2 * 1024 * 1024


def round_summary(number: int, result: dict[str, Any]) -> dict[str, Any]:
    """What one round adds under ``rounds``: legitimate success, loop lag, resources, and
    the scenario's own pass/fail fields."""
    out: dict[str, Any] = {"round": number}
    for key in ("legit", "loop_lag", "resources", "checks", "stored", "node"):
        if key in result:
            out[key] = result[key]
    out.update({k: v for k, v in result.items() if isinstance(v, bool)})
    return out


def verdict(results: list[dict[str, Any]], tolerance: int, settle: float) -> dict[str, Any]:
    """Back to baseline after repeated attacks? Descriptors and tasks exactly; RSS may
    keep a high-water mark after the first round but must not grow from round to round.
    A legitimate connection left without streams past the host's idle timeout (60 s)
    closes during a long round, 2 descriptors and 6 tasks fewer here with no leak: the
    host scenarios' ``node.legit_connected_*`` shows it."""
    base = results[0]["resources"]["before"]
    afters = [r["resources"]["after"] for r in results]
    fds = all(a["fds"] == base["fds"] for a in afters)
    tasks = all(a["tasks"] == base["tasks"] for a in afters)
    growth = afters[-1]["rss"] - afters[0]["rss"]
    rss_flat = growth <= tolerance if len(afters) > 1 else None  # one round shows nothing
    out: dict[str, Any] = {
        "rounds": len(results),
        "baseline": base,
        "baseline_after_idle_seconds": settle,
        "fds_after": [a["fds"] for a in afters],
        "tasks_after": [a["tasks"] for a in afters],
        "rss_after": [a["rss"] for a in afters],
        "fds_back": fds,
        "tasks_back": tasks,
        "rss_after_over_baseline": afters[0]["rss"] - base["rss"],
        "rss_growth_over_rounds": growth,
        "rss_tolerance": tolerance,
        "rss_flat": rss_flat,
    }
    if all("pymalloc_arenas" in a for a in afters) and "pymalloc_arenas" in base:
        out["pymalloc_arenas_after"] = [a["pymalloc_arenas"] for a in afters]
        out["pymalloc_arenas_growth_over_rounds"] = (
            afters[-1]["pymalloc_arenas"] - afters[0]["pymalloc_arenas"]
        )
    success = [r["legit"]["success"] for r in results if r.get("legit", {}).get("success")
               is not None]
    out["legit_success_min"] = min(success) if success else None
    out["ok"] = fds and tasks and rss_flat is not False
    return out


async def quiesce(steady: float = 1.0, limit: float = 15.0) -> None:
    """Wait until this process's task and descriptor counts have not moved for ``steady``
    seconds (at most ``limit``): right after start-up, bootstrap and identify tasks are
    still finishing, and a baseline taken then is higher than the node at rest."""
    last, since = None, time.monotonic()
    deadline = since + limit
    while time.monotonic() < deadline:
        now = resources()
        counts = (now["fds"], now["tasks"])
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= steady:
            return
        await asyncio.sleep(0.1)


async def repeat_rounds(
    opts: Options, one_round: Callable[[int], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """``opts.rounds`` rounds against the same node: round 1's result with ``rounds`` (one
    summary per round) and ``verdict`` added."""
    # The baseline in the state each "after" is measured in: legitimate peers idle for
    # ``settle`` s (an idle connection of theirs is trimmed meanwhile), then steady counts.
    await asyncio.sleep(opts.settle)
    await quiesce()
    results = [await one_round(i) for i in range(max(1, opts.rounds))]
    first = results[0]
    first["rounds"] = [round_summary(i + 1, r) for i, r in enumerate(results)]
    first["verdict"] = verdict(results, opts.rss_tolerance, opts.settle)
    return first


async def scenario_store_flood(opts: Options) -> dict[str, Any]:
    """1d: one peer sends ``records`` ADD_PROVIDER and PUT_VALUE for distinct keys."""
    limits = StoreLimits(
        max_providers_per_peer=opts.cap_providers, max_values_per_peer=opts.cap_values
    )
    with tempfile.TemporaryDirectory(prefix="zikade-attack-") as repo:
        config = NodeConfig(mode="server", listen_addrs=[LOOPBACK], host=HOST, republish=False,
                            repo=repo, store_limits=limits)
        async with Node(config) as target, legit_peers(target, opts.use_js) as legit:

            async def one_round(number: int) -> dict[str, Any]:
                legit.reset()
                before = measure()
                tasks_before, conns_before = task_names(), len(target.host.connmgr)
                probe, sampler = LagProbe(), Sampler()
                probe.start()
                sampler.start()
                stop = asyncio.Event()
                using = asyncio.create_task(keep_using(target, legit, stop, number * 10_000))
                attacker = await run_child(
                    "flood", str(target.multiaddrs[0]), str(opts.records), "16"
                )
                stop.set()
                await using
                during, lag = await sampler.stop(), await probe.stop()
                flooder = PeerID.from_string(attacker["peer"]) if "peer" in attacker else None
                stored = {
                    "attacker_providers": (
                        target.providers.sender_usage(flooder).records if flooder else None
                    ),
                    "attacker_values": (
                        target.values.sender_usage(flooder).records if flooder else None
                    ),
                    "providers_total": target.providers.usage().records,
                    "values_total": target.values.usage().records,
                }
                server = target.server
                refused = dict(server.stats.refused) if server is not None else {}
                after = await settled(opts.settle)
                return {
                    "configured": {"providers_per_peer": opts.cap_providers,
                                   "values_per_peer": opts.cap_values},
                    "attacker": attacker,
                    "stored": stored,
                    "refused": refused,
                    "capped": stored["attacker_providers"] == opts.cap_providers
                    and stored["attacker_values"] == opts.cap_values,
                    "legit": legit.summary(),
                    "loop_lag": lag,
                    "resources": {"before": before, "during_peak": during, "after": after},
                    "node": {"connections_before": conns_before,
                             "connections_after": len(target.host.connmgr),
                             "more_tasks_after": more_tasks(tasks_before, task_names())},
                }

            return await repeat_rounds(opts, one_round)


async def scenario_huge_find_node_answer(opts: Options) -> dict[str, Any]:
    """1e: FIND_NODE answers of ``entries`` closer peers (~4 MiB) from a hostile server."""
    msg = Message(type=Message.FIND_NODE)
    for i in range(opts.entries):
        msg.closerPeers.add(id=b"\x00\x24\x08\x01\x12\x20" + os.urandom(28) + i.to_bytes(4, "big"))
    body = msg.SerializeToString()
    t = time.perf_counter()
    closer_peers(decode_message(body))
    unbounded_ms = (time.perf_counter() - t) * 1000
    del msg, body
    gc.collect()
    config = NodeConfig(mode="server", listen_addrs=[LOOPBACK], host=HOST, republish=False)
    async with Node(config) as target, legit_peers(target, opts.use_js) as legit:
        legit.js_provides = False

        async def one_round(number: int) -> dict[str, Any]:
            # a fresh hostile server each round, gone before the settled measurement
            legit.reset()
            before = measure()
            async with child_process("huge-answer", str(opts.entries)) as (words, proc):
                hostile_addr = Multiaddr.parse(words[0])
                hostile = hostile_addr.peer_id()
                assert hostile is not None
                await target.host.connect(
                    hostile, [hostile_addr.without_peer_id()], timeout=OP_TIMEOUT
                )
                known = len(target.host.peerstore)
                probe, sampler = LagProbe(), Sampler()
                probe.start()
                sampler.start()
                stop = asyncio.Event()
                using = asyncio.create_task(keep_using(target, legit, stop, number * 10_000))
                answers, parsed = 0, 0
                for i in range(10):
                    found = await target.router.get_closer_nodes(
                        hostile, b"target %d" % i, deadline=time.monotonic() + 30
                    )
                    answers += 1
                    parsed = max(parsed, len(found))
                stop.set()
                await using
                during, lag = await sampler.stop(), await probe.stop()
                peerstore_growth = len(target.host.peerstore) - known
                assert proc.stdin is not None
                proc.stdin.close()
                answer_bytes = int(words[1])
            after = await settled(opts.settle)
            return {
                "entries_per_answer": opts.entries,
                "answer_bytes": answer_bytes,
                "answers": answers,
                "closer_peers_kept": parsed,
                "peerstore_growth": peerstore_growth,
                "loop_lag": lag,
                "lag_ok": lag["max_ms"] <= 50.0,
                "unbounded_parse_ms": round(unbounded_ms, 1),
                "legit": legit.summary(),
                "resources": {"before": before, "during_peak": during, "after": after},
            }

        return await repeat_rounds(opts, one_round)


# ------------------------------------------------------------------------------ host (1a-1c)
#
# The node under attack counts 127.0.0.1 as a stranger too (an empty allowlist), so the
# legitimate peers get no exemption; attackers bind their sockets to other 127.x.y.z
# source addresses, one IP group each.

HOST_TARGET = replace(HOST, limits=ResourceLimits(allowlist=()))


def bind_sources(sources: list[str]) -> None:
    """Make every TCP dial of this (child) process leave from the next of ``sources``."""
    original = asyncio.open_connection
    turn = iter(range(1 << 30))

    async def open_connection(host: str, port: int, **kw: Any) -> Any:
        kw["local_addr"] = (sources[next(turn) % len(sources)], 0)  # over the host's choice
        return await original(host, port, **kw)

    asyncio.open_connection = open_connection  # type: ignore[assignment]


async def child_sockets(target: str, silent: int, garbage: int, seconds: float) -> dict[str, Any]:
    """1a: ``silent`` TCP connections that never speak and ``garbage`` ones that send junk,
    all from 127.0.0.2, held for ``seconds`` (reopened when the node drops them)."""
    host, port = Multiaddr.parse(target).tcp_endpoint()  # type: ignore[misc]
    opened = dropped = 0
    deadline = time.monotonic() + seconds

    async def one(talk: bool) -> None:
        nonlocal opened, dropped
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=("127.0.0.2", 0)
                )
            except OSError:
                await asyncio.sleep(0.1)
                continue
            opened += 1
            try:
                while time.monotonic() < deadline:
                    if talk:
                        writer.write(os.urandom(512))
                    async with asyncio.timeout(0.5):
                        if not await reader.read(4096) and reader.at_eof():
                            break
            except TimeoutError:
                continue
            except OSError:
                pass
            finally:
                writer.close()
            dropped += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(False) for _ in range(silent)),
                         *(one(True) for _ in range(garbage)))
    return {"silent": silent, "garbage": garbage, "opened": opened, "dropped_by_node": dropped}


async def child_holders(
    target: str, identities: int, sources: int, junk_streams: int, seconds: float
) -> dict[str, Any]:
    """1b/1c: ``identities`` hosts (from ``sources`` addresses 127.0.1.x), each connecting
    and opening an identify stream it never closes; with ``junk_streams``, each then opens
    that many more streams and pushes a window (256 KiB) of junk into each without ever
    negotiating: data the node would have to buffer."""
    bind_sources([f"127.0.1.{i + 1}" for i in range(sources)])
    addr = Multiaddr.parse(target)
    peer = addr.peer_id()
    assert peer is not None
    connected = held = pushed = 0
    hosts: list[Host] = []
    gate = asyncio.Semaphore(32)

    async def one() -> None:
        nonlocal connected, held, pushed
        async with gate:
            h = Host(PrivateKey.generate(), HOST)
            hosts.append(h)
            await h.start([])
            try:
                conn = await h.connect(peer, [addr.without_peer_id()], timeout=OP_TIMEOUT)
                connected += 1
                stream = await conn.open_stream(["/ipfs/id/1.0.0"], timeout=OP_TIMEOUT)
                await stream.read()
                held += 1  # and never closed
                for _ in range(junk_streams):
                    inner = await conn.session.open_stream()
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await inner.write(b"\x00" * (256 * 1024))
                            pushed += 256 * 1024
            except Exception:
                return

    await asyncio.gather(*(one() for _ in range(identities)))
    summary = {"identities": identities, "connected": connected, "held": held,
               "pushed_bytes": pushed}
    await asyncio.sleep(seconds)
    for h in hosts:
        await h.close()
    return summary


async def legit_host_round(target: Node, legit: Legit) -> None:
    """Legitimate use for the host scenarios: our peer's find_peer of the js node and a ping
    of the node, a brand-new peer dialing in and pinging, and js pinging."""
    ours = legit.ours

    async def ours_find_and_ping() -> bool:
        # Ours also pings the node itself, as a peer that uses it does: with find_peer
        # alone its connection idled out during a long round, and the node's fds and
        # tasks then read below the baseline.
        if legit.js is not None:
            found = await ours.find_peer(PeerID.from_string(legit.js.peer_id))
            if found is None:
                return False
        return bool(await ours.host.ping(target.peer_id))

    async def newcomer_ping() -> bool:
        fresh = Host(PrivateKey.generate(), HOST)
        await fresh.start([])
        try:
            await fresh.connect(target.peer_id, target.multiaddrs[:1], timeout=OP_TIMEOUT)
            return bool(await fresh.ping(target.peer_id, timeout=OP_TIMEOUT))
        finally:
            await fresh.close()

    await legit.attempt(ours_find_and_ping)
    await legit.attempt(newcomer_ping)
    js = legit.js
    if js is not None:
        async def js_ping() -> bool:
            return bool(await js.ping(str(target.peer_id), timeout_ms=int(OP_TIMEOUT * 1000)))

        await legit.attempt(js_ping)


async def keep_using_host(target: Node, legit: Legit, stop: asyncio.Event) -> None:
    for _ in range(10_000):
        if stop.is_set():
            return
        await legit_host_round(target, legit)
        await asyncio.sleep(0.05)


async def host_attack(
    opts: Options, child: tuple[str, ...], extra: Callable[[Node], Awaitable[dict[str, Any]]]
    | None = None, config: NodeConfig | None = None,
    judge: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run a host attack ``opts.rounds`` times: the node, legitimate peers using it
    throughout, the attacker child; resources before, peak during, and ``settle`` s after
    each round. ``judge`` adds the scenario's pass/fail fields to each round's result."""
    config = config or NodeConfig(
        mode="server", listen_addrs=[LOOPBACK], host=HOST_TARGET, republish=False
    )
    async with Node(config) as target, legit_peers(target, opts.use_js) as legit:

        async def one_round(number: int) -> dict[str, Any]:
            result = await host_round(opts, target, legit, child, extra)
            if judge is not None:
                judge(result)
            return result

        return await repeat_rounds(opts, one_round)


def legit_connected(target: Node, legit: Legit) -> dict[str, int]:
    """Connections the node holds to each legitimate peer (ours runs in this process, so
    one of its connections to the node is two descriptors and both ends' tasks here)."""
    out = {"ours": len(target.host.connmgr.connections(legit.ours.peer_id))}
    if legit.js is not None:
        out["js"] = len(target.host.connmgr.connections(PeerID.from_string(legit.js.peer_id)))
    return out


async def host_round(
    opts: Options, target: Node, legit: Legit, child: tuple[str, ...],
    extra: Callable[[Node], Awaitable[dict[str, Any]]] | None,
) -> dict[str, Any]:
    """One round of a host attack against ``target``."""
    legit.reset()
    gc.collect()
    before = measure()
    conns_before = len(target.host.connmgr)
    legit_before = legit_connected(target, legit)
    probe, sampler = LagProbe(), Sampler()
    probe.start()
    sampler.start()
    stop = asyncio.Event()
    using = asyncio.create_task(keep_using_host(target, legit, stop))
    target_addr = str(target.multiaddrs[0])
    attacker_task = asyncio.create_task(run_child(child[0], target_addr, *child[1:]))
    checks = await extra(target) if extra is not None else {}
    attacker = await attacker_task
    stop.set()
    await using
    during, lag = await sampler.stop(), await probe.stop()
    rc_during = target.host.resources.stats()
    after = await settled(opts.settle)
    return {
        "attacker": attacker,
        "checks": checks,
        "legit": legit.summary(),
        "loop_lag": lag,
        "node": {"connections_before": conns_before,
                 "connections_after": len(target.host.connmgr),
                 "legit_connected_before": legit_before,
                 "legit_connected_after": legit_connected(target, legit),
                 "resources_at_end_of_attack": rc_during,
                 "resources_after": target.host.resources.stats()},
        "resources": {"before": before, "during_peak": during, "after": after,
                      "rss_growth_peak": during.get("rss", 0) - before["rss"]},
    }


async def scenario_handshake_flood(opts: Options) -> dict[str, Any]:
    """1a: 1000 silent TCP connections and 200 sending garbage from 127.0.0.2; legitimate
    find_peer / ping (and newcomers dialing in) keep >= 99 % success."""
    silent, garbage = (100, 20) if opts.quick else (1000, 200)
    seconds = 10.0 if opts.quick else 30.0
    def judge(result: dict[str, Any]) -> None:
        result["success_ok"] = (result["legit"]["success"] or 0) >= 0.99

    return await host_attack(
        opts, ("sockets", str(silent), str(garbage), str(seconds)), judge=judge
    )


async def scenario_unfinished_streams(opts: Options) -> dict[str, Any]:
    """1b: 400 identities (50 source addresses) each holding an un-FINed identify stream;
    our outbound dials and a new legitimate inbound peer still succeed."""
    n, sources = (80, 10) if opts.quick else (400, 50)
    hold = 20.0 if opts.quick else 40.0

    async def dials(target: Node) -> dict[str, Any]:
        # all holders in and their streams past the node's close deadline (10 s)
        await asyncio.sleep(hold - 5.0)
        ok = 0
        tries = 3
        for _ in range(tries):
            other = Host(PrivateKey.generate(), HOST)
            await other.start([Multiaddr.parse(LOOPBACK)])
            try:
                await target.host.connect(other.peer_id, other.listen_addrs, timeout=OP_TIMEOUT)
                ok += 1
            except Exception:
                pass
            finally:
                await other.close()
        busy = sum(1 for c in target.host.connmgr if c.num_streams)
        return {"outbound_dials": tries, "outbound_ok": ok,
                "connections": len(target.host.connmgr), "connections_with_streams": busy}

    def judge(result: dict[str, Any]) -> None:
        checks = result["checks"]
        result["dials_ok"] = checks.get("outbound_ok") == checks.get("outbound_dials")

    child = ("holders", str(n), str(sources), "0", str(hold))
    return await host_attack(opts, child, dials, judge=judge)


async def scenario_buffer_flood(opts: Options) -> dict[str, Any]:
    """1c: 300 connections (40 source addresses) each pushing junk into streams the node
    does not read; RSS growth stays under the configured host memory budget."""
    n, sources, junk = (60, 8, 16) if opts.quick else (300, 40, 64)
    budget = ResourceLimits().host_memory

    async def accounted(target: Node) -> dict[str, Any]:
        peak = 0
        for _ in range(300):  # the node's own count of buffered bytes, every 100 ms
            peak = max(peak, target.host.resources.stats()["memory"])
            await asyncio.sleep(0.1)
        return {"buffered_bytes_peak": peak}

    def judge(result: dict[str, Any]) -> None:
        result["host_memory_budget"] = budget
        result["under_budget"] = result["resources"]["rss_growth_peak"] < budget

    return await host_attack(
        opts, ("holders", str(n), str(sources), str(junk), "15"), accounted, judge=judge
    )


SCENARIOS: dict[str, Callable[[Options], Awaitable[dict[str, Any]]]] = {
    "store_flood": scenario_store_flood,
    "huge_find_node_answer": scenario_huge_find_node_answer,
    "handshake_flood": scenario_handshake_flood,
    "unfinished_streams": scenario_unfinished_streams,
    "buffer_flood": scenario_buffer_flood,
}
"""Scenario name → coroutine; each result is one key of the JSON output."""


# ------------------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    use_js = not args.no_js and js_available()
    opts = Options(
        records=args.records, entries=args.entries, settle=args.settle,
        cap_providers=args.cap_providers, cap_values=args.cap_values, use_js=use_js,
        rounds=max(1, args.rounds), rss_tolerance=int(args.rss_tolerance_mb * 1024 * 1024),
    )
    if args.quick:
        opts = replace(opts, records=min(opts.records, 1000), entries=min(opts.entries, 20_000),
                       settle=min(opts.settle, 2.0), quick=True)
    out: dict[str, Any] = {
        "machine": machine(),
        "js": "used" if use_js else ("--no-js" if args.no_js else JS_UNAVAILABLE_REASON),
    }
    for name in args.scenario or list(SCENARIOS):
        started = time.perf_counter()
        try:
            result = await SCENARIOS[name](opts)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - started, 1)
        out[name] = result
    return out


def child_main(role: str, args: list[str]) -> None:
    if role == "flood":
        result = asyncio.run(child_flood(args[0], int(args[1]), int(args[2])))
        print(json.dumps(result), flush=True)
    elif role == "huge-answer":
        asyncio.run(child_huge_answer(int(args[0])))
    elif role == "sockets":
        result = asyncio.run(child_sockets(args[0], int(args[1]), int(args[2]), float(args[3])))
        print(json.dumps(result), flush=True)
    elif role == "holders":
        result = asyncio.run(child_holders(args[0], int(args[1]), int(args[2]), int(args[3]),
                                           float(args[4])))
        print(json.dumps(result), flush=True)
    else:
        raise SystemExit(f"unknown child role {role}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds after an attack before resources are measured again")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=87_381)
    parser.add_argument("--cap-providers", type=int, default=1000)
    parser.add_argument("--cap-values", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat each selected scenario N times against the same node")
    parser.add_argument("--rss-tolerance-mb", type=float, default=2.0,
                        help="allowed RSS growth between the first and last round's after")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-js", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
