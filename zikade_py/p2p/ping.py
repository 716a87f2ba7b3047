"""libp2p ping, ``/ipfs/ping/1.0.0`` (WIRE.md §7).

The dialer writes 32 random bytes and the listener echoes them, as often as
the dialer likes on one stream. js peers check liveness with it before adding
us to their routing table, and ``zikade ping`` measures round trips with it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.io import IncompleteReadError
from zikade_py.p2p.peer_id import PeerID

PING_PROTOCOL_ID = "/ipfs/ping/1.0.0"
PING_SIZE = 32
"""Bytes per ping, fixed by the spec."""
PING_ROUND_TIMEOUT = 10.0
"""Seconds to wait for one echo (go ``pingTimeout``)."""
PING_IDLE_TIMEOUT = 60.0
"""The handler gives up on a stream that sends nothing for this long."""
MAX_INBOUND_PING_STREAMS = 2
"""Concurrent ping streams one peer may have open to us (js ``MAX_INBOUND_STREAMS``)."""


class PingError(Exception):
    """The peer answered a ping with other bytes, or closed the stream mid-ping."""


class PingHandler:
    """Serves ``/ipfs/ping/1.0.0``: echo every 32 bytes until the peer closes its side."""

    __slots__ = ("_active", "idle_timeout")

    def __init__(self, idle_timeout: float = PING_IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._active: Counter[PeerID] = Counter()

    async def __call__(self, stream: Stream) -> None:
        """Echo pings on ``stream``; reset it if the peer already has too many ping streams."""
        peer = stream.remote_peer
        if self._active[peer] >= MAX_INBOUND_PING_STREAMS:
            await stream.reset()
            return
        self._active[peer] += 1
        try:
            reader = stream.reader
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    if await reader.at_eof():
                        break
                    payload = await reader.read_exactly(PING_SIZE)
                await stream.write(payload)
            await stream.close()
        except (IncompleteReadError, TimeoutError):
            await stream.reset()
        finally:
            self._active[peer] -= 1
            if self._active[peer] <= 0:
                del self._active[peer]


async def ping_stream(
    stream: Stream, count: int, *, timeout: float = PING_ROUND_TIMEOUT
) -> AsyncIterator[float]:
    """Ping ``count`` times on ``stream``, yielding each round trip in seconds, then half-close.

    Raises :class:`PingError` for a wrong echo and ``TimeoutError`` for a missing one.
    """
    if count < 1:
        raise ValueError("ping count must be at least 1")
    try:
        for _ in range(count):
            payload = os.urandom(PING_SIZE)
            start = time.perf_counter()
            async with asyncio.timeout(timeout):
                await stream.write(payload)
                try:
                    echo = await stream.reader.read_exactly(PING_SIZE)
                except IncompleteReadError as exc:
                    raise PingError("peer closed the ping stream") from exc
            rtt = time.perf_counter() - start
            if echo != payload:
                raise PingError("peer echoed different bytes")
            yield rtt
    except BaseException:
        await stream.reset()
        raise
    await stream.close()
