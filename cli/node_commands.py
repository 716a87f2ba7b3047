"""Commands that show a node's state: ``routing-table`` and ``swarm peers``.

``swarm peers`` needs the daemon (an ephemeral node's connections say nothing);
``routing-table`` shows the daemon's table, or without one the table an
in-process node built while joining.
"""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from zikade_py.http.client import JSONObj

from .backend import open_backend
from .common import QueryOptions, network_options, print_json, resolve_repo, run_command


def _fetch(name: str, command: str, opts: QueryOptions) -> JSONObj:
    """The one object ``command`` answers, fetched under the run loop (errors: one line)."""

    async def go() -> JSONObj:
        async with open_backend(
            resolve_repo(opts.repo), command=command, bootstrap=opts.bootstrap, timeout=opts.timeout
        ) as backend:
            async for doc in backend.stream(command):
                return doc
        return {}

    return run_command(name, go, timeout=opts.timeout, trace=opts.trace)


def _ago(ts: Any) -> str:
    try:
        secs = max(0.0, time.time() - float(ts))
    except (TypeError, ValueError):
        return "?"
    if secs < 60:
        return f"{secs:.0f}s ago"
    if secs < 3600:
        return f"{secs / 60:.0f}m ago"
    return f"{secs / 3600:.1f}h ago"


def render_routing_table(doc: JSONObj, console: Console) -> None:
    """The buckets as one rich table (bucket = common prefix length with our id)."""
    buckets = doc.get("Buckets") or []
    total = sum(len(b.get("Peers") or []) for b in buckets)
    table = Table(
        title=f"routing table of {doc.get('ID', '?')}: {total} peers in {len(buckets)} buckets",
        title_justify="left",
    )
    table.add_column("Bucket", justify="right")
    table.add_column("Peer ID", no_wrap=True)
    table.add_column("Addresses")
    table.add_column("Last seen", justify="right")
    for bucket in buckets:
        peers = bucket.get("Peers") or []
        for i, peer in enumerate(peers):
            table.add_row(
                str(bucket.get("Cpl", "?")) if i == 0 else "",
                str(peer.get("ID", "")),
                "\n".join(str(a) for a in peer.get("Addrs") or []) or "-",
                _ago(peer.get("LastSeen")),
                end_section=i == len(peers) - 1,
            )
    console.print(table)


@click.command("routing-table")
@network_options
def routing_table_command(opts: QueryOptions) -> None:
    """Show the routing table, bucket by bucket."""
    doc = _fetch("routing-table", "routing-table", opts)
    if opts.as_json:
        print_json(doc)
    else:
        render_routing_table(doc, Console(highlight=False, width=200, soft_wrap=True))


@click.group("swarm")
def swarm_group() -> None:
    """Inspect the daemon's connections."""


@swarm_group.command("peers")
@network_options
def swarm_peers_command(opts: QueryOptions) -> None:
    """List open connections as <multiaddr>/p2p/<peer-id>, one per line (needs the daemon)."""
    doc = _fetch("swarm-peers", "swarm/peers", opts)
    if opts.as_json:
        print_json(doc)
        return
    for peer in doc.get("Peers") or []:
        addr, peer_id = str(peer.get("Addr", "")), str(peer.get("Peer", ""))
        click.echo(f"{addr}/p2p/{peer_id}" if addr else peer_id)


COMMANDS = (routing_table_command, swarm_group)
"""What ``cli.main`` registers."""
