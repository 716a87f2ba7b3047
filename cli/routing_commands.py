"""The routing commands: find-peer, find-providers, provide, put, closest-peers, and
``routing get|put`` (``zikade get`` itself is in :mod:`.get_command`: files or records).

Kubo's ``ipfs routing …`` (ECOSYSTEM.md A1) is the model: the daemon (or an
in-process node) streams ``routing.QueryEvent`` objects; without ``--json``
only the results are printed, one per line (find-peer: the peer's multiaddrs;
find-providers: provider peer ids; closest-peers: peer ids; get: the raw
value; put: the peers that stored it; provide: nothing); with ``--json`` every
event is printed as NDJSON; ``-v`` narrates the query on stderr.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import BinaryIO, TypeVar

import click

from zikade_py.http.errors import ArgumentError

from .backend import run_local, timeout_options, via_daemon
from .common import QueryOptions, fail, network_options, require_repo, verbose_option
from .output import JSONObj, ResultPrinter
from .registry import summary

T = TypeVar("T")

EPHEMERAL_NOTE = (
    "note: providing from an ephemeral node: the provider records name this process's "
    "address, which stops answering when the command exits"
)


def _args() -> ModuleType:
    """:mod:`zikade_py.http.args` (multiformats, p2p), loaded only when input is checked here."""
    return importlib.import_module("zikade_py.http.args")


def run_query(
    name: str,
    rpc_path: str,
    args: Sequence[str],
    opts: QueryOptions,
    *,
    check: Callable[[], bytes],
    nothing: str,
    options: dict[str, str] | None = None,
    body: bytes | None = None,
    local: Callable[[], None] | None = None,
) -> None:
    """Run a streaming routing command on the daemon (or an in-process node) and print it.

    ``check`` parses the arguments and returns the key looked up (for ``-v``);
    the daemon checks them itself, so it runs here only with ``-v`` or before an
    in-process node starts. ``nothing`` is the error when no result came (exit 1).
    ``local`` runs before falling back to an in-process node (it may refuse).
    """
    repo = require_repo(opts.repo)
    rpc_options = timeout_options(opts.timeout, **(options or {}))
    printer = ResultPrinter(rpc_path, opts.as_json)
    view: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    handlers: list[Callable[[JSONObj], None]] = [printer.event]
    if opts.verbose:
        from .render import QueryView

        query_view = QueryView(target=_validated(check), command=rpc_path)
        handlers.insert(0, query_view.event)
        view = query_view

    def on_event(ev: JSONObj) -> None:
        for handle in handlers:
            handle(ev)

    with view:
        if not via_daemon(
            repo, name, rpc_path, args, rpc_options, on_event,
            body=body, timeout=opts.timeout + 5.0, trace=opts.trace,
        ):  # fmt: skip
            _validated(check)  # bad input first: it is the user's first problem
            if local is not None:
                local()
            run_local(name, rpc_path, args, rpc_options, on_event, opts, repo=repo, body=body)
    if printer.results == 0:
        fail(nothing)


@click.command("find-peer", short_help=summary("find-peer"))
@click.argument("peer")
@verbose_option
@network_options
def find_peer_command(peer: str, opts: QueryOptions) -> None:
    """Find the addresses of PEER (a peer ID); prints one multiaddr per line.

    Exits with status 1 when the peer is not found.
    """
    run_query(
        "find-peer", "routing/findpeer", [peer], opts,
        check=lambda: bytes(_args().parse_peer_id(peer).multihash),
        nothing=f"peer {peer} not found",
    )  # fmt: skip


@click.command("find-providers", short_help=summary("find-providers"))
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
    """Find peers that provide CID; prints one provider peer ID per line.

    Exits with status 1 when no provider is found (Kubo exits 0 with no output;
    a script can then tell "none" from "some" by the status alone).
    """
    run_query(
        "find-providers", "routing/findprovs", [cid], opts,
        check=lambda: bytes(_args().parse_cid(cid).digest),
        nothing=f"no providers found for {cid}",
        options={"num-providers": str(num_providers)},
    )  # fmt: skip


def provide_cids(cids: tuple[str, ...], ephemeral: bool, opts: QueryOptions) -> None:
    """Announce each CID now through ``routing/provide`` (``zikade provide [once] CID...``)."""

    def refuse_without_daemon() -> None:
        if not ephemeral:
            fail(
                "provide needs a running daemon: an ephemeral node would announce an address "
                "that dies with it (start 'zikade daemon', or pass --ephemeral to do it anyway)"
            )
        click.echo(EPHEMERAL_NOTE, err=True)

    run_query(
        "provide", "routing/provide", list(cids), opts,
        check=lambda: _first_digest(cids),
        nothing="no peer took the provider record",
        local=refuse_without_daemon,
    )  # fmt: skip


def get_record(key: str, opts: QueryOptions) -> None:
    """Get the value record of KEY and write the raw value (``zikade get /ns/…`` and
    ``zikade routing get``)."""
    run_query(
        "get", "routing/get", [key], opts,
        check=lambda: bytes(_args().parse_record_key(key)),
        nothing=f"no value found for {key}",
    )  # fmt: skip


@click.group("routing", short_help=summary("routing"))
def routing_group() -> None:
    """Value records in the DHT (Kubo's 'ipfs routing get|put'); 'zikade get' also takes
    these keys, and fetches files for a CID."""


@routing_group.command("get")
@click.argument("key")
@verbose_option
@network_options
def routing_get_command(key: str, opts: QueryOptions) -> None:
    """Get the value record of KEY (/ipns/<peer-id>, /pk/<peer-id>); writes the raw value."""
    get_record(key, opts)


@click.command("put", short_help=summary("put"))
@click.argument("key")
@click.argument("value_file", metavar="FILE|-", type=click.File("rb"))
@verbose_option
@network_options
def put_command(key: str, value_file: BinaryIO, opts: QueryOptions) -> None:
    """Store the record in FILE (or stdin) under KEY; prints the peers that stored it.

    KEY is /pk/<peer-id> (FILE: that peer's public key protobuf, e.g. the base64-decoded
    "PublicKey" of 'zikade id --json') or /ipns/<peer-id> (FILE: a signed IPNS record).
    """
    put_record(key, value_file, opts)


@routing_group.command("put")
@click.argument("key")
@click.argument("value_file", metavar="FILE|-", type=click.File("rb"))
@verbose_option
@network_options
def routing_put_command(key: str, value_file: BinaryIO, opts: QueryOptions) -> None:
    """Store the record in FILE (or stdin) under KEY (same as 'zikade put')."""
    put_record(key, value_file, opts)


def put_record(key: str, value_file: BinaryIO, opts: QueryOptions) -> None:
    """Store the record read from ``value_file`` under ``key`` and print who stored it."""
    value = value_file.read()
    if not isinstance(value, bytes) or not value:
        raise click.UsageError("the value is empty")
    run_query(
        "put", "routing/put", [key], opts,
        check=lambda: bytes(_args().parse_record_key(key)),
        nothing="no peer stored the record",
        body=value,
    )  # fmt: skip


@click.command("closest-peers", short_help=summary("closest-peers"))
@click.argument("key")
@verbose_option
@network_options
def closest_peers_command(key: str, opts: QueryOptions) -> None:
    """Find the peers closest to KEY (a peer ID or a CID); prints one peer ID per line.

    Fails (exit 1) when the routing table is empty or no peer answered.
    """
    run_query(
        "closest-peers", "dht/query", [key], opts,
        check=lambda: bytes(_args().parse_lookup_key(key)),
        nothing=f"no peers found close to {key}",
    )  # fmt: skip


def _first_digest(cids: Sequence[str]) -> bytes:
    """Every CID parsed (bad input fails here); the first one's digest is the ``-v`` target."""
    digests = [bytes(_args().parse_cid(c).digest) for c in cids]
    return digests[0]


def _validated(parse: Callable[[], T]) -> T:
    """Parse arguments before anything starts, so bad input fails fast with one line."""
    try:
        return parse()
    except ArgumentError as exc:
        fail(str(exc))


COMMANDS = (
    find_peer_command,
    find_providers_command,
    put_command,
    routing_group,
    closest_peers_command,
)
"""What ``cli.main`` registers."""
