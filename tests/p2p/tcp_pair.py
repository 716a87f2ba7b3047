"""A connected pair of real TCP streams on 127.0.0.1, for tests of the layers above TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from zikade_py.p2p.io import TcpStream


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[TcpStream, TcpStream]]:
    """``(dialer, listener side)`` of one loopback connection; both closed on exit."""
    accepted: asyncio.Queue[TcpStream] = asyncio.Queue()

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put(TcpStream(r, w))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    dialer = TcpStream(reader, writer)
    listener_side = await asyncio.wait_for(accepted.get(), 10)
    try:
        yield dialer, listener_side
    finally:
        await dialer.close()
        await listener_side.close()
        server.close()
        await server.wait_closed()
