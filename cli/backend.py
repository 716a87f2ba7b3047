"""Where a command runs: on the repo's daemon when one answers, else on an in-process node.

The daemon is reached through the thin synchronous client (:mod:`.rpc`); only
when no daemon answers are asyncio and the node imported, here, to run the very
same command handlers (:data:`zikade_py.http.ops.COMMANDS`) on an ephemeral
node. Both yield the same JSON objects, so printing never cares which one ran.
The in-process node is a client that joins through the repo's bootstrap list
plus ``--bootstrap``, runs one command and leaves; it uses the repo's identity
and datastore.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zikade_py.http.durations import format_duration
from zikade_py.http.errors import ArgumentError

from .common import (
    CommandError,
    QueryOptions,
    command_span,
    fail,
    one_line_errors,
    run_command,
)
from .rpc import JSONObj, NotConnectedError, ThinClient

if TYPE_CHECKING:
    from zikade_py.dht.node import Node

NEEDS_DAEMON = frozenset({"swarm/peers", "swarm/resources"})
"""Commands that only make sense on a long-running node (Kubo: "run 'ipfs daemon' first")."""

NO_DAEMON_MESSAGE = "this command needs a running daemon (start one with 'zikade daemon')"

GRACE = 5.0
"""Seconds past ``--timeout`` a command waits for the node to hand back partial results."""

OnEvent = Callable[[JSONObj], None]


def daemon_client(repo: Path) -> ThinClient | None:
    """The client of the daemon named in ``<repo>/api`` if it accepts connections."""
    client = ThinClient.for_repo(repo)
    if client is None or not client.reachable():
        return None
    return client


def via_daemon(
    repo: Path,
    name: str,
    command: str,
    args: Sequence[str],
    options: Mapping[str, str],
    on_event: OnEvent,
    *,
    body: bytes | None = None,
    timeout: float,
    trace: str | None = None,
) -> bool:
    """Run ``command`` on the repo's daemon, handing each object to ``on_event``.

    Returns False, having done nothing, when no daemon answers; failures exit
    with one ``Error:`` line. ``timeout`` bounds each wait for the daemon.
    """
    client = daemon_client(repo)
    if client is None:
        return False
    with one_line_errors(), command_span(name, trace) as headers:
        client.headers.update(headers)
        try:
            for doc in client.stream(command, args, options, body, timeout=timeout):
                on_event(doc)
        except NotConnectedError:  # the daemon went away since reachable(): nothing was sent
            return False
        except TimeoutError:
            raise CommandError(f"timed out after {timeout:g}s") from None
    return True


def run_local(
    name: str,
    command: str,
    args: Sequence[str],
    options: Mapping[str, str],
    on_event: OnEvent,
    opts: QueryOptions,
    *,
    repo: Path,
    body: bytes | None = None,
    join: bool = True,
    check: Callable[[], object] | None = None,
) -> None:
    """Run ``command`` on an ephemeral in-process node (no daemon answers).

    ``check`` validates the arguments before the node starts (bad input fails fast).
    """
    if command in NEEDS_DAEMON:
        fail(NO_DAEMON_MESSAGE)
    if check is not None:
        with one_line_errors():
            check()

    async def go() -> None:
        async with open_local(
            repo, bootstrap=opts.bootstrap, timeout=opts.timeout, join=join, verbose=opts.verbose
        ) as node:
            from zikade_py.http.ops import COMMANDS, Context, Request

            req = Request(args=tuple(args), options=dict(options), body=body)
            async for doc in COMMANDS[command].handler(Context(node, repo), req):
                on_event(doc)

    run_command(name, go, timeout=opts.timeout + GRACE, trace=opts.trace)


def run_anywhere(
    name: str,
    command: str,
    args: Sequence[str],
    options: Mapping[str, str],
    on_event: OnEvent,
    opts: QueryOptions,
    *,
    repo: Path,
    body: bytes | None = None,
    join: bool = True,
    check: Callable[[], object] | None = None,
) -> bool:
    """On the daemon if one answers, else on an in-process node; True if the daemon ran it."""
    if via_daemon(
        repo, name, command, args, options, on_event,
        body=body, timeout=opts.timeout + GRACE, trace=opts.trace,
    ):  # fmt: skip
        return True
    run_local(
        name, command, args, options, on_event, opts, repo=repo, body=body, join=join, check=check
    )
    return False


def bootstrap_peers(repo: Path, extra: Sequence[str]) -> list[str]:
    """The repo's bootstrap list plus ``--bootstrap`` entries (validated, deduplicated)."""
    from zikade_py.http.repo import load_config, validate_bootstrap_addr

    for addr in extra:
        try:
            validate_bootstrap_addr(addr)
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
    return list(dict.fromkeys([*extra, *load_config(repo).bootstrap]))


