"""Drive a real js-libp2p node (``jsnode.mjs``, pinned npm packages) from Python.

Interop is judged only against real peers (DESIGN.md §5, §8): the interop tests and
the benchmarks start js-libp2p nodes on 127.0.0.1 through :class:`JsNode` and talk to
them over newline-delimited JSON on the child's stdin/stdout.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

from .jsnode_types import (
    ConnectionInfo,
    FoundPeer,
    JsCommandError,
    JsKeyPair,
    JsNodeError,
    JsNodeExitedError,
    JsNodeOptions,
    JsNodeStartError,
    JsValue,
    PeerAddrs,
    PeerStoreEntry,
    ProvideResult,
    PutResult,
    RoutingV1Record,
)

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "INTEROP_DIR",
    "JSNODE_SCRIPT",
    "JS_UNAVAILABLE_REASON",
    "ConnectionInfo",
    "FoundPeer",
    "JsCommandError",
    "JsKeyPair",
    "JsNode",
    "JsNodeError",
    "JsNodeExitedError",
    "JsNodeOptions",
    "JsNodeStartError",
    "JsValue",
    "PeerAddrs",
    "PeerStoreEntry",
    "ProvideResult",
    "PutResult",
    "RoutingV1Record",
    "Topology",
    "connect_js_nodes",
    "interop_required",
    "js_available",
    "node_modules_dir",
    "sha256_multihash",
    "topology_edges",
]

INTEROP_DIR = Path(__file__).resolve().parent
"""Where package.json, package-lock.json and node_modules live."""

JSNODE_SCRIPT = INTEROP_DIR / "jsnode.mjs"
"""The js side of the harness."""

DEFAULT_TIMEOUT_MS = 30_000
"""js-side default per-command timeout (jsnode.mjs ``DEFAULT_TIMEOUT_MS``)."""

_REPLY_GRACE_S = 5.0  # how long past the js-side timeout we wait for the reply itself
_STOP_GRACE_S = 5.0
_LINE_LIMIT = 16 * 1024 * 1024
_STDERR_TAIL = 200
_EVENTS_KEPT = 1000

Topology = Literal["none", "line", "star", "full"]


MODULES_ENV = "ZIKADE_NODE_MODULES"
"""Points the "are the npm modules installed?" check at another folder.

