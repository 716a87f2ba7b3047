"""``zikade devnet``: a small DHT of our own nodes on 127.0.0.1, in one process.

Why: the quickest way to see the node work without the internet. Node 0 is a
full daemon (RPC API, metrics, Delegated Routing V1) on a repo, so every other
``zikade`` command can be pointed at the devnet with ``--repo`` /
``ZIKADE_PATH``; the others are in-memory servers that joined through node 0.
It runs until Ctrl-C. ``--demo`` instead runs find-peer, provide and
find-providers across the devnet, prints what happened with timings, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import click
from multiformats import CID
from rich.console import Console

from zikade_py.dht.config import NodeConfig
from zikade_py.dht.node import Node
from zikade_py.dht.query_events import QueryEvent, QueryEventType
from zikade_py.http.daemon import Daemon, DaemonConfig, catch_signals
from zikade_py.http.repo import RepoConfig, init_repo, save_config

from .common import CommandError, resolve_repo, run_command, trace_option
from .registry import summary
from .rpc import ThinClient

T = TypeVar("T")

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@dataclass
class Devnet:
    """The running nodes; ``daemon.node`` is node 0."""

    daemon: Daemon
    nodes: list[Node]
    repo: Path

    @property
    def seed(self) -> str:
        """Node 0's first address with ``/p2p/``: what the others (and you) bootstrap from."""
        return str(self.daemon.swarm_addrs[0])


