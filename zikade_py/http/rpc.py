"""The daemon's RPC API: ``POST /api/v0/<command>?arg=…&<option>=…`` as Kubo serves it.

Why Kubo's shape: people (and scripts) already know it: POST only (a GET gets
405, Kubo's CSRF protection), positional arguments as repeated ``arg``
parameters, options by their long names (``timeout=30s``,
``num-providers=5``), streaming commands answered with NDJSON and the
``X-Chunked-Output: 1`` header, errors as ``{"Message", "Code", "Type":
"error"}`` (Code 1 for bad input with status 400, Code 0 with 500 otherwise).
An error after streaming began arrives as that error object on the last line.

Kubo's browser rules guard every path (:mod:`.api_guard`: a foreign Host, Origin
or Referer gets 403, anything but POST 405), and a query stops when its client
goes away: the connection is watched while the command waits, because aiohttp
does not cancel handlers on disconnect and a routing query may otherwise run for
its whole timeout, its requests in flight, for nobody.

The commands themselves live in :mod:`zikade_py.http.ops`; this module only
maps HTTP onto them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from aiohttp import BodyPartReader, web

from zikade_py.dht.node import Node
from zikade_py.http.api_guard import ApiGuard
from zikade_py.http.disconnect import ClientGoneError, client_gone_response, until_disconnect
from zikade_py.http.errors import ArgumentError, OpError
from zikade_py.http.files_api import add_files_routes
from zikade_py.http.ops import COMMANDS, Command, Context, JSONObj, Request

API_PREFIX: Final = "/api/v0/"
"""Every RPC path starts with this (Kubo's ``/api/v0``)."""

ERROR_CODE_NORMAL: Final = 0
ERROR_CODE_CLIENT: Final = 1
"""Kubo's ``cmds.ErrNormal`` / ``cmds.ErrClient`` codes in the error object."""

DISCONNECT_POLL: Final = 0.25
"""Seconds between looks at the connection while a command waits for its next result."""

_CONTEXT_KEY: Final = web.AppKey("zikade_rpc_context", Context)







def error_object(message: str, code: int = ERROR_CODE_NORMAL) -> JSONObj:
    """Kubo's error document (one line, no tracebacks)."""
    return {"Message": " ".join(message.split()), "Code": code, "Type": "error"}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _error_response(exc: BaseException) -> web.Response:
    if isinstance(exc, ArgumentError):
        return web.json_response(error_object(str(exc), ERROR_CODE_CLIENT), status=400)
    return web.json_response(error_object(_message(exc)), status=500)


def _message(exc: BaseException) -> str:
    if isinstance(exc, (OpError, ArgumentError)):
        return str(exc)
    return str(exc) or type(exc).__name__


async def _read_request(request: web.Request) -> Request:
    args = tuple(request.query.getall("arg", []))
    options = {k: v for k, v in request.query.items() if k != "arg"}
    body: bytes | None = None
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        part = await reader.next()
        if isinstance(part, BodyPartReader):
            body = bytes(await part.read(decode=False))
    elif request.body_exists:
        body = await request.read()
    return Request(args=args, options=options, body=body)


async def _serve(request: web.Request, command: Command) -> web.StreamResponse:
    ctx = request.app[_CONTEXT_KEY]
    try:
        req = await _read_request(request)
        events: AsyncIterator[JSONObj] = command.handler(ctx, req)
    except Exception as exc:  # bad arguments are found before anything is sent
        return _error_response(exc)
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        try:
            first = await until_disconnect(request, anext(events, None), DISCONNECT_POLL)
        except ClientGoneError:
            # leaving the block closes ``events``: the query is cancelled
            return client_gone_response()
        except Exception as exc:
            return _error_response(exc)
        if not command.streaming:
            return web.json_response(first if first is not None else {})
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "X-Chunked-Output": "1"}
        )
        await response.prepare(request)
        if first is not None:
            await response.write(_dumps(first))
        try:
            while (
                doc := await until_disconnect(request, anext(events, None), DISCONNECT_POLL)
            ) is not None:
                await response.write(_dumps(doc))
        except (ConnectionResetError, ConnectionError):
            return response  # the client went away: closing ``events`` cancels the query
        except Exception as exc:
            code = ERROR_CODE_CLIENT if isinstance(exc, ArgumentError) else ERROR_CODE_NORMAL
            await response.write(_dumps(error_object(_message(exc), code)))
        await response.write_eof()
        return response


def _route(command: Command) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(request, command)

    return handle


async def _unknown(request: web.Request) -> web.Response:
    name = request.match_info.get("path", "")
    return web.json_response(
        error_object(f"unknown command {name!r}", ERROR_CODE_CLIENT), status=404
    )


def add_rpc_routes(
    app: web.Application,
    node: Node,
    *,
    repo: Path | None = None,
    guard: ApiGuard | None = None,
) -> None:
    """Mount every command of :data:`~zikade_py.http.ops.COMMANDS` under ``/api/v0/``.

    ``repo`` is where ``bootstrap/*`` reads and edits the bootstrap list. ``guard``
    (default: Kubo's rules for a server on 127.0.0.1) is installed on the whole
    ``app``: its Host check covers every path, its browser rules ``/api/v0/``.
    """
    (guard or ApiGuard()).install(app)
    app[_CONTEXT_KEY] = Context(node=node, repo=repo)
    for name, command in COMMANDS.items():
        app.router.add_post(API_PREFIX + name, _route(command))
    add_files_routes(app, node)  # add, cat, block/*, bitswap/stat (raw bodies)
    app.router.add_post(API_PREFIX + "{path:.*}", _unknown)
