"""``zikade get``: a file by CID (Kubo's ``ipfs get``), or a value record by key.

Kubo splits the two: ``ipfs get <cid>`` saves a file, ``ipfs routing get <key>``
prints a record. ``zikade get`` had only the record meaning, and scripts use it
with ``/ipns/…`` and ``/pk/…`` keys, so one command takes both, told apart by the
argument's shape (``zikade routing get`` is the record command on its own):

* a bare CID or ``/ipfs/<cid>`` — the file, saved to ``-o PATH`` (default: the
  CID as the file name, or a directory to save it into), a progress bar on
  stderr when it is a terminal (or ``--progress``); written to ``PATH.part``
  and renamed once complete and verified, so an interrupted transfer never
  leaves a file that looks whole; ``--json`` prints ``{"Hash", "Path", "Size"}``;
* ``/<namespace>/<name>`` — the value record, written raw to stdout, exactly as
  before (``-o`` and ``--progress`` are refused there);
* anything else — one line saying which shapes are accepted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .common import QueryOptions, fail, network_options, print_json, verbose_option
from .registry import summary

IPFS_PREFIX = "/ipfs/"


def file_cid(key: str) -> str | None:
    """The CID text when ``key`` names a file (bare CID or ``/ipfs/<cid>``); ``None`` for a
    record key (``/<namespace>/…``); fails with one line for anything else."""
    from zikade_py.blocks import cid as cids

    if key.startswith(IPFS_PREFIX):
        cid, _, rest = key[len(IPFS_PREFIX):].partition("/")
        if rest.strip("/"):
            fail(f"invalid path {key!r}: paths inside a directory are not supported yet "
                 "(give the file's own CID)")
        try:
            cids.to_bytes(cid)
        except cids.InvalidCIDError as exc:
            fail(f"invalid CID in {key!r}: {exc}")
        return cid
    if key.startswith("/"):
        return None
    try:
        cids.to_bytes(key)
    except cids.InvalidCIDError:
        fail(f"invalid key {key!r}: expected a CID or /ipfs/<cid> (a file), or a record key "
             "/<namespace>/<name> such as /ipns/<peer-id> or /pk/<peer-id>")
    return key


@click.command("get", short_help=summary("get"))
@click.argument("key", metavar="CID|/ipfs/CID|/ns/KEY")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Where to save the file (default: ./<cid>; a directory: <dir>/<cid>).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@verbose_option
@network_options
def get_command(key: str, output: Path | None, progress: bool | None, opts: QueryOptions) -> None:
    """Save the file CID (or /ipfs/CID) to -o PATH, fetched through Bitswap if not local;
    or, for a record key (/ipns/<peer-id>, /pk/<peer-id>), write the record's raw value.

    Files: every block is checked against its CID; the file appears at PATH only
    once complete. Records: the same as 'zikade routing get KEY'.
    """
    cid = file_cid(key)
    if cid is None:
        if output is not None or progress is not None:
            fail("-o and --progress are for files; a record's value goes to stdout "
                 "(redirect it, or use 'zikade routing get')")
        from .routing_commands import get_record

        get_record(key, opts)
        return
    save_file(cid, output, progress, opts)


def save_file(cid: str, output: Path | None, progress: bool | None, opts: QueryOptions) -> None:
    """Fetch ``cid`` into ``output`` (through ``output.part``, renamed when complete)."""
    from .files_commands import Sink, fetch_file

    target = output if output is not None else Path(cid)
    if target.is_dir():
        target = target / cid
    partial = target.with_name(target.name + ".part")
    ok = False
    try:
        sink = Sink(partial, progress)
    except OSError as exc:
        fail(f"cannot write {partial}: {exc.strerror or exc}")
    if sink.show:  # Kubo's line, beside the bar; a pipe keeps errors to one line
        click.echo(f"Saving file(s) to {target}", err=True)
    try:
        fetch_file(cid, sink, opts, "get")
        ok = True
    finally:
        sink.close()
        if ok:
            partial.replace(target)
            if opts.as_json:
                print_json({"Hash": cid, "Path": str(target), "Size": sink.written})
        else:
            with contextlib.suppress(OSError):
                partial.unlink()


__all__ = ["file_cid", "get_command", "save_file"]
