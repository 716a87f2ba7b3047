"""The provide commands of the RPC API: many CIDs at once, statistics, clear, reprovide.

Kubo 0.39's shapes (``ipfs provide once|stat|clear``, ``ipfs routing
reprovide``), on the node's reprovider (``dht/node_provide.py``):

* ``provide/add`` — the body holds CIDs, one per line (blank lines and ``#``
  comments skipped); they are stored and announced in bursts by the sweep (or
  one by one by the classic reprovider). Answers ``{"Keys", "New"}``: the CIDs
  read and how many were not provided before. All or nothing: a bad line is an
  error naming it (option ``first-line``: the body's first line number, for a
  client that sends a long list in pieces) and nothing of the body is provided.
  ``routing/provide`` stays the command that announces a few CIDs at once and
  streams who took them.
* ``provide/stat`` — the reprovider's state (``zikade provide stat``).
* ``provide/clear`` — stop re-announcing everything: ``{"Cleared": n}``.
* ``provide/reprovide`` — re-announce everything now (a full cycle).

These handlers are registered in :data:`zikade_py.http.ops.COMMANDS`, so the
daemon serves them and the CLI runs them in-process the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from zikade_py.blocks.cid_text import text_multihash
from zikade_py.http.args import parse_cid
from zikade_py.http.errors import ArgumentError, OpError

if TYPE_CHECKING:
    from zikade_py.http.ops import Context, Request

JSONObj = dict[str, Any]

MAX_LINE = 512
"""Longest CID line accepted (a CID string is well under 200 characters)."""

FIRST_LINE = "first-line"
"""``provide/add`` option: the number of the body's first line in the user's input
(a client sending a long list in pieces), so an error names the line the user sees."""


def bad_line(number: int, reason: str, first_line: int) -> str:
    """The one-line error for bad line ``number``, saying what was provided before it.

    A request is all or nothing and a client sends its pieces in order, stopping at the
    first failure: everything before ``first_line`` was provided, nothing from it on.
    """
    if first_line <= 1:
        done = "nothing was provided"
    else:
        done = f"lines 1-{first_line - 1} were provided, nothing from line {first_line} on"
    return f"line {number}: {reason} ({done})"


def parse_cid_lines(body: bytes, first_line: int = 1) -> list[bytes]:
    """The multihashes of the CIDs of a newline-separated body (blank lines and ``#``
    comments skipped), each decoded once; :class:`ArgumentError` names a bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = first_line + body.count(b"\n", 0, exc.start)
        raise ArgumentError(bad_line(number, "not UTF-8 text", first_line)) from None
    out: list[bytes] = []
    for number, raw in enumerate(text.split("\n"), first_line):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE:
            raise ArgumentError(bad_line(number, "too long for a CID", first_line))
        try:
            out.append(text_multihash(line))
        except ValueError as exc:
            reason = f"invalid CID {line!r}: {exc}"
            raise ArgumentError(bad_line(number, reason, first_line)) from None
    return out


async def _one(doc: JSONObj) -> AsyncIterator[JSONObj]:
    yield doc


def _first_line(req: Request) -> int:
    text = req.option(FIRST_LINE, "1") or "1"
    if not text.isdigit() or int(text) < 1:
        raise ArgumentError(f"option {FIRST_LINE}: expected a line number, got {text!r}")
    return int(text)


async def _add(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    keys = parse_cid_lines(req.body or b"", _first_line(req))
    for cid in req.args:
        keys.append(bytes(parse_cid(cid).digest))
    if not keys:
        raise ArgumentError("no CIDs given (one per line in the body, or as arguments)")
    try:
        new = await ctx.node.provide_multihashes(keys)
    except ValueError as exc:
        raise OpError(str(exc)) from None
    yield {"Keys": len(keys), "New": new}


def provide_add(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``provide/add``: provide the CIDs of the body (and arguments) from now on."""
    return _add(ctx, req)


async def _stat(ctx: Context) -> AsyncIterator[JSONObj]:
    yield await ctx.node.provide_stat()


def provide_stat(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``provide/stat``: keys, regions, cycle progress, last/next region, this cycle's
    lookups, messages and failures, the estimated network size."""
    return _stat(ctx)


async def _clear(ctx: Context) -> AsyncIterator[JSONObj]:
    yield {"Cleared": await ctx.node.provide_clear()}


def provide_clear(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``provide/clear``: stop re-announcing everything we provide."""
    return _clear(ctx)


async def _reprovide(ctx: Context) -> AsyncIterator[JSONObj]:
    await ctx.node.reprovide_now()
    yield {}


def provide_reprovide(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    """``provide/reprovide``: start re-announcing everything now."""
    return _reprovide(ctx)


__all__ = [
    "FIRST_LINE",
    "MAX_LINE",
    "bad_line",
    "parse_cid_lines",
    "provide_add",
    "provide_clear",
    "provide_reprovide",
    "provide_stat",
]
