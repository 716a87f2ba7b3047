"""``zikade add``, ``cat``, ``block get|put|stat`` and ``bitswap stat`` (Kubo's shapes).

With a daemon running these go to its RPC API (``add`` sends the file as the
request body; ``cat`` and ``block get`` stream raw bytes back). Without one:

* ``add`` imports into the repo's blockstore and pins, but cannot announce the
  file (an ephemeral node's address dies with it): the daemon announces every
  pinned file when it starts, and serves it;
* ``cat`` / ``block get`` / ``block stat`` run an in-process node that joins the
  network and fetches through Bitswap (providers from the DHT);
* ``block put`` stores into the repo.

``cat`` writes to stdout (or ``-o FILE``), streaming, every block checked against
its CID; with a terminal on stderr it shows a progress bar.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from .backend import GRACE, daemon_client, open_local, timeout_options
from .common import (
    CommandError,
    QueryOptions,
    fail,
    network_options,
    one_line_errors,
    print_json,
    require_repo,
    run_command,
)
from .output import JSONObj
from .registry import summary

if TYPE_CHECKING:
    from zikade_py.files import ContentNode

PROFILES = ("default", "unixfs-v1-2025")
"""``--profile`` choices: ipfs-unixfs-importer's defaults, or @helia/unixfs's newer layout."""

NOT_ANNOUNCED_NOTE = (
    "note: no daemon running: added to the repo and pinned, not announced yet "
    "('zikade daemon' announces pinned files when it starts)"
)


def _added_line(doc: JSONObj, name: str, quiet: bool) -> str:
    return str(doc["Hash"]) if quiet else f"added {doc['Hash']} {name}"


@click.command("add", short_help=summary("add"))
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print only the CIDs.")
@click.option("--profile", type=click.Choice(PROFILES), default="default", show_default=True,
              help="Import settings: 'default' = ipfs-unixfs-importer/Kubo --cid-version=1 "
                   "(256 KiB chunks, 174 links); 'unixfs-v1-2025' = @helia/unixfs "
                   "(1 MiB chunks, 1024 links).")
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin what is added.")
@network_options
def add_command(
    files: tuple[Path, ...], quiet: bool, profile: str, pin: bool, opts: QueryOptions
) -> None:
    """Add FILES as UnixFS files: prints 'added <cid> <name>' for each.

    With a daemon the root is also provided through the DHT."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    options = timeout_options(opts.timeout, profile=profile, pin=str(pin).lower())
    if client is not None:
        with one_line_errors():
            for path in files:
                doc = client.request(
                    "add", [], {**options, "name": path.name}, body=path.read_bytes(),
                    timeout=opts.timeout + GRACE,
                )
                print_json(doc) if opts.as_json else click.echo(
                    _added_line(doc, path.name, quiet)
                )
        return

    async def go() -> None:
        from zikade_py.files import ContentNode
        from zikade_py.unixfs import PROFILES as BY_NAME

        async with open_local(repo, timeout=opts.timeout, join=False, content=True) as node:
            assert isinstance(node, ContentNode)
            for path in files:
                result = await node.add(path, profile=BY_NAME[profile], pin=pin, provide=False)
                doc = {"Name": path.name, "Hash": result.cid, "Size": str(result.size),
                       "Blocks": result.blocks, "Provided": False}
                print_json(doc) if opts.as_json else click.echo(
                    _added_line(doc, path.name, quiet)
                )

    run_command("add", go, timeout=opts.timeout, trace=opts.trace)
    if not quiet:
        click.echo(NOT_ANNOUNCED_NOTE, err=True)


