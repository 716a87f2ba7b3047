"""The commands of the RPC API, as functions of a running :class:`Node`.

One table, :data:`COMMANDS`, maps Kubo-style command paths (``routing/findpeer``)
to handlers. The daemon serves them over HTTP (:mod:`zikade_py.http.rpc`) and
the CLI runs the very same handlers on an ephemeral in-process node when no
daemon answers, so both paths print identical results and errors.

Every handler is an async iterator of JSON objects: routing commands stream
Kubo ``routing.QueryEvent`` objects (``{"ID", "Type", "Responses", "Extra"}``),
the others yield one document. Failures raise :class:`ArgumentError` (bad
input) or :class:`OpError` (the operation failed); both carry one line.
"""

from __future__ import annotations

import asyncio
import base64
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zikade_py import __version__
from zikade_py.dht.config import BroadcastResult, NotFoundError
from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.node import Node
from zikade_py.dht.query_events import QueryEvent, QueryEventType
from zikade_py.http import repo as repo_mod
from zikade_py.http.args import (
    parse_cid,
    parse_duration,
    parse_lookup_key,
    parse_peer_id,
    parse_peer_or_addr,
    parse_record_key,
)
from zikade_py.http.errors import ArgumentError, OpError
from zikade_py.http.provide_ops import (
    provide_add,
    provide_clear,
    provide_reprovide,
    provide_stat,
)
from zikade_py.p2p.host import DialError
from zikade_py.p2p.identify import AGENT_VERSION
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

JSONObj = dict[str, Any]
Emit = Callable[[JSONObj], None]

DEFAULT_TIMEOUT = 60.0
"""Seconds a routing command may take when the request names no ``timeout``."""

DEFAULT_NUM_PROVIDERS = 20
"""Kubo's ``findprovs -n`` default."""


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed command invocation: positional ``arg`` values, options, an optional body."""

    args: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def option(self, name: str, default: str | None = None) -> str | None:
        """The option ``name`` (Kubo long name), or ``default``."""
        return self.options.get(name, default)

    def timeout(self) -> float:
        """The request's ``timeout`` option in seconds (Kubo duration), default 60 s."""
        text = self.options.get("timeout")
        return DEFAULT_TIMEOUT if text is None else parse_duration(text)

    def one_arg(self, what: str) -> str:
        """The single positional argument; :class:`ArgumentError` if absent or repeated."""
        if len(self.args) != 1:
            raise ArgumentError(f"expected exactly one argument: {what}")
        return self.args[0]


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler works on: the node and, for a daemon, its repo (bootstrap list)."""

    node: Node
    repo: Path | None = None


Handler = Callable[[Context, Request], AsyncIterator[JSONObj]]


@dataclass(frozen=True, slots=True)
class Command:
    """A registered command: its handler and whether it streams NDJSON."""

    handler: Handler
    streaming: bool


# ------------------------------------------------------------------ JSON shapes


def peer_json(info: PeerInfo) -> JSONObj:
    """A go ``peer.AddrInfo`` as Kubo marshals it."""
    return {"ID": str(info.peer_id), "Addrs": [str(a) for a in info.addrs]}


def query_event(
    type_: QueryEventType | int,
    peer: object = "",
    responses: Sequence[PeerInfo] = (),
    extra: str = "",
) -> JSONObj:
    """A Kubo ``routing.QueryEvent`` (``Responses`` is null when empty, as in go)."""
    return {
        "ID": "" if peer is None else str(peer),
        "Type": int(type_),
        "Responses": [peer_json(r) for r in responses] or None,
        "Extra": extra,
    }


_RESULT_TYPES = frozenset(
    {QueryEventType.FINAL_PEER, QueryEventType.PROVIDER, QueryEventType.VALUE}
)


def node_event(ev: QueryEvent) -> JSONObj | None:
    """A node's progress event as JSON; result events are emitted by the handlers themselves."""
    if ev.type in _RESULT_TYPES:
        return None
    return query_event(ev.type, ev.peer, ev.responses, ev.extra)


# ------------------------------------------------------------------ streaming plumbing


async def _stream(run: Callable[[Emit], Awaitable[None]], timeout: float) -> AsyncIterator[JSONObj]:
    """Run ``run(emit)`` as a task and yield what it emits, then raise what it raised."""
    queue: asyncio.Queue[JSONObj | None] = asyncio.Queue()

    async def bounded() -> None:
        try:
            # the node bounds its own queries; this is the backstop for everything else
            async with asyncio.timeout(timeout + 5.0):
                await run(queue.put_nowait)
        except NotFoundError:
            raise OpError("routing: not found") from None
        except TimeoutError:
            raise OpError(f"timed out after {timeout:g}s") from None

    task = asyncio.create_task(bounded())
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield item
        task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _on_event(emit: Emit) -> Callable[[QueryEvent], None]:
    def on_event(ev: QueryEvent) -> None:
        doc = node_event(ev)
        if doc is not None:
            emit(doc)

    return on_event


