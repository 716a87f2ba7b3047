"""``zikade provide``: announce CIDs, many at once, and watch or stop the reprovider.

Kubo 0.39's shapes (``ipfs provide once|stat|clear``), without breaking
``zikade provide CID...``:

* ``zikade provide [once] CID...`` — announce each CID now and stream who took
  it (the routing command, unchanged; ``once`` is the default subcommand);
* ``zikade provide [once] --from-file FILE`` (or ``-`` for stdin) — many CIDs,
  one per line: the daemon stores them and its reprovider announces them in
  bursts (the sweep groups them by keyspace region); read and sent in chunks
  of :data:`CHUNK_LINES` lines as they come (the daemon decodes each CID
  once; a bad line stops it all with one error that names the line and says
  which lines before it were provided), prints nothing on success
  (``--json``: the counts, ``-v``: a line on stderr);
* ``zikade provide stat [--json]`` — keys, regions, cycle progress, last and
  next region, lookups and messages this cycle, failures, estimated network
  size (on the daemon; without one, what the repo holds);
* ``zikade provide clear`` — stop re-announcing everything;
* ``zikade provide reprovide`` — re-announce everything now.
"""

from __future__ import annotations

import datetime
import itertools
import sys
from collections.abc import Iterable, Iterator
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

CHUNK_BYTES = 3 * 1024 * 1024
"""Bytes of CIDs after which a request is sent even with fewer lines (under 4 MiB)."""

READ_LIMIT = 4096
"""Longest line read at once (a CID line is at most 512 characters)."""

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
    help="Read CIDs from FILE, one per line ('-': stdin); the reprovider announces them in bursts.",
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
    sources: list[Iterable[bytes]] = []
    if from_file is not None:
        sources.append(_lines(from_file))
    if stdin:
        sources.append(_lines(sys.stdin.buffer))
    if rest:
        sources.append(c.encode() for c in rest)
    _provide_many(itertools.chain.from_iterable(sources), ephemeral, opts)


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """The lines of ``stream`` one at a time, none longer than :data:`READ_LIMIT` (a
    longer one comes in pieces and is refused as too long)."""
    while line := stream.readline(READ_LIMIT):
        yield line


def pieces(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(first line number, body)`` of the requests that carry ``lines``:
    at most :data:`CHUNK_LINES` CID lines and about :data:`CHUNK_BYTES` bytes each, read
    as they are needed (a list of millions is never held at once).

    Only a line too long for a CID is refused here (:class:`ArgumentError` naming it);
    the daemon decodes every line once and names a bad one the same way.
    """
    from zikade_py.http.errors import ArgumentError
    from zikade_py.http.provide_ops import MAX_LINE, bad_line

    body: list[bytes] = []
    first, size, count = 1, 0, 0
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if len(text) > MAX_LINE or (len(line) >= READ_LIMIT and not line.endswith(b"\n")):
            raise ArgumentError(bad_line(number, "too long for a CID", first))
        body.append(text)
        if text and not text.startswith(b"#"):
            count += 1
            size += len(text) + 1
        if count >= CHUNK_LINES or size >= CHUNK_BYTES:
            yield first, b"\n".join(body)
            body, first, size, count = [], number + 1, 0, 0
    if count:
        yield first, b"\n".join(body)


def _provide_many(lines: Iterable[bytes], ephemeral: bool, opts: QueryOptions) -> None:
    from zikade_py.http.provide_ops import FIRST_LINE

    repo = require_repo(opts.repo)
    totals = {"Keys": 0, "New": 0}

    def add(doc: JSONObj) -> None:
        totals["Keys"] += int(doc.get("Keys", 0))
        totals["New"] += int(doc.get("New", 0))

    local = False
    with one_line_errors():
        for number, (first, body) in enumerate(pieces(lines)):
            options = timeout_options(opts.timeout, **{FIRST_LINE: str(first)})
            if not local and via_daemon(
                repo, "provide", "provide/add", [], options, add,
                body=body, timeout=opts.timeout + 5.0, trace=opts.trace,
            ):  # fmt: skip
                continue
            if number > 0 and not local:
                fail(f"the daemon went away: lines 1-{first - 1} were provided, nothing after")
            if not ephemeral:
                fail(
                    "provide needs a running daemon: an ephemeral node would announce an "
                    "address that dies with it (start 'zikade daemon', or pass --ephemeral "
                    "to do it anyway)"
                )
            if not local:
                click.echo(EPHEMERAL_NOTE, err=True)
            local = True
            run_local("provide", "provide/add", [], options, add, opts, repo=repo, body=body)
    if not totals["Keys"]:
        fail("no CIDs to provide")
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


__all__ = ["CHUNK_BYTES", "CHUNK_LINES", "ProvideGroup", "pieces", "provide_command", "render_stat"]
