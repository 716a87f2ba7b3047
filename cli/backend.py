"""Where a command runs: on the repo's daemon when one answers, else on an in-process node.

Both backends speak the same commands (:data:`zikade_py.http.ops.COMMANDS`)
and yield the same JSON objects, so rendering never cares which one ran.
The in-process node is ephemeral (a client that joins through the repo's
bootstrap list plus ``--bootstrap``, runs one command and leaves); it uses the
repo's identity and datastore when the repo was initialised.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zikade_py.http.args import format_duration, parse_multiaddr
from zikade_py.http.client import JSONObj, RpcClient
from zikade_py.http.repo import is_initialized, load_config

from .common import CommandError

if TYPE_CHECKING:
    from zikade_py.dht.node import Node

NEEDS_DAEMON = frozenset({"swarm/peers"})
"""Commands that only make sense on a long-running node (Kubo: "run 'ipfs daemon' first")."""

NO_DAEMON_MESSAGE = "this command needs a running daemon (start one with 'zikade daemon')"


class Backend(Protocol):
    """Runs commands and yields their JSON objects."""

    def stream(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncIterator[JSONObj]:
        """Every object the command yields (one for non-streaming commands)."""
        ...


@dataclass
class RemoteBackend:
    """The daemon, over its RPC API."""

    client: RpcClient

    def stream(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncIterator[JSONObj]:
        """The command's objects, streamed or single, over HTTP."""
        return self.client.stream(command, args, options, body)


@dataclass
class LocalBackend:
    """An ephemeral in-process node running the commands directly."""

    node: Node
    repo: Path | None

    def stream(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncIterator[JSONObj]:
        """Run the command's handler on the in-process node."""
        from zikade_py.http.ops import COMMANDS, Context, Request

        req = Request(args=tuple(args), options=dict(options or {}), body=body)
        return COMMANDS[command].handler(Context(self.node, self.repo), req)


async def _daemon_client(repo: Path, stack: contextlib.AsyncExitStack) -> RpcClient | None:
    client = RpcClient.for_repo(repo)
    if client is None:
        return None
    await stack.enter_async_context(client)
    return client if await client.alive() else None


def bootstrap_peers(repo: Path, extra: Sequence[str]) -> list[str]:
    """The repo's bootstrap list plus ``--bootstrap`` entries (validated, deduplicated)."""
    for addr in extra:
        parse_multiaddr(addr, need_peer=True)
    listed = load_config(repo).bootstrap if is_initialized(repo) else []
    return list(dict.fromkeys([*extra, *listed]))


@contextlib.asynccontextmanager
async def open_backend(
    repo: Path,
    *,
    command: str,
    bootstrap: Sequence[str] = (),
    timeout: float,
    join: bool = True,
) -> AsyncIterator[Backend]:
    """The daemon of ``repo`` if it answers, else an ephemeral node that joined the network.

    ``join=False`` skips bootstrapping (commands that read only local state).
    Raises :class:`CommandError` when ``command`` needs a daemon and none runs,
    or when no bootstrap peer can be reached.
    """
    async with contextlib.AsyncExitStack() as stack:
        client = await _daemon_client(repo, stack)
        if client is not None:
            yield RemoteBackend(client)
            return
        if command in NEEDS_DAEMON:
            raise CommandError(NO_DAEMON_MESSAGE)
        # loaded only here: talking to a daemon never needs the DHT stack
        from zikade_py.dht.config import NodeConfig
        from zikade_py.dht.node import Node

        peers = bootstrap_peers(repo, bootstrap) if join else []
        initialized = is_initialized(repo)
        config = NodeConfig(
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            bootstrap=list(peers),
            mode="client",
            repo=repo if initialized else None,
            query_timeout=timeout,
            bootstrap_timeout=max(1.0, min(timeout / 2, 30.0)),
            republish=False,
        )
        node = Node(config)
        await node.start()
        stack.push_async_callback(node.close)
        if join:
            await _join(node, peers)
        yield LocalBackend(node, repo if initialized else None)


async def _join(node: Node, peers: Sequence[str]) -> None:
    """Bootstrap; fail with one line if no seed answers and the table is empty."""
    if not peers:
        if not node.routing_table():
            raise CommandError(
                "no bootstrap peers: start 'zikade daemon', pass --bootstrap MULTIADDR, "
                "or add one with 'zikade bootstrap add'"
            )
        return
    result = await node.bootstrap(peers)
    if not result.connected and not node.routing_table():
        reasons = "; ".join(f"{addr}: {err}" for addr, err in result.failed[:3])
        raise CommandError(f"could not reach any bootstrap peer ({reasons})")


def timeout_options(timeout: float, **options: str) -> dict[str, str]:
    """The RPC options of a command bounded by ``timeout`` seconds (Kubo's ``timeout``)."""
    return {"timeout": format_duration(timeout), **options}
