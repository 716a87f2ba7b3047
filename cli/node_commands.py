"""Commands that show a node's state: ``routing-table``, ``swarm peers`` and
``swarm resources``.

``swarm peers`` and ``swarm resources`` need the daemon (an ephemeral node's
connections say nothing); ``routing-table`` shows the daemon's table, or without
one the table an in-process node built while joining.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from .backend import run_anywhere
from .common import QueryOptions, network_options, print_json, require_repo
from .output import JSONObj
from .registry import summary

if TYPE_CHECKING:
    from rich.console import Console


def _fetch(name: str, command: str, opts: QueryOptions) -> JSONObj:
    """The one object ``command`` answers, from the daemon or an in-process node."""
    docs: list[JSONObj] = []
    run_anywhere(name, command, [], {}, docs.append, opts, repo=require_repo(opts.repo))
    return docs[0] if docs else {}


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
    from rich.table import Table

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


@click.command("routing-table", short_help=summary("routing-table"))
@network_options
def routing_table_command(opts: QueryOptions) -> None:
    """Show the routing table, bucket by bucket."""
    doc = _fetch("routing-table", "routing-table", opts)
    if opts.as_json:
        print_json(doc)
    else:
        from rich.console import Console

        render_routing_table(doc, Console(highlight=False, width=200, soft_wrap=True))


@click.group("swarm", short_help=summary("swarm"))
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


@swarm_group.command("resources")
@network_options
def swarm_resources_command(opts: QueryOptions) -> None:
    """Show resource usage against the limits: the resource manager's scopes (system,
    protocols, the busiest peers, IP groups and connections) and the record stores
    (needs the daemon; Kubo's ``ipfs swarm resources``)."""
    doc = _fetch("swarm-resources", "swarm/resources", opts)
    if opts.as_json:
        print_json(doc)
        return
    header = ("Scope", "Limit Name", "Limit Value", "Limit Usage Amount", "Limit Usage Percent")
    rows = [header]
    for row in doc.get("Scopes") or []:
        used, limit = int(row.get("Used", 0)), int(row.get("Limit", 0))
        percent = f"{100 * used / limit:.1f}%" if limit else "-"
        rows.append((str(row.get("Scope", "")), str(row.get("Name", "")), str(limit),
                     str(used), percent))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


COMMANDS = (routing_table_command, swarm_group)
"""What ``cli.main`` registers."""
