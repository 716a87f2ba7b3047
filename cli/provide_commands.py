"""``zikade provide``: announce CIDs, many at once, and watch or stop the reprovider.

Kubo 0.39's shapes (``ipfs provide once|stat|clear``), without breaking
``zikade provide CID...``:

* ``zikade provide [once] CID...`` — announce each CID now and stream who took
  it (the routing command, unchanged; ``once`` is the default subcommand);
* ``zikade provide [once] --from-file FILE`` (or ``-`` for stdin) — many CIDs,
  one per line: the daemon stores them and its reprovider announces them in
  bursts (the sweep groups them by keyspace region); sent in chunks of
  :data:`CHUNK_LINES` lines, prints nothing on success (``--json``: the
  counts, ``-v``: a line on stderr);
* ``zikade provide stat [--json]`` — keys, regions, cycle progress, last and
  next region, lookups and messages this cycle, failures, estimated network
  size (on the daemon; without one, what the repo holds);
* ``zikade provide clear`` — stop re-announcing everything;
* ``zikade provide reprovide`` — re-announce everything now.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any, BinaryIO

import click

from .backend import run_anywhere, run_local, timeout_options, via_daemon
from .common import (
    QueryOptions,
    fail,
    json_option,
    network_options,
    one_line_errors,
    print_json,
    repo_option,
    require_repo,
    timeout_option,
    verbose_option,
)
from .output import JSONObj
from .registry import summary
from .routing_commands import EPHEMERAL_NOTE, provide_cids

CHUNK_LINES = 20_000
"""CID lines per request (the RPC API takes bodies of up to 4 MiB)."""

SUBCOMMANDS = ("once", "stat", "clear", "reprovide")


class ProvideGroup(click.Group):
    """A group whose default subcommand is ``once``: ``zikade provide CID...`` still works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Anything that is not a subcommand goes to ``once`` (``--help`` too: the help of
        ``zikade provide`` is that of ``provide CID...``, which lists the subcommands)."""
        if args and args[0] not in self.commands:
            args = ["once", *args]
        return super().parse_args(ctx, args)


@click.group("provide", cls=ProvideGroup, short_help=summary("provide"))
def provide_command() -> None:
    """Announce that the daemon provides CIDs; watch and control its reprovider.

    'zikade provide CID...' is 'zikade provide once CID...'.
    """


@provide_command.command(
    "once",
    epilog="Subcommands: 'zikade provide stat' (the reprovider: keys, regions, cycle, this "
    "cycle's lookups and messages; --json), 'zikade provide clear' (stop re-announcing "
    "everything), 'zikade provide reprovide' (re-announce everything now).",
)
@click.argument("cids", nargs=-1, metavar="CID...|-")
@click.option(
    "--from-file",
    "from_file",
    type=click.File("rb"),
    help="Read CIDs from FILE, one per line ('-': stdin); the reprovider announces them "
    "in bursts.",
)
@click.option(
    "--ephemeral",
    is_flag=True,
    help="Without a daemon, provide from a temporary in-process node anyway. Its records "
    "name an address that stops answering when the command exits, so others will find a "
    "provider they cannot reach.",
)
@verbose_option
@network_options
def once_command(
    cids: tuple[str, ...], from_file: BinaryIO | None, ephemeral: bool, opts: QueryOptions
) -> None:
    """Announce that the daemon provides each CID (prints nothing on success).

    CIDs given as arguments are announced at once, as before. With --from-file
    FILE or '-' (stdin) the CIDs, one per line, are handed to the daemon's
    reprovider, which stores them and announces them in bursts grouped by
    keyspace region, then keeps re-announcing them every 22 h.
    """
    stdin = "-" in cids
    rest = tuple(c for c in cids if c != "-")
    if from_file is None and not stdin:
        if not rest:
            fail("expected at least one CID (or --from-file FILE, or - for stdin)")
        provide_cids(rest, ephemeral, opts)
        return
    parts: list[bytes] = []
    if from_file is not None:
        parts.append(from_file.read())
    if stdin:
        parts.append(sys.stdin.buffer.read())
    if rest:
        parts.append("\n".join(rest).encode())
    _provide_many(b"\n".join(parts), ephemeral, opts)


def _provide_many(body: bytes, ephemeral: bool, opts: QueryOptions) -> None:
    from zikade_py.http.provide_ops import parse_cid_lines

    repo = require_repo(opts.repo)
    with one_line_errors():
        lines = parse_cid_lines(body)
    if not lines:
        fail("no CIDs to provide")
    totals = {"Keys": 0, "New": 0}

    def add(doc: JSONObj) -> None:
        totals["Keys"] += int(doc.get("Keys", 0))
        totals["New"] += int(doc.get("New", 0))

    options = timeout_options(opts.timeout)
    chunks = [lines[i : i + CHUNK_LINES] for i in range(0, len(lines), CHUNK_LINES)]
    for number, chunk in enumerate(chunks):
        chunk_body = "\n".join(chunk).encode()
        if via_daemon(
            repo, "provide", "provide/add", [], options, add,
            body=chunk_body, timeout=opts.timeout + 5.0, trace=opts.trace,
        ):  # fmt: skip
            continue
        if number == 0 and not ephemeral:
            fail(
                "provide needs a running daemon: an ephemeral node would announce an address "
                "that dies with it (start 'zikade daemon', or pass --ephemeral to do it anyway)"
            )
        if number == 0:
            click.echo(EPHEMERAL_NOTE, err=True)
        run_local("provide", "provide/add", [], options, add, opts, repo=repo, body=chunk_body)
    if opts.as_json:
        print_json(totals)
    if opts.verbose:
        click.echo(f"provide: {totals['Keys']} CIDs, {totals['New']} new", err=True)


@provide_command.command("stat")
@json_option
@timeout_option
@repo_option
def stat_command(as_json: bool, timeout: float, repo: str) -> None:
    """Show the reprovider: keys, regions, cycle, last and next region, this cycle's work.

    On the daemon when one runs; otherwise what the repo holds (keys and schedule).
    """
    doc = _run_one("provide stat", "provide/stat", repo, timeout)
    if as_json:
        print_json(doc)
        return
    for label, value in render_stat(doc):
        click.echo(f"{label + ':':<22} {value}")


@provide_command.command("clear")
@json_option
@timeout_option
@repo_option
def clear_command(as_json: bool, timeout: float, repo: str) -> None:
    """Stop re-announcing everything this node provides (the keys and schedule are dropped)."""
    doc = _run_one("provide clear", "provide/clear", repo, timeout)
    if as_json:
        print_json(doc)
    else:
        click.echo(f"cleared {doc.get('Cleared', 0)} keys")


@provide_command.command("reprovide")
@timeout_option
@repo_option
def reprovide_command(timeout: float, repo: str) -> None:
    """Re-announce everything the daemon provides now (a full cycle)."""
    path = require_repo(repo)
    if not via_daemon(path, "provide reprovide", "provide/reprovide", [], {}, lambda _: None,
                      timeout=timeout):  # fmt: skip
        fail("provide reprovide needs a running daemon (start one with 'zikade daemon')")


def _run_one(name: str, command: str, repo: str, timeout: float) -> JSONObj:
    docs: list[JSONObj] = []
    opts = QueryOptions(repo=repo, timeout=timeout, as_json=False, bootstrap=(), trace=None)
    run_anywhere(name, command, [], {}, docs.append, opts, repo=require_repo(repo), join=False)
    return docs[0] if docs else {}


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    moment = datetime.datetime.fromtimestamp(float(ts), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _hours(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds / 3600:g}h"


def render_stat(doc: JSONObj) -> list[tuple[str, str]]:
    """The lines of ``zikade provide stat`` (label, value)."""
    rows = [("Strategy", str(doc.get("strategy", "-"))), ("Keys", str(doc.get("keys", 0)))]
    if doc.get("strategy") != "sweep":
        for name in ("announced_total", "failures_total", "regions"):
            if name in doc:
                rows.append((name.replace("_", " ").capitalize(), str(doc[name])))
        return rows
    size = doc.get("network_size")
    prefix = doc.get("prefix_length")
    regions = f"{doc.get('regions', 0)}"
    if prefix is not None:
        regions += f" (prefix length {prefix})"
    rows.append(("Regions", regions))
    rows.append(("Network size", "-" if size is None else f"~{float(size):.0f} servers"))
    progress = doc.get("cycle_progress")
    if isinstance(progress, (int, float)) and doc.get("cycle_start") is not None:
        rows.append(
            ("Cycle", f"{progress * 100:.1f}% of {_hours(doc.get('interval'))}, started "
             f"{_when(doc.get('cycle_start'))}")
        )  # fmt: skip
    for label, name in (("Last region", "last_region"), ("Next region", "next_region")):
        where = doc.get(name)
        rows.append((label, f"{'-' if where is None else where or '(all)'} at "
                            f"{_when(doc.get(name + '_at'))}"))  # fmt: skip
    rows.append(
        ("This cycle", f"{doc.get('regions_done_cycle', 0)} regions, "
         f"{doc.get('keys_reprovided_cycle', 0)} keys, {doc.get('lookups_cycle', 0)} lookups, "
         f"{doc.get('messages_cycle', 0)} messages on {doc.get('streams_cycle', 0)} streams, "
         f"{doc.get('failures_cycle', 0)} failures")
    )  # fmt: skip
    rows.append(
        ("Queues", f"{doc.get('burst_keys', 0)} new keys in {doc.get('burst_regions', 0)} "
         f"regions, {doc.get('overdue_regions', 0)} regions overdue, "
         f"{doc.get('active_regions', 0)} in progress")
    )  # fmt: skip
    holders = doc.get("average_holders")
    if isinstance(holders, (int, float)):
        rows.append(("Avg record holders", f"{holders:.1f}"))
    rows.append(
        ("Since start", f"{doc.get('keys_provided_total', 0)} new keys, "
         f"{doc.get('lookups_total', 0)} lookups, {doc.get('messages_total', 0)} messages, "
         f"{doc.get('failures_total', 0)} failures")
    )  # fmt: skip
    return rows


__all__ = ["CHUNK_LINES", "ProvideGroup", "provide_command", "render_stat"]