class Sink:
    """Where ``cat`` and ``get`` write: stdout or a file, with an optional progress bar on
    stderr (a pipe gets plain bytes, a person sees how far the transfer is)."""

    def __init__(self, output: Path | None, progress: bool | None) -> None:
        self.out: IO[bytes] = output.open("wb") if output else sys.stdout.buffer
        self.owned = output is not None
        self.show = sys.stderr.isatty() if progress is None else progress
        self.written = 0
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int | None) -> None:
        """The transfer begins: ``total`` bytes are expected (``None``: unknown, no bar)."""
        if self.show and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TransferSpeedColumn,
            )

            self._bar = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("cat", total=total)

    def write(self, chunk: bytes) -> None:
        """Write the next chunk; ``written`` counts it, so a short transfer is noticed."""
        self.out.write(chunk)
        self.written += len(chunk)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.written)

    def close(self) -> None:
        """Stop the bar and flush; closes the file if this sink opened it (never stdout)."""
        if self._bar is not None:
            self._bar.stop()
        self.out.flush()
        if self.owned:
            self.out.close()


def _check_complete(sink: Sink, expected: int | None) -> None:
    if expected is not None and sink.written != expected:
        raise CommandError(f"the transfer ended early: {sink.written} of {expected} bytes")


@click.command("cat", short_help=summary("cat"))
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@network_options
def cat_command(cid: str, output: Path | None, progress: bool | None, opts: QueryOptions) -> None:
    """Write the file CID to stdout (fetched through Bitswap if not local, every block
    checked against its CID)."""
    sink = Sink(output, progress)
    try:
        fetch_file(cid, sink, opts, "cat")
    finally:
        sink.close()


def fetch_file(cid: str, sink: Sink, opts: QueryOptions, name: str) -> None:
    """Write the file ``cid`` into ``sink``: through the daemon's ``cat`` when one runs,
    else an in-process node (local blocks first, the rest through Bitswap). The whole
    transfer is bounded by ``--timeout``; a transfer cut short is an error."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    if client is not None:
        deadline = time.monotonic() + opts.timeout + GRACE
        with one_line_errors():
            headers, chunks = client.raw(
                "cat", [cid], timeout_options(opts.timeout), timeout=opts.timeout + GRACE
            )
            expected = int(headers.get("x-content-length", "-1"))
            sink.start(expected if expected >= 0 else None)
            for chunk in chunks:
                sink.write(chunk)
                if time.monotonic() > deadline:  # the daemon bounds it too; belt and braces
                    raise CommandError(f"timed out after {opts.timeout:g}s")
            _check_complete(sink, expected if expected >= 0 else None)
        return

    async def go() -> None:
        async def have_locally(files: ContentNode) -> bool:
            return await files.is_local(cid)

        async with _local_first(repo, opts, have_locally, verbose=opts.verbose) as files:
            from zikade_py import session

            async with session():  # the root's fetch and the rest share peers
                sink.start(await files.size_of_file(cid))
                async for chunk in files.cat(cid):
                    sink.write(chunk)

    run_command(name, go, timeout=opts.timeout, trace=opts.trace)


def _content(node: object) -> ContentNode:
    from zikade_py.files import ContentNode

    assert isinstance(node, ContentNode)
    return node


@contextlib.asynccontextmanager
async def _local_first(
    repo: Path,
    opts: QueryOptions,
    have_locally: Callable[[ContentNode], Awaitable[bool]],
    *,
    verbose: bool = False,
) -> AsyncIterator[ContentNode]:
    """A content node that joins the network only when ``have_locally`` says the repo
    cannot answer alone: a command on local blocks then never waits for a bootstrap."""
    async with open_local(repo, timeout=opts.timeout, join=False, content=True) as node:
        local = await have_locally(_content(node))
    async with open_local(repo, bootstrap=opts.bootstrap, timeout=opts.timeout,
                          join=not local, content=True, verbose=verbose) as node:
        yield _content(node)


@click.group("block", short_help=summary("block"))
def block_group() -> None:
    """Raw blocks: get, put, stat."""


@block_group.command("get")
@click.argument("cid")
@network_options
def block_get_command(cid: str, opts: QueryOptions) -> None:
    """Write the raw bytes of block CID to stdout."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    if client is not None:
        with one_line_errors():
            _, chunks = client.raw("block/get", [cid], timeout_options(opts.timeout),
                                   timeout=opts.timeout + GRACE)
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return

    async def go() -> None:
        from zikade_py.blocks import cid as cids

        key = cids.to_bytes(cid)

        async def have_locally(files: ContentNode) -> bool:
            return files.blockstore.has(key)

        async with _local_first(repo, opts, have_locally) as files:
            sys.stdout.buffer.write(await files.get_block(key))
            sys.stdout.buffer.flush()

    run_command("block get", go, timeout=opts.timeout, trace=opts.trace)