For testing that check (an empty folder makes the interop tests see no modules)
without touching ``tests/interop/node_modules``, which other runs are using. The
js peers themselves always resolve their modules from ``tests/interop``.
"""


def node_modules_dir() -> Path:
    """Where the interop tests look for the npm modules (``$ZIKADE_NODE_MODULES`` or ours)."""
    override = os.environ.get(MODULES_ENV)
    return Path(override) if override else INTEROP_DIR / "node_modules"


def js_available() -> bool:
    """Whether js-libp2p interop peers can run here: ``node`` on PATH and npm deps installed."""
    return shutil.which("node") is not None and (node_modules_dir() / "libp2p").is_dir()


def interop_required() -> bool:
    """Whether a missing Node.js or npm module must fail the interop tests instead of skipping.

    True in CI (``CI`` set to anything but ``""``, ``0`` or ``false``; the CI runs
    ``.ci/run`` with ``CI=true``) or with ``ZIKADE_REQUIRE_INTEROP=1``: there a skip
    would hide that the interop tests never ran.
    """
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("ZIKADE_REQUIRE_INTEROP") == "1"


JS_UNAVAILABLE_REASON = (
    "js-libp2p interop peers unavailable: needs `node` on PATH and "
    "tests/interop/node_modules (run `npm ci` in tests/interop, as scripts/test does)"
)
"""The skip reason shown when :func:`js_available` is false."""


def sha256_multihash(data: bytes) -> bytes:
    """The sha2-256 multihash of ``data``: the safe provider key for every implementation."""
    return b"\x12\x20" + hashlib.sha256(data).digest()


class JsNode:
    """One js-libp2p node in a child process; an async context manager.

    On entry it spawns ``node jsnode.mjs``, waits for the ready line and exposes
    :attr:`peer_id` and :attr:`addrs`; on exit it sends ``stop`` and kills the
    process if it lingers. Commands may run concurrently.
    """

    script: Path = JSNODE_SCRIPT
    """The js program to run (a subclass may run another one with the same line protocol)."""

    def __init__(
        self,
        options: JsNodeOptions | None = None,
        *,
        start_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options or JsNodeOptions()
        self._start_timeout = start_timeout
        self._env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=_EVENTS_KEPT)
        self._event_cond = asyncio.Condition()
        self._exited = False
        self.peer_id: str = ""
        self.addrs: list[str] = []
        self.protocols: list[str] = []
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn the process and wait (bounded) for its ready line."""
        if self._proc is not None:
            raise JsNodeError("JsNode already started")
        if not js_available():
            raise JsNodeStartError(JS_UNAVAILABLE_REASON)
        env = dict(os.environ)
        if self._env is not None:
            env.update(self._env)
        self._ready = asyncio.get_running_loop().create_future()
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(self.script),
            self.options.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(INTEROP_DIR),
            env=env,
            limit=_LINE_LIMIT,
        )
        self.pid = self._proc.pid
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"jsnode-{self.pid}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"jsnode-{self.pid}-stderr"),
        ]
        try:
            async with asyncio.timeout(self._start_timeout):
                ready = await self._ready
        except BaseException as err:
            await self.close()
            if isinstance(err, TimeoutError):
                raise JsNodeStartError(
                    f"js node not ready after {self._start_timeout}s\n{self.stderr_tail()}"
                ) from None
            raise
        self.peer_id = str(ready["peerId"])
        self.addrs = [str(a) for a in ready["addrs"]]
        self.protocols = [str(p) for p in ready["protocols"]]

    async def close(self) -> None:
        """Stop the node; kill it if it lingers; reap it and the reader tasks. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and not self._exited:
            with contextlib.suppress(JsNodeError, TimeoutError, OSError):
                await self._request("stop", {}, _STOP_GRACE_S)
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        for task in self._tasks:
            # the readers end at EOF once the process is gone; cancel only as a backstop
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await asyncio.shield(task)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_pending(JsNodeExitedError("js node stopped"))

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended."""
        return None if self._proc is None else self._proc.returncode

    def stderr_tail(self) -> str:
        """The last lines the js process wrote to stderr (for failure messages)."""
        return "\n".join(self._stderr)

    # ------------------------------------------------------------------ plumbing

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:  # a line above _LINE_LIMIT: framing is lost
                    break
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    self._stderr.append(f"[stdout, not JSON] {line[:200]!r}")
                    continue
                if isinstance(msg, dict):
                    await self._dispatch(msg)
        finally:
            self._exited = True
            err = JsNodeExitedError(f"js node exited\n{self.stderr_tail()}")
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(err)
                self._ready.exception()  # mark retrieved: close() may be the only waiter
            self._fail_pending(err)
            async with self._event_cond:
                self._event_cond.notify_all()

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if "event" in msg:
            if msg["event"] == "ready":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(msg)
                return
            async with self._event_cond:
                self._events.append(msg)
                self._event_cond.notify_all()
            return
        fut = self._pending.pop(msg.get("id", -1), None)
        if fut is None or fut.done():
            return
        if msg.get("ok") is True:
            fut.set_result(msg.get("result"))
        else:
            fut.set_exception(
                JsCommandError(
                    str(msg.get("cmd", "?")), str(msg.get("name")), str(msg.get("error"))
                )
            )

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stderr = self._proc.stderr
        with contextlib.suppress(ValueError):
            while line := await stderr.readline():
                self._stderr.append(line.decode(errors="replace").rstrip())

    def _fail_pending(self, err: JsNodeError) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)

    # ------------------------------------------------------------------ commands

    async def call(self, cmd: str, *, timeout_ms: int | None = None, **args: Any) -> Any:
        """Send one command and return its ``result``; raise :class:`JsCommandError` on failure.

        ``timeout_ms`` bounds the command inside js (AbortSignal.timeout); Python waits
        that long plus a grace period for the reply.
        """
        wait_s = (timeout_ms or DEFAULT_TIMEOUT_MS) / 1000 + _REPLY_GRACE_S
        if timeout_ms is not None:
            args["timeoutMs"] = timeout_ms
        return await self._request(cmd, args, wait_s)

    async def _request(self, cmd: str, args: dict[str, Any], wait_s: float) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or self._exited or proc.returncode is not None:
            raise JsNodeExitedError(f"js node is not running (cmd {cmd})")
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            proc.stdin.write(json.dumps({**args, "id": msg_id, "cmd": cmd}).encode() + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as err:
            self._pending.pop(msg_id, None)
            raise JsNodeExitedError(f"cannot send {cmd}: {err}") from err
        try:
            async with asyncio.timeout(wait_s):
                return await fut
        except JsCommandError as err:
            raise JsCommandError(cmd, err.name, err.message) from None
        finally:
            self._pending.pop(msg_id, None)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Unsolicited events seen so far (peer:connect, peer:identify, …), oldest first."""
        return [e for e in self._events if name is None or e.get("event") == name]

    async def wait_event(
        self, name: str, pred: Callable[[dict[str, Any]], bool] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        """The first event ``name`` (seen already or later) that satisfies ``pred``."""

        def find() -> dict[str, Any] | None:
            for e in self._events:
                if e.get("event") == name and (pred is None or pred(e)):
                    return e
            return None

        async with asyncio.timeout(timeout), self._event_cond:
            while (found := find()) is None:
                if self._exited:
                    raise JsNodeExitedError(f"js node exited while waiting for {name}")
                await self._event_cond.wait()
            return found

    async def dial(self, addr: str, *, timeout_ms: int | None = None) -> ConnectionInfo:
        """Connect to ``addr`` (a multiaddr with /p2p/, or a known peer id)."""
        return cast(ConnectionInfo, await self.call("dial", addr=addr, timeout_ms=timeout_ms))

    async def hang_up(self, peer: str, *, timeout_ms: int | None = None) -> None:
        """Close every connection to ``peer`` (peer id or multiaddr)."""
        await self.call("hangUp", peer=peer, timeout_ms=timeout_ms)

    async def ping(
        self, peer: str, count: int = 1, *, timeout_ms: int | None = None
    ) -> list[float]:
        """``count`` /ipfs/ping/1.0.0 round trips to ``peer`` (id or multiaddr); RTTs in ms."""
        rtts = await self.call("ping", peer=peer, count=count, timeout_ms=timeout_ms)
        return [float(r) for r in rtts]

    async def peers(self) -> list[PeerAddrs]:
        """Connected peers with the remote addresses of their connections."""
        return cast(list[PeerAddrs], await self.call("peers"))

    async def peer_info(self, peer: str) -> PeerStoreEntry | None:
        """The js peer store entry for ``peer`` (protocols/agent from identify), or None."""
        return cast(PeerStoreEntry | None, await self.call("peerInfo", peer=peer))

    async def connections(self, peer: str | None = None) -> list[ConnectionInfo]:
        """Open connections (optionally only to ``peer``) with their streams."""
        args: dict[str, Any] = {} if peer is None else {"peer": peer}
        return cast(list[ConnectionInfo], await self.call("connections", **args))

    async def new_stream(
        self, peer: str, protocol: str | Sequence[str], *, timeout_ms: int | None = None
    ) -> str:
        """Open a stream, fully negotiate ``protocol`` (or the first supported of a list),
        close it, and return the protocol the remote selected."""
        protocols = [protocol] if isinstance(protocol, str) else list(protocol)
        res = await self.call("newStream", peer=peer, protocols=protocols, timeout_ms=timeout_ms)
        return str(res["protocol"])

    async def find_peer(
        self, peer: str, *, use_cache: bool = False, timeout_ms: int | None = None
    ) -> FoundPeer | None:
        """A DHT FIND_NODE lookup for ``peer`` (network only unless ``use_cache``)."""
        res = await self.call("findPeer", peer=peer, useCache=use_cache, timeout_ms=timeout_ms)
        return cast(FoundPeer | None, res)

    async def get_closest_peers(
        self, key: bytes | None = None, *, peer: str | None = None, timeout_ms: int | None = None
    ) -> list[PeerAddrs]:
        """The DHT's closest peers to ``key`` bytes or to ``peer``'s multihash."""
        if (key is None) == (peer is None):
            raise ValueError("pass exactly one of key, peer")
        args: dict[str, Any] = {"peer": peer} if key is None else {"keyHex": key.hex()}
        res = await self.call("getClosestPeers", timeout_ms=timeout_ms, **args)
        return cast(list[PeerAddrs], res)

    async def provide(
        self,
        *,
        cid: str | None = None,
        multihash: bytes | None = None,
        timeout_ms: int | None = None,
    ) -> ProvideResult:
        """Announce this node as provider of ``cid`` (or of CIDv1-raw(``multihash``))."""
        res = await self.call("provide", timeout_ms=timeout_ms, **_cid_args(cid, multihash))
        return cast(ProvideResult, res)

    async def find_providers(
        self,
        *,
        cid: str | None = None,
        multihash: bytes | None = None,
        count: int = 20,
        timeout_ms: int | None = None,
    ) -> list[FoundPeer]:
        """Up to ``count`` providers; on timeout, the ones found so far (maybe none)."""
        res = await self.call(
            "findProviders", count=count, timeout_ms=timeout_ms, **_cid_args(cid, multihash)
        )
        return cast(list[FoundPeer], res)

    async def put_value(
        self, key: bytes, value: bytes, *, timeout_ms: int | None = None
    ) -> PutResult:
        """DHT PUT_VALUE of ``key`` → ``value`` (stored locally, then at the closest peers)."""
        res = await self.call(
            "putValue",
            keyHex=key.hex(),
            valueB64=base64.b64encode(value).decode(),
            timeout_ms=timeout_ms,
        )
        return cast(PutResult, res)

    async def get_value(self, key: bytes, *, timeout_ms: int | None = None) -> JsValue | None:
        """DHT GET_VALUE of ``key``: the best valid record, or None if nobody had one."""
        res = await self.call("getValue", keyHex=key.hex(), timeout_ms=timeout_ms)
        if res is None:
            return None
        return JsValue(
            value=base64.b64decode(res["valueB64"]),
            from_peer=str(res["from"]),
            peers_with_record=tuple(res["peersWithRecord"]),
        )

    async def routing_table(self) -> list[str]:
        """Peer ids in the js kad routing table."""
        return [str(p) for p in await self.call("routingTable")]

    async def wait_routing_table(self, min_size: int, *, timeout_ms: int = 10_000) -> list[str]:
        """Wait until the routing table holds ≥ ``min_size`` peers; return them."""
        res = await self.call("waitRoutingTable", min=min_size, timeout_ms=timeout_ms)
        return [str(p) for p in res]

    async def add_peer(self, addr: str, *, timeout_ms: int | None = None) -> list[str]:
        """Seed the routing table with ``addr`` (needs /p2p/): store, dial, insert."""
        return [str(p) for p in await self.call("addPeer", addr=addr, timeout_ms=timeout_ms)]

    async def bootstrap(self, addrs: Sequence[str], *, timeout_ms: int | None = None) -> list[str]:
        """:meth:`add_peer` for each of ``addrs``, then a routing table refresh."""
        res = await self.call("bootstrap", addrs=list(addrs), timeout_ms=timeout_ms)
        return [str(p) for p in res]

    async def dht_mode(self, mode: Literal["client", "server"] | None = None) -> str:
        """The kad mode; switches it first when ``mode`` is given."""
        args: dict[str, Any] = {} if mode is None else {"mode": mode}
        return str(await self.call("dhtMode", **args))

    async def keygen(self) -> JsKeyPair:
        """A fresh Ed25519 identity made by js-libp2p (does not change this node's)."""
        res = await self.call("keygen")
        return JsKeyPair(
            peer_id=str(res["peerId"]),
            multihash=bytes.fromhex(res["multihashHex"]),
            public_key=base64.b64decode(res["publicKeyB64"]),
            private_key=base64.b64decode(res["privateKeyB64"]),
        )

    async def routing_v1_records(
        self,
        url: str,
        op: Literal["getProviders", "getPeers", "getClosestPeers"],
        *,
        cid: str | None = None,
        multihash: bytes | None = None,
        peer: str | None = None,
        count: int | None = None,
        timeout_ms: int | None = None,
    ) -> list[RoutingV1Record]:
        """Ask a Delegated Routing V1 server at ``url`` (loopback) through the js client.

        getProviders takes ``cid``/``multihash``, getPeers ``peer``, getClosestPeers either.
        """
        args: dict[str, Any] = {"url": url, "op": op}
        if cid is not None or multihash is not None:
            args.update(_cid_args(cid, multihash))
        if peer is not None:
            args["peer"] = peer
        if count is not None:
            args["count"] = count
        res = await self.call("routingV1", timeout_ms=timeout_ms, **args)
        return cast(list[RoutingV1Record], res)

    async def routing_v1_ipns(
        self, url: str, peer: str, record: bytes | None = None, *, timeout_ms: int | None = None
    ) -> bytes | None:
        """GET (``record`` None) or PUT the IPNS record of ``peer`` via the js HTTP client."""
        if record is None:
            res = await self.call(
                "routingV1", url=url, op="getIPNS", peer=peer, timeout_ms=timeout_ms
            )
            return base64.b64decode(res)
        await self.call(
            "routingV1",
            url=url,
            op="putIPNS",
            peer=peer,
            recordB64=base64.b64encode(record).decode(),
            timeout_ms=timeout_ms,
        )
        return None

    async def info(self) -> dict[str, Any]:
        """peerId, current listen addrs and registered protocols."""
        return cast(dict[str, Any], await self.call("info"))

    async def metrics(self) -> dict[str, Any]:
        """Cheap counters: connections, streams, routing table size, RSS, CPU time."""
        return cast(dict[str, Any], await self.call("metrics"))


def _cid_args(cid: str | None, multihash: bytes | None) -> dict[str, Any]:
    if (cid is None) == (multihash is None):
        raise ValueError("pass exactly one of cid, multihash")
    return {"cid": cid} if cid is not None else {"multihashHex": cast(bytes, multihash).hex()}


def topology_edges(n: int, topology: Topology) -> list[tuple[int, int]]:
    """Which node dials which: ``line`` i→i+1, ``star`` 0←i, ``full`` i→j for i<j."""
    if topology == "none":
        return []
    if topology == "line":
        return [(i, i + 1) for i in range(n - 1)]
    if topology == "star":
        return [(i, 0) for i in range(1, n)]
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


async def connect_js_nodes(
    nodes: Sequence[JsNode], topology: Topology = "line", *, wait_routing: bool | None = None
) -> None:
    """Dial the ``topology`` edges; with DHT nodes, wait until every node's routing table
    holds all its direct neighbours (js adds kad servers after identify + a check ping)."""
    edges = topology_edges(len(nodes), topology)
    for a, b in edges:
        await nodes[a].dial(nodes[b].addrs[0], timeout_ms=10_000)
    if wait_routing is None:
        wait_routing = all(n.options.dht and not n.options.client_mode for n in nodes)
    if not wait_routing:
        return
    degree = collections.Counter(i for edge in edges for i in edge)
    async with asyncio.TaskGroup() as tg:
        for i, node in enumerate(nodes):
            if degree[i]:
                tg.create_task(node.wait_routing_table(degree[i], timeout_ms=15_000))