# ------------------------------------------------------------------ routing commands


def find_peer(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing/findpeer``: progress events, then FINAL_PEER with the peer's addresses."""
    peer = parse_peer_id(req.one_arg("<peer ID>"))
    if peer == ctx.node.peer_id:
        raise ArgumentError("cannot find-peer on self")
    timeout = req.timeout()

    async def run(emit: Emit) -> None:
        info = await ctx.node.find_peer(peer, timeout=timeout, on_event=_on_event(emit))
        emit(query_event(QueryEventType.FINAL_PEER, "", [info]))

    return _stream(run, timeout)


def find_providers(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing/findprovs``: progress events and one PROVIDER event per provider."""
    cid = parse_cid(req.one_arg("<CID>"))
    count_text = req.option("num-providers", str(DEFAULT_NUM_PROVIDERS)) or ""
    try:
        count = int(count_text)
    except ValueError:
        raise ArgumentError(f"invalid number of providers {count_text!r}") from None
    if count < 1:
        raise ArgumentError("number of providers must be greater than 0")
    timeout = req.timeout()

    async def run(emit: Emit) -> None:
        providers = ctx.node.find_providers(
            cid, count=count, timeout=timeout, on_event=_on_event(emit)
        )
        async for info in providers:
            emit(query_event(QueryEventType.PROVIDER, "", [info]))

    return _stream(run, timeout)


def provide(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing/provide``: announce each CID; FINAL_PEER per peer that took the record."""
    if not req.args:
        raise ArgumentError("expected at least one argument: <CID>...")
    cids = [parse_cid(a) for a in req.args]
    timeout = req.timeout()
    if not ctx.node.connected_peers() and not ctx.node.routing_table():
        # checked before node.provide, which would first store the record locally
        raise OpError("cannot provide, no connected peers")

    async def run(emit: Emit) -> None:
        for cid in cids:
            result = await ctx.node.provide(cid, timeout=timeout, on_event=_on_event(emit))
            stored = _peers_of(result)
            if not stored and not ctx.node.connected_peers():
                raise OpError("cannot provide, no connected peers")
            for peer in stored:
                emit(query_event(QueryEventType.FINAL_PEER, peer, extra=str(cid)))

    return _stream(run, timeout)


def get_value(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing/get``: progress events, then VALUE with the record base64 in ``Extra``."""
    key = parse_record_key(req.one_arg("<key>"))
    timeout = req.timeout()

    async def run(emit: Emit) -> None:
        value = await ctx.node.get_value(key, timeout=timeout, on_event=_on_event(emit))
        emit(query_event(QueryEventType.VALUE, "", extra=base64.b64encode(value).decode()))

    return _stream(run, timeout)


def put_value(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing/put``: the request body is the record; VALUE per peer that stored it."""
    key = parse_record_key(req.one_arg("<key>"))
    if req.body is None:
        raise ArgumentError("no value given (pass a file or - for stdin)")
    value = req.body
    timeout = req.timeout()

    async def run(emit: Emit) -> None:
        try:
            result = await ctx.node.put_value(key, value, timeout=timeout, on_event=_on_event(emit))
        except ValueError as exc:  # InvalidRecordError is a ValueError: the record is bad input
            raise ArgumentError(f"invalid record: {exc}") from None
        for peer in _peers_of(result):
            emit(query_event(QueryEventType.VALUE, peer))

    return _stream(run, timeout)


def closest_peers(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``dht/query``: progress events, then FINAL_PEER per closest peer (Kubo ``dht query``)."""
    key = parse_lookup_key(req.one_arg("<peer ID or CID>"))
    timeout = req.timeout()
    if not ctx.node.routing_table():
        raise OpError("no peers in the routing table: nobody to ask (join the network first)")

    async def run(emit: Emit) -> None:
        peers = await ctx.node.get_closest_peers(key, timeout=timeout, on_event=_on_event(emit))
        for info in peers:
            emit(query_event(QueryEventType.FINAL_PEER, info.peer_id, [info]))

    return _stream(run, timeout)


def _peers_of(result: BroadcastResult) -> list[str]:
    """The peers that took a provider record or a value."""
    return [str(p) for p in result.contacted]


# ------------------------------------------------------------------ node state


async def _one(doc: JSONObj) -> AsyncIterator[JSONObj]:
    yield doc


def identity(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``id [<peer ID or multiaddr>]``: the ``ipfs id`` document of the node, or of a peer.

    A peer is dialled (a bare peer ID is found through the DHT when its
    addresses are unknown) and asked with identify, as ``ipfs id <peer>``.
    """
    node = ctx.node
    if not req.args:
        key = node.host.public_key
        return _one(
            {
                "ID": str(node.peer_id),
                "PublicKey": base64.b64encode(key.to_protobuf()).decode(),
                "Addresses": [str(a.with_peer_id(node.peer_id)) for a in node.listen_addrs],
                "AgentVersion": AGENT_VERSION,
                "Protocols": sorted(node.host.protocols),
                "Reachability": node.reachability,
                "DHTMode": node.effective_mode,
            }
        )
    target = parse_peer_or_addr(req.one_arg("<peer ID or multiaddr>"))
    timeout = req.timeout()

    async def run(emit: Emit) -> None:
        peer = await _reach(ctx, target, timeout)
        if peer == node.peer_id:
            async for doc in identity(ctx, Request()):
                emit(doc)
            return
        info = await node.host.identify_peer(peer, timeout=timeout)
        key = info.public_key
        emit(
            {
                "ID": str(peer),
                "PublicKey": base64.b64encode(key.to_protobuf()).decode() if key else "",
                "Addresses": [str(a.with_peer_id(peer)) for a in info.listen_addrs],
                "AgentVersion": info.agent_version,
                "Protocols": sorted(info.protocols),
            }
        )

    return _stream(run, timeout)


async def _reach(ctx: Context, target: PeerID | Multiaddr, timeout: float) -> PeerID:
    """Connect to ``target``; a bare peer ID with no known address is looked up in the DHT."""
    node = ctx.node
    if isinstance(target, Multiaddr):
        peer = target.peer_id()
        if peer is None:  # parse_peer_or_addr insists on /p2p/; kept for the type checker
            raise ArgumentError(f"multiaddr {target} has no /p2p/<peer-id> component")
        if peer != node.peer_id:
            await _connect(node, peer, [target], timeout)
        return peer
    if target == node.peer_id or node.host.connmgr.get(target) is not None:
        return target
    addrs = list(node.host.peerstore.addrs(target))
    if not addrs:
        addrs = list((await node.find_peer(target, timeout=timeout)).addrs)
    await _connect(node, target, addrs, timeout)
    return target


async def _connect(node: Node, peer: PeerID, addrs: Sequence[Multiaddr], timeout: float) -> None:
    try:
        await node.host.connect(peer, addrs, timeout=timeout)
    except (OSError, DialError) as exc:  # a dial timeout too: say which dial timed out
        raise OpError(str(exc) or f"cannot connect to {peer}: {type(exc).__name__}") from None


def swarm_peers(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``swarm/peers``: one entry per open connection (Kubo ``connInfo``)."""
    peers: list[JSONObj] = []
    for conn in ctx.node.host.connmgr.connections():
        if conn.is_closed:
            continue
        peers.append(
            {
                "Addr": str(conn.remote_addr) if conn.remote_addr is not None else "",
                "Peer": str(conn.remote_peer),
                "Latency": "",
                "Muxer": "/yamux/1.0.0",
                "Direction": 1 if str(conn.direction).lower().endswith("inbound") else 2,
                "Streams": None,
            }
        )
    peers.sort(key=lambda p: (p["Peer"], p["Addr"]))
    return _one({"Peers": peers})


def swarm_resources(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``swarm/resources``: usage against every limit (Kubo ``ipfs swarm resources``)."""
    from zikade_py.http.resources import resource_view

    return _one(resource_view(ctx.node))


def routing_table(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``routing-table``: the table's entries grouped by bucket (common prefix length)."""
    buckets: dict[int, list[JSONObj]] = {}
    for entry in ctx.node.routing_table():
        buckets.setdefault(entry.cpl, []).append(
            {
                "ID": str(entry.peer.peer_id),
                "Addrs": [str(a) for a in entry.peer.addrs],
                "AddedAt": entry.added_at,
                "LastSeen": entry.last_seen,
            }
        )
    doc = {
        "ID": str(ctx.node.peer_id),
        "Buckets": [{"Cpl": cpl, "Peers": peers} for cpl, peers in sorted(buckets.items())],
    }
    return _one(doc)


def ping(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``ping``: Kubo's ping stream (a header, one object per pong, the average).

    The target is a multiaddr with ``/p2p/`` or a bare peer ID (found through
    the DHT when its addresses are unknown); ``interval`` (a duration, default
    1s) separates the pings.
    """
    target = parse_peer_or_addr(req.one_arg("<peer ID or multiaddr>"))
    count_text = req.option("count", "10") or ""
    try:
        count = int(count_text)
    except ValueError:
        raise ArgumentError(f"invalid ping count {count_text!r}") from None
    if count < 1:
        raise ArgumentError("ping count must be at least 1")
    interval_text = req.option("interval")
    interval = 1.0 if interval_text is None else parse_duration(interval_text, allow_zero=True)
    timeout = req.timeout()
    name = target.peer_id() if isinstance(target, Multiaddr) else target

    async def run(emit: Emit) -> None:
        emit({"Success": False, "Time": 0, "Text": f"PING {name}."})
        peer = await _reach(ctx, target, timeout)
        rtts: list[float] = []
        for i in range(count):
            if i:
                await asyncio.sleep(interval)
            try:
                rtt = (await ctx.node.ping(peer, 1))[0]
            except (OSError, ConnectionError) as exc:
                raise OpError(f"ping failed: {exc}") from None
            rtts.append(rtt)
            emit({"Success": True, "Time": int(rtt * 1e9), "Text": ""})
        avg = sum(rtts) / len(rtts) * 1000
        emit({"Success": True, "Time": 0, "Text": f"Average latency: {avg:.2f}ms"})

    return _stream(run, timeout)


def version(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``version``: program, system and Python versions (Kubo ``version`` shape)."""
    return _one(
        {
            "Version": __version__,
            "Commit": "",
            "Repo": "",
            "System": f"{platform.machine()}/{platform.system().lower()}",
            "Python": platform.python_version(),
        }
    )


# ------------------------------------------------------------------ bootstrap list


def _repo_of(ctx: Context) -> Path:
    if ctx.repo is None:
        raise OpError("this node has no repo: no bootstrap list to change")
    return ctx.repo


def _repo_call(fn: Callable[[], list[str]]) -> list[str]:
    try:
        return fn()
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    except repo_mod.RepoError as exc:
        raise OpError(str(exc)) from None


def bootstrap_list(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``bootstrap/list``: the repo's bootstrap peers."""
    repo = _repo_of(ctx)
    return _one({"Peers": _repo_call(lambda: repo_mod.load_config(repo).bootstrap)})


def bootstrap_add(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``bootstrap/add``: add peers to the repo's list (and to the running node)."""
    repo = _repo_of(ctx)
    if not req.args:
        raise ArgumentError("expected at least one argument: <multiaddr>...")
    added = _repo_call(lambda: repo_mod.bootstrap_add(repo, list(req.args)))
    for addr in added:
        if "/p2p/" in addr:  # a bare /dnsaddr/<name> names its peers only once resolved
            ctx.node.add_peer(addr)
    return _one({"Peers": added})


def bootstrap_rm(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``bootstrap/rm``: remove peers from the repo's list (``all=true`` removes every one)."""
    repo = _repo_of(ctx)
    remove_all = (req.option("all", "false") or "").lower() == "true"
    if not req.args and not remove_all:
        raise ArgumentError("expected at least one argument: <multiaddr>... (or --all)")
    removed = _repo_call(lambda: repo_mod.bootstrap_rm(repo, list(req.args), remove_all=remove_all))
    return _one({"Peers": removed})


COMMANDS: dict[str, Command] = {
    "id": Command(identity, streaming=False),
    "version": Command(version, streaming=False),
    "swarm/peers": Command(swarm_peers, streaming=False),
    "swarm/resources": Command(swarm_resources, streaming=False),
    "routing-table": Command(routing_table, streaming=False),
    "routing/findpeer": Command(find_peer, streaming=True),
    "routing/findprovs": Command(find_providers, streaming=True),
    "routing/provide": Command(provide, streaming=True),
    "routing/get": Command(get_value, streaming=True),
    "routing/put": Command(put_value, streaming=True),
    "dht/query": Command(closest_peers, streaming=True),
    "ping": Command(ping, streaming=True),
    "bootstrap/list": Command(bootstrap_list, streaming=False),
    "bootstrap/add": Command(bootstrap_add, streaming=False),
    "bootstrap/rm": Command(bootstrap_rm, streaming=False),
    "provide/add": Command(provide_add, streaming=False),
    "provide/stat": Command(provide_stat, streaming=False),
    "provide/clear": Command(provide_clear, streaming=False),
    "provide/reprovide": Command(provide_reprovide, streaming=False),
}
"""Every RPC command by its Kubo-style path (``POST /api/v0/<path>``)."""