@contextlib.asynccontextmanager
async def open_local(
    repo: Path,
    *,
    bootstrap: Sequence[str] = (),
    timeout: float,
    join: bool = True,
    verbose: bool = False,
    content: bool = False,
) -> AsyncIterator[Node]:
    """An ephemeral client node on ``repo``'s identity that joined the network.

    ``join=False`` skips bootstrapping (commands that read only local state).
    ``content=True`` makes it a :class:`~zikade_py.files.ContentNode` (the repo's
    blockstore and Bitswap: add, cat, block).
    Raises :class:`CommandError` when no bootstrap peer can be reached. ``verbose``
    narrates the join on stderr (names resolved, peers dialed and reached).
    """
    from zikade_py.dht.config import NodeConfig
    from zikade_py.dht.node import Node
    from zikade_py.http.repo import load_config
    from zikade_py.p2p.host import HostConfig

    peers = bootstrap_peers(repo, bootstrap) if join else []
    repo_cfg = load_config(repo)
    config = NodeConfig(
        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        bootstrap=list(peers),
        host=HostConfig(dns_resolvers=repo_cfg.dns_resolvers),
        mode="client",
        repo=repo,
        query_timeout=timeout,
        bootstrap_timeout=max(1.0, min(timeout / 2, 30.0)),
        republish=False,
    )
    if content:
        from zikade_py.files import ContentNode

        try:  # the repo's Datastore.StorageMax / StorageGCWatermark hold here too
            storage = repo_cfg.storage_limits()
        except ValueError as exc:
            raise CommandError(f"config Datastore: {exc}") from None
        node: Node = ContentNode(config, storage=storage)
    else:
        node = Node(config)
    await node.start()
    try:
        if join:
            await _join(node, peers, verbose)
        yield node
    finally:
        await node.close()


async def _join(node: Node, peers: Sequence[str], verbose: bool = False) -> None:
    """Bootstrap; fail with one line if no seed answers and the table is empty."""
    if not peers:
        if not node.routing_table():
            raise CommandError(
                "no bootstrap peers: start 'zikade daemon', pass --bootstrap MULTIADDR, "
                "add one with 'zikade bootstrap add', or 'zikade bootstrap reset' for the "
                "public peers"
            )
        return
    say = _narrator(verbose)
    names = sorted({p.split("/")[2] for p in peers if p.startswith(("/dns", "/dnsaddr/"))})
    for name in names:
        say(f"resolving {name}")
    say(f"dialing {len(peers)} bootstrap {'entry' if len(peers) == 1 else 'entries'} as a client")
    result = await node.bootstrap(peers)
    for addr, err in result.failed:
        say(f"unreachable: {addr}: {err}")
    say(f"connected to {len(result.connected)} bootstrap peers: "
        + (" ".join(str(p) for p in result.connected) or "none"))  # fmt: skip
    say(f"routing table: {result.routing_table_size} peers")
    if not result.connected and not node.routing_table():
        reasons = "; ".join(f"{addr}: {err}" for addr, err in result.failed[:3])
        raise CommandError(f"could not reach any bootstrap peer ({reasons})")


def _narrator(verbose: bool) -> Callable[[str], None]:
    """Where ``-v`` tells what the in-process node does while it joins (stderr)."""

    def say(text: str) -> None:
        if verbose:
            import click

            click.echo(f"bootstrap: {text}", err=True)

    return say


def timeout_options(timeout: float, **options: str) -> dict[str, str]:
    """The RPC options of a command bounded by ``timeout`` seconds (Kubo's ``timeout``)."""
    return {"timeout": format_duration(timeout), **options}
