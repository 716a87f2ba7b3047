"""The provide commands of the RPC API: many CIDs at once, statistics, clear, reprovide.

Kubo 0.39's shapes (``ipfs provide once|stat|clear``, ``ipfs routing
reprovide``), on the node's reprovider (``dht/node_provide.py``):

* ``provide/add`` — the body holds CIDs, one per line (blank lines and ``#``
  comments skipped); they are stored and announced in bursts by the sweep (or
  one by one by the classic reprovider). Answers ``{"Keys", "New"}``: the CIDs
  read and how many were not provided before. ``routing/provide`` stays the
  command that announces a few CIDs at once and streams who took them.
* ``provide/stat`` — the reprovider's state (``zikade provide stat``).
* ``provide/clear`` — stop re-announcing everything: ``{"Cleared": n}``.
* ``provide/reprovide`` — re-announce everything now (a full cycle).

These handlers are registered in :data:`zikade_py.http.ops.COMMANDS`, so the
daemon serves them and the CLI runs them in-process the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from zikade_py.http.args import parse_cid
from zikade_py.http.errors import ArgumentError, OpError

if TYPE_CHECKING:
    from zikade_py.http.ops import Context, Request

JSONObj = dict[str, Any]

MAX_LINE = 512
"""Longest CID line accepted (a CID string is well under 200 characters)."""


def parse_cid_lines(body: bytes) -> list[str]:
    """The CIDs of a newline-separated body, checked; :class:`ArgumentError` names a bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError("the CID list is not UTF-8 text") from None
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE:
            raise ArgumentError(f"line {number}: too long for a CID")
        try:
            parse_cid(line)
        except ArgumentError as exc:
            raise ArgumentError(f"line {number}: {exc}") from None
        out.append(line)
    return out


async def _one(doc: JSONObj) -> AsyncIterator[JSONObj]:
    yield doc


async def _add(ctx: Context, req: Request) -> AsyncIterator[JSONObj]:
    cids = parse_cid_lines(req.body or b"") + list(req.args)
    if not cids:
        raise ArgumentError("no CIDs given (one per line in the body, or as arguments)")
    for cid in req.args:
        parse_cid(cid)
    try:
        new = await ctx.node.provide_many(cids)
    except ValueError as exc:
        raise OpError(str(exc)) from None
    yield {"Keys": len(cids), "New": new}


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
    "parse_cid_lines",
    "provide_add",
    "provide_clear",
    "provide_reprovide",
    "provide_stat",
]
