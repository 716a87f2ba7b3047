"""The daemon's RPC endpoints for files and blocks, in Kubo's shapes.

* ``add`` — the request body is the file; answers ``{"Name", "Hash", "Size",
  "Blocks", "Provided"}``; options ``profile`` (``default`` |
  ``unixfs-v1-2025``), ``pin`` and ``provide`` (``true``/``false``);
* ``cat?arg=CID`` and ``block/get?arg=CID`` — raw bytes
  (``application/octet-stream``, streamed; ``cat`` sends the file size in
  ``X-Content-Length`` first so a client can tell a complete file from one cut short);
  ``timeout`` bounds the whole transfer, as Kubo's does;
* ``get?arg=CID`` — Kubo's shape: a tar archive with one entry named after the
  CID (the ``zikade get`` command reads ``cat`` instead: no archive to unpack);
* ``block/put`` (body: the block; ``codec`` ``raw``|``dag-pb``, ``pin``) and
  ``block/stat?arg=CID`` — ``{"Key", "Size"}``;
* ``bitswap/stat`` — wants, peers, sessions, blocks and bytes each way;
* ``repo/gc`` — remove unpinned blocks; ``repo/stat`` — blocks, bytes, pins.

Why beside :mod:`.ops` rather than in it: those commands answer JSON objects,
and these stream file bodies in both directions. The same browser rules guard
them (the guard is installed on the whole app) and a client that goes away
stops the fetch (the write fails, the session is stopped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from zikade_py.blocks import cid as cids
from zikade_py.dht.session import session
from zikade_py.files import ContentNode
from zikade_py.http.args import parse_duration
from zikade_py.http.errors import ArgumentError, OpError
from zikade_py.unixfs import PROFILES, CorruptDagError, NotAFileError

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v0/"

_CODECS: Final = {"raw": cids.RAW, "dag-pb": cids.DAG_PB}

Handler = Callable[[web.Request, ContentNode], Awaitable[web.StreamResponse]]


def _error(exc: BaseException) -> web.Response:
    client = isinstance(exc, (ArgumentError, cids.InvalidCIDError, NotAFileError))
    doc = {"Message": " ".join(str(exc).split()) or type(exc).__name__,
           "Code": 1 if client else 0, "Type": "error"}
    return web.json_response(doc, status=400 if client else 500)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ArgumentError(f"option {name} must be true or false, not {value!r}")


def _timeout(request: web.Request) -> float | None:
    text = request.query.get("timeout")
    return None if text is None else parse_duration(text)


def _cid(request: web.Request) -> bytes:
    args = request.query.getall("arg", [])
    if len(args) != 1:
        raise ArgumentError("expected exactly one argument: <cid>")
    return cids.to_bytes(args[0])


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1024 * 1024):
        yield chunk


async def add(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``add``: import the body as a UnixFS file."""
    name = request.query.get("name", "")
    profile_name = request.query.get("profile", "default")
    profile = PROFILES.get(profile_name)
    if profile is None:
        raise ArgumentError(f"unknown profile {profile_name!r} (one of {', '.join(PROFILES)})")
    result = await node.add(
        _body(request), profile=profile, pin=_flag(request, "pin", True),
        provide=_flag(request, "provide", True), timeout=_timeout(request),
    )
    provided = result.provided
    return web.json_response({
        "Name": name or result.cid, "Hash": result.cid, "Size": str(result.size),
        "Blocks": result.blocks,
        "Provided": bool(provided and provided.ok),
    })