@block_group.command("put")
@click.argument("data", metavar="FILE|-", type=click.File("rb"))
@click.option("--cid-codec", type=click.Choice(["raw", "dag-pb"]), default="raw",
              show_default=True)
@click.option("--pin/--no-pin", default=False, show_default=True)
@network_options
def block_put_command(data: IO[bytes], cid_codec: str, pin: bool, opts: QueryOptions) -> None:
    """Store FILE (or stdin) as one block; prints its CID."""
    repo = require_repo(opts.repo)
    body = data.read()
    client = daemon_client(repo)
    if client is not None:
        with one_line_errors():
            doc = client.request("block/put", [], {"cid-codec": cid_codec, "pin": str(pin).lower()},
                                 body=body, timeout=opts.timeout + GRACE)
        print_json(doc) if opts.as_json else click.echo(doc["Key"])
        return

    async def go() -> None:
        from zikade_py.blocks import cid as cids

        async with open_local(repo, timeout=opts.timeout, join=False, content=True) as node:
            codec = cids.RAW if cid_codec == "raw" else cids.DAG_PB
            key = await _content(node).put_block(body, codec=codec, pin=pin)
            doc = {"Key": key, "Size": len(body)}
            print_json(doc) if opts.as_json else click.echo(key)

    run_command("block put", go, timeout=opts.timeout, trace=opts.trace)


@block_group.command("stat")
@click.argument("cid")
@network_options
def block_stat_command(cid: str, opts: QueryOptions) -> None:
    """Print the CID and size of a block (fetched if not local)."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    if client is not None:
        with one_line_errors():
            doc = client.request("block/stat", [cid], timeout_options(opts.timeout),
                                 timeout=opts.timeout + GRACE)
    else:
        docs: list[JSONObj] = []

        async def go() -> None:
            from zikade_py.blocks import cid as cids

            key = cids.to_bytes(cid)
            async with open_local(repo, timeout=opts.timeout, join=False, content=True) as node:
                size = _content(node).blockstore.size_of(key)
            if size is None:
                async with open_local(repo, bootstrap=opts.bootstrap, timeout=opts.timeout,
                                      content=True) as node:
                    size = len(await _content(node).get_block(key))
            docs.append({"Key": cids.to_str(key), "Size": size})

        run_command("block stat", go, timeout=opts.timeout, trace=opts.trace)
        doc = docs[0]
    if opts.as_json:
        print_json(doc)
    else:
        click.echo(f"Key: {doc['Key']}\nSize: {doc['Size']}")


@click.group("bitswap", short_help=summary("bitswap"))
def bitswap_group() -> None:
    """The daemon's block exchange."""


def _stat_lines(doc: JSONObj) -> Iterator[str]:
    store = doc.get("Blockstore") or {}
    yield "bitswap status"
    yield f"\twants: {doc.get('Wants', 0)}"
    yield f"\tpeers: {doc.get('Peers', 0)}"
    yield f"\tsessions: {doc.get('Sessions', 0)}"
    yield f"\tblocks received: {doc.get('BlocksReceived', 0)}"
    yield f"\tdata received: {doc.get('BytesReceived', 0)}"
    yield f"\tblocks sent: {doc.get('BlocksSent', 0)}"
    yield f"\tdata sent: {doc.get('BytesSent', 0)}"
    yield f"\tdup blocks received: {doc.get('DuplicateBlocks', 0)}"
    yield f"\tunwanted blocks dropped: {doc.get('UnwantedBlocks', 0)}"
    yield f"\tHAVE / DONT_HAVE sent: {doc.get('HavesSent', 0)} / {doc.get('DontHavesSent', 0)}"
    yield (f"\tHAVE / DONT_HAVE received: {doc.get('HavesReceived', 0)} / "
           f"{doc.get('DontHavesReceived', 0)}")
    yield f"\tblockstore: {store.get('Blocks', 0)} blocks, {store.get('Bytes', 0)} bytes, " \
          f"{store.get('Pins', 0)} pins"


