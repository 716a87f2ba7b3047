"""The routing commands: find-peer, find-providers, provide, get, put, closest-peers.

Kubo's ``ipfs routing …`` (ECOSYSTEM.md A1) is the model: the daemon (or an
in-process node) streams ``routing.QueryEvent`` objects; without ``--json``
only the results are printed, one per line (find-peer: the peer's multiaddrs;
find-providers: provider peer ids; closest-peers: peer ids; get: the raw
value; put: the peers that stored it; provide: nothing); with ``--json`` every
event is printed as NDJSON; ``-v`` narrates the query on stderr.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar

import click

from zikade_py.http.args import (
    parse_cid,
    parse_lookup_key,
    parse_peer_id,
    parse_record_key,
)
from zikade_py.http.errors import ArgumentError

from .backend import open_backend, timeout_options
from .common import (
    QueryOptions,
    fail,
    network_options,
    print_json,
    resolve_repo,
    run_command,
    verbose_option,
)
from .render import QueryEventType, QueryView, event_lines

T = TypeVar("T")

GRACE = 5.0
"""Seconds past ``--timeout`` the command waits for the node to hand back partial results."""


def run_query(
    name: str,
    rpc_path: str,
    args: Sequence[str],
    opts: QueryOptions,
    *,
    target: bytes | None = None,
    options: dict[str, str] | None = None,
    body: bytes | None = None,
) -> None:
    """Run a streaming routing command and print its output (see the module docstring).

    ``name`` is the command's name (its root span), ``rpc_path`` the RPC command it runs.
    """
    repo_dir = resolve_repo(opts.repo)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.timeout
        async with open_backend(
            repo_dir, command=rpc_path, bootstrap=opts.bootstrap, timeout=opts.timeout
        ) as backend:
            remaining = max(0.5, deadline - loop.time())
            rpc_options = timeout_options(remaining, **(options or {}))
            with QueryView(target=target, enabled=opts.verbose, command=rpc_path) as view:
                async for ev in backend.stream(rpc_path, args, rpc_options, body):
                    view.event(ev)
                    _print_event(rpc_path, ev, opts.as_json)

    run_command(name, go, timeout=opts.timeout + GRACE, trace=opts.trace)


def _print_event(command: str, ev: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(ev)
        return
    if command == "routing/get" and ev.get("Type") == QueryEventType.VALUE:
        sys.stdout.buffer.write(base64.b64decode(str(ev.get("Extra") or "")))
        sys.stdout.buffer.flush()
        return
    for line in event_lines(command, ev):
        click.echo(line)


@click.command("find-peer")
@click.argument("peer")
@verbose_option
@network_options
def find_peer_command(peer: str, opts: QueryOptions) -> None:
    """Find the addresses of PEER (a peer ID); prints one multiaddr per line."""
    target = _validated(lambda: parse_peer_id(peer).multihash)
    run_query("find-peer", "routing/findpeer", [peer], opts, target=target)


@click.command("find-providers")
@click.argument("cid")
@click.option(
    "-n",
    "--num-providers",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="The number of providers to find.",
)
@verbose_option
@network_options
def find_providers_command(cid: str, num_providers: int, opts: QueryOptions) -> None:
    """Find peers that provide CID; prints one provider peer ID per line."""
    target = _validated(lambda: bytes(parse_cid(cid).digest))
    options = {"num-providers": str(num_providers)}
    run_query("find-providers", "routing/findprovs", [cid], opts, target=target, options=options)


@click.command("provide")
@click.argument("cids", nargs=-1, required=True, metavar="CID...")
@verbose_option
@network_options
def provide_command(cids: tuple[str, ...], opts: QueryOptions) -> None:
    """Announce to the network that this node provides each CID (prints nothing on success)."""
    digests = _validated(lambda: [bytes(parse_cid(c).digest) for c in cids])
    run_query("provide", "routing/provide", list(cids), opts, target=digests[0])


@click.command("get")
@click.argument("key")
@verbose_option
@network_options
def get_command(key: str, opts: QueryOptions) -> None:
    """Get the value record of KEY (/ipns/<peer-id>, /pk/<peer-id>); writes the raw value."""
    target = _validated(lambda: parse_record_key(key))
    run_query("get", "routing/get", [key], opts, target=target)


@click.command("put")
@click.argument("key")
@click.argument("value_file", metavar="FILE|-", type=click.File("rb"))
@verbose_option
@network_options
def put_command(key: str, value_file: BinaryIO, opts: QueryOptions) -> None:
    """Store the record in FILE (or stdin) under KEY; prints the peers that stored it.

    KEY is /pk/<peer-id> (FILE: that peer's public key protobuf, e.g. the base64-decoded
    "PublicKey" of 'zikade id --json') or /ipns/<peer-id> (FILE: a signed IPNS record).
    """
    target = _validated(lambda: parse_record_key(key))
    value = value_file.read()
    if not isinstance(value, bytes) or not value:
        raise click.UsageError("the value is empty")
    run_query("put", "routing/put", [key], opts, target=target, body=value)


@click.command("closest-peers")
@click.argument("key")
@verbose_option
@network_options
def closest_peers_command(key: str, opts: QueryOptions) -> None:
    """Find the peers closest to KEY (a peer ID or a CID); prints one peer ID per line."""
    target = _validated(lambda: parse_lookup_key(key))
    run_query("closest-peers", "dht/query", [key], opts, target=target)


def _validated(parse: Callable[[], T]) -> T:
    """Parse arguments before anything starts, so bad input fails fast with one line."""
    try:
        return parse()
    except ArgumentError as exc:
        fail(str(exc))


COMMANDS = (
    find_peer_command,
    find_providers_command,
    provide_command,
    get_command,
    put_command,
    closest_peers_command,
)
"""What ``cli.main`` registers."""