async def cat(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``cat``: the file's bytes, streamed (``timeout`` bounds the whole transfer)."""
    return await _stream_file(request, node, tar=False)


async def get(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``get``: the file as Kubo's ``/api/v0/get`` answers it, a tar archive holding one
    entry named after the CID (``application/x-tar``)."""
    return await _stream_file(request, node, tar=True)


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


async def _stream_file(request: web.Request, node: ContentNode, *, tar: bool) -> web.StreamResponse:
    root = _cid(request)
    timeout = _timeout(request)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    response: web.StreamResponse | None = None
    try:
        async with asyncio.timeout_at(deadline), session():  # one session: shared peers
            size = await node.size_of_file(root)
            headers = {"X-Content-Length": str(size)}
            headers["Content-Type"] = "application/x-tar" if tar else "application/octet-stream"
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            if tar:
                await response.write(_tar_header(request.query.getall("arg")[0], size))
            async for chunk in node.cat(root):
                await response.write(chunk)
            if tar:
                await response.write(b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE))
    except (ConnectionResetError, ConnectionError):
        return response if response is not None else web.Response(status=499)
    except Exception as exc:
        if response is None:
            raise
        # after the headers: cut the stream short, the client sees it
        log.info("cat %s failed mid-stream: %r", cids.to_str(root), exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def block_get(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``block/get``: one block's bytes."""
    data = await node.get_block(_cid(request), timeout=_timeout(request))
    return web.Response(body=data, content_type="application/octet-stream")


async def block_put(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``block/put``: store the body as a block."""
    codec_name = request.query.get("cid-codec", request.query.get("codec", "raw"))
    codec = _CODECS.get(codec_name)
    if codec is None:
        raise ArgumentError(f"unknown codec {codec_name!r} (raw or dag-pb)")
    data = await request.read()
    key = await node.put_block(data, codec=codec, pin=_flag(request, "pin", False))
    return web.json_response({"Key": key, "Size": len(data)})


async def block_stat(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``block/stat``: the block's size (fetched if not local)."""
    cid = _cid(request)
    size = node.blockstore.size_of(cid)
    if size is None:
        size = len(await node.get_block(cid, timeout=_timeout(request)))
    return web.json_response({"Key": cids.to_str(cid), "Size": size})


async def bitswap_stat(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``bitswap/stat``: the exchange's counters and the blockstore's."""
    doc: dict[str, Any] = {
        k.title().replace("_", ""): v
        for k, v in dataclasses.asdict(node.bitswap.stat()).items()
    }
    store = node.blockstore.stat()
    doc["Blockstore"] = {"Blocks": store.blocks, "Bytes": store.bytes,
                         "PinnedBlocks": store.pinned_blocks, "Pins": store.pins,
                         "MaxBytes": store.max_bytes}
    return web.json_response(doc, dumps=lambda d: json.dumps(d, separators=(",", ":")))


async def repo_gc(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``repo/gc``: remove every unpinned block (Kubo ``ipfs repo gc``)."""
    result = await node.blockstore.gc()
    return web.json_response({"Blocks": result.blocks, "Bytes": result.bytes})


async def repo_stat(request: web.Request, node: ContentNode) -> web.StreamResponse:
    """``repo/stat``: the blockstore's blocks, bytes, pins and limit."""
    st = node.blockstore.stat()
    return web.json_response({"NumObjects": st.blocks, "RepoSize": st.bytes,
                              "PinnedBlocks": st.pinned_blocks, "Pins": st.pins,
                              "StorageMax": st.max_bytes,
                              "StorageGCWatermark": node.storage.gc_watermark})


ROUTES: Final[dict[str, Handler]] = {
    "add": add,
    "cat": cat,
    "get": get,
    "block/get": block_get,
    "block/put": block_put,
    "block/stat": block_stat,
    "bitswap/stat": bitswap_stat,
    "repo/gc": repo_gc,
    "repo/stat": repo_stat,
}
"""Path under ``/api/v0/`` → handler."""


def add_files_routes(app: web.Application, node: object) -> None:
    """Mount :data:`ROUTES` (a node without a blockstore answers them with an error)."""

    def route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not isinstance(node, ContentNode):
                return _error(OpError("this node has no blockstore"))
            try:
                if handler in (cat, get):  # they bound the transfer past their headers
                    return await handler(request, node)
                async with asyncio.timeout(_timeout(request)):  # Kubo: the whole command
                    return await handler(request, node)
            except (ArgumentError, OpError, cids.InvalidCIDError, NotAFileError,
                    CorruptDagError, TimeoutError, ValueError) as exc:
                return _error(exc if str(exc) else OpError("timed out"))

        return handle

    for path, handler in ROUTES.items():
        app.router.add_post(API_PREFIX + path, route(handler))


__all__ = ["ROUTES", "add_files_routes"]