@bitswap_group.command("stat")
@network_options
def bitswap_stat_command(opts: QueryOptions) -> None:
    """Wants, peers, blocks and bytes sent and received (needs the daemon)."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    if client is None:
        fail("this command needs a running daemon (start one with 'zikade daemon')")
    with one_line_errors():
        doc = client.request("bitswap/stat", [], {}, timeout=opts.timeout + GRACE)
    if opts.as_json:
        print_json(doc)
    else:
        for line in _stat_lines(doc):
            click.echo(line)


@click.group("repo", short_help=summary("repo"))
def repo_group() -> None:
    """The repo's blockstore: collect garbage, show its size."""


def _repo_call(name: str, opts: QueryOptions) -> JSONObj:
    """``repo/<name>`` on the daemon, or on the repo's blockstore directly."""
    repo = require_repo(opts.repo)
    client = daemon_client(repo)
    if client is not None:
        with one_line_errors():
            return client.request(f"repo/{name}", [], {}, timeout=opts.timeout + GRACE)
    docs: list[JSONObj] = []

    async def go() -> None:
        from zikade_py.blocks import BLOCKS_DIRNAME, FileBlockstore
        from zikade_py.http.repo import load_config

        try:
            limits = load_config(repo).storage_limits()
        except ValueError as exc:
            raise CommandError(f"config Datastore: {exc}") from None
        store = await FileBlockstore.open(repo / BLOCKS_DIRNAME, limits.max_bytes)
        try:
            if name == "gc":
                result = await store.gc()
                docs.append({"Blocks": result.blocks, "Bytes": result.bytes})
            else:
                st = store.stat()
                docs.append({"NumObjects": st.blocks, "RepoSize": st.bytes,
                             "PinnedBlocks": st.pinned_blocks, "Pins": st.pins,
                             "StorageMax": st.max_bytes,
                             "StorageGCWatermark": limits.gc_watermark})
        finally:
            await store.close()

    run_command(f"repo {name}", go, timeout=opts.timeout, trace=opts.trace)
    return docs[0]


@repo_group.command("gc")
@network_options
def repo_gc_command(opts: QueryOptions) -> None:
    """Remove every block no pin covers (what 'cat' fetched and 'add --no-pin' added)."""
    doc = _repo_call("gc", opts)
    if opts.as_json:
        print_json(doc)
    else:
        click.echo(f"removed {doc['Blocks']} blocks ({doc['Bytes']} bytes)")


@repo_group.command("stat")
@network_options
def repo_stat_command(opts: QueryOptions) -> None:
    """Blocks, bytes and pins in the repo's blockstore, its cap (Datastore.StorageMax) and
    the percent of it past which unpinned blocks are collected (StorageGCWatermark)."""
    doc = _repo_call("stat", opts)
    if opts.as_json:
        print_json(doc)
    else:
        cap = doc.get("StorageMax")
        click.echo(f"NumObjects: {doc['NumObjects']}\nRepoSize: {doc['RepoSize']}\n"
                   f"StorageMax: {'unlimited' if cap is None else cap}\n"
                   f"StorageGCWatermark: {doc.get('StorageGCWatermark')}%\n"
                   f"PinnedBlocks: {doc['PinnedBlocks']}\nPins: {doc['Pins']}")