@contextlib.asynccontextmanager
async def start_devnet(n: int, repo: Path, api: str) -> AsyncIterator[Devnet]:
    """Start ``n`` nodes (node 0 a daemon on ``repo``), join them, stop them all on exit."""
    init_repo(repo, bootstrap=[])  # a loopback network: never the public peers
    daemon = Daemon(
        DaemonConfig(
            node=NodeConfig(
                mode="server", listen_addrs=[LOOPBACK], bootstrap=[], repo=repo, republish=False
            ),
            repo=repo,
            api=api,
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        await daemon.start()
        stack.push_async_callback(daemon.close)
        seed = str(daemon.swarm_addrs[0])
        cfg = RepoConfig(peer_id=str(daemon.node.peer_id), swarm=[LOOPBACK], bootstrap=[])
        save_config(repo, cfg)
        others = [
            Node(
                NodeConfig(
                    mode="server", listen_addrs=[LOOPBACK], bootstrap=[seed], republish=False
                )
            )
            for _ in range(n - 1)
        ]
        for node in others:
            await node.start()
            stack.push_async_callback(node.close)
        nodes = [daemon.node, *others]
        # two rounds: nodes that joined early learn of the later ones in the second
        for _ in range(2):
            await asyncio.gather(*(node.bootstrap(timeout=10.0) for node in others))
        yield Devnet(daemon=daemon, nodes=nodes, repo=repo)


def _short(peer: object) -> str:
    text = str(peer)
    return f"{text[:10]}…{text[-6:]}"


async def _timed(fn: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    start = time.perf_counter()
    result = await fn()
    return result, time.perf_counter() - start


class _Asked:
    """Counts the peers a query asked (an ``on_event`` callback)."""

    def __init__(self) -> None:
        self.peers: set[str] = set()

    def __call__(self, ev: QueryEvent) -> None:
        if ev.type == QueryEventType.SENDING_QUERY and ev.peer is not None:
            self.peers.add(str(ev.peer))


async def run_demo(net: Devnet, console: Console) -> None:
    """find-peer, provide and find-providers across the devnet, narrated with timings."""
    nodes = net.nodes
    seeker, target = nodes[1], nodes[-1]
    provider = nodes[len(nodes) // 2]

    asked = _Asked()
    info, took = await _timed(
        lambda: seeker.find_peer(target.peer_id, on_event=asked, local_first=False)
    )
    console.print(
        f"[bold]find-peer[/]      node 1 looked up node {len(nodes) - 1} "
        f"({_short(target.peer_id)}): {len(info.addrs)} address(es) "
        f"in {took * 1000:.1f} ms, asked {len(asked.peers)} peer(s)",
        soft_wrap=True,
    )
    for addr in info.addrs:
        console.print(f"                 {addr}", soft_wrap=True)

    data = f"zikade devnet demo {time.time_ns()}".encode()
    cid = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest()))
    asked = _Asked()
    result, took = await _timed(lambda: provider.provide(cid, on_event=asked))
    console.print(
        f"[bold]provide[/]        node {len(nodes) // 2} announced {cid}: "
        f"stored at {len(result.contacted)} peer(s) in {took * 1000:.1f} ms, "
        f"asked {len(asked.peers)} peer(s), {len(result.errors)} error(s)",
        soft_wrap=True,
    )
    if not result.contacted:
        raise CommandError("provide reached no peer")

    # a node that joins after the provide holds no record: its find-providers must ask
    # the network (a devnet node that was there took the record from the provide itself)
    newcomer = Node(
        NodeConfig(mode="server", listen_addrs=[LOOPBACK], bootstrap=[net.seed], republish=False)
    )
    await newcomer.start()
    try:
        await newcomer.bootstrap(timeout=10.0)
        asked = _Asked()

        async def collect() -> list[str]:
            found = newcomer.find_providers(cid, count=1, on_event=asked)
            return [str(p.peer_id) async for p in found]

        providers, took = await _timed(collect)
    finally:
        await newcomer.close()
    console.print(
        f"[bold]find-providers[/] a node that joined after the provide looked for {cid}: "
        f"{len(providers)} provider(s) in {took * 1000:.1f} ms, asked {len(asked.peers)} peer(s)",
        soft_wrap=True,
    )
    for peer in providers:
        console.print(f"                 {peer}", soft_wrap=True)
    if str(provider.peer_id) not in providers:
        raise CommandError("find-providers did not find the provider")
    if not asked.peers:
        raise CommandError("find-providers asked no peer: the demo showed no network lookup")
    console.print("[green]demo ok[/]: every lookup found what it looked for")


def _print_banner(net: Devnet, console: Console, took: float, temp: bool, demo: bool) -> None:
    console.print(
        f"devnet: {len(net.nodes)} nodes on 127.0.0.1, ready in {took:.2f}s", soft_wrap=True
    )
    for i, node in enumerate(net.nodes):
        addr = node.listen_addrs[0].with_peer_id(node.peer_id)
        api = f"  (RPC API {net.daemon.api_url})" if i == 0 else ""
        console.print(f"  node {i:<2} {addr}{api}", soft_wrap=True)
    if demo:  # the devnet stops after the demo: nothing to point other commands at
        console.print("(--demo stops the devnet afterwards; 'zikade devnet' keeps one running)")
        return
    console.print("Point other commands at it:")
    console.print(f"  export ZIKADE_PATH={net.repo}", soft_wrap=True)
    console.print(f"  zikade find-peer {net.nodes[-1].peer_id}", soft_wrap=True)
    console.print(f"  zikade closest-peers {net.nodes[1].peer_id}", soft_wrap=True)
    console.print("  zikade routing-table")
    console.print(f"or join it from elsewhere with --bootstrap {net.seed}", soft_wrap=True)
    if temp:
        console.print("(the repo is temporary and removed when the devnet stops)")


@click.command("devnet", short_help=summary("devnet"))
@click.option(
    "-n",
    "--nodes",
    "count",
    type=click.IntRange(3, 200),
    default=8,
    show_default=True,
    help="Number of nodes.",
)
@click.option(
    "--repo",
    default=None,
    help="Repo of node 0, where the API file goes; its config is rewritten for the devnet"
    " (default: a temporary directory, removed at exit; ZIKADE_PATH is not used).",
)
@click.option("--api", default="127.0.0.1:0", show_default=True, help="RPC API address of node 0.")
@click.option("--demo", is_flag=True, help="Run find-peer, provide and find-providers, then exit.")
@trace_option
def devnet_command(count: int, repo: str | None, api: str, demo: bool, trace: str | None) -> None:
    """Start a local devnet of N nodes on 127.0.0.1 and keep it running until Ctrl-C."""
    console = Console(highlight=False)
    temp = repo is None
    repo_dir = Path(tempfile.mkdtemp(prefix="zikade-devnet-")) if temp else resolve_repo(str(repo))

    async def go() -> None:
        running = ThinClient.for_repo(repo_dir)
        if running is not None and running.reachable():
            raise CommandError(f"a daemon already runs on {repo_dir} ({running.base_url})")
        started = time.perf_counter()
        with catch_signals() as stop:
            async with start_devnet(count, repo_dir, api) as net:
                _print_banner(net, console, time.perf_counter() - started, temp, demo)
                if demo:
                    await run_demo(net, console)
                    return
                console.print("devnet is ready (Ctrl-C to stop)")
                await stop
                console.print("stopping the devnet...")

    try:
        run_command("devnet", go, trace=trace, root_span=demo)
    finally:
        if temp:
            shutil.rmtree(repo_dir, ignore_errors=True)


COMMANDS = (devnet_command,)
"""What ``cli.main`` registers."""
