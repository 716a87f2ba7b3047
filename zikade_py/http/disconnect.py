"""Stop a handler's work when its HTTP client goes away.

aiohttp does not cancel handlers when a client leaves (``handler_cancellation``
is off by default), and a DHT query behind an RPC command or a routing request
can run for its whole timeout. So the connection is looked at every
``poll`` seconds while the work runs, and the work (with the query under it,
whose requests are then cancelled) is cancelled as soon as the client is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")


class ClientGoneError(ConnectionResetError):
    """The HTTP client closed its connection while its request was still being served."""


def client_gone_response() -> web.Response:
    """What a handler returns for a client that left: nobody reads it; 499 is what
    proxies log for this."""
    return web.Response(status=499, text="client closed request\n")


async def until_disconnect(request: web.Request, work: Awaitable[T], poll: float) -> T:
    """Await ``work``; if ``request``'s client disconnects first, cancel it and raise
    :class:`ClientGoneError` once it has stopped."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ClientGoneError("client went away")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
