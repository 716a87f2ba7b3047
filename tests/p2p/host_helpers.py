"""What the host resource tests (test_host_limits.py, test_host_throttle.py) share:
a host running on 127.0.0.1 for the length of a block, a bounded wait, and a
stand-in connection for yamux sessions driven by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
FAST: dict[str, Any] = dict(inbound_per_ip_rate=1000.0, inbound_per_ip_burst=1000)
"""Inbound rate limits high enough that a test's many dials from 127.0.0.1 pass."""


class Sink:
    """A connection under a push-mode yamux session (frames are fed to it by hand): reads
    nothing, drops what is written, records the read pauses asked of it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        return b""

    async def write(self, data: bytes) -> None:
        return None

    async def close(self) -> None:
        return None

    def pause_reading_for(self, seconds: float) -> None:
        self.pauses.append(seconds)


@asynccontextmanager
async def running(config: HostConfig, listen: bool = True) -> AsyncIterator[Host]:
    """A started host (listening on a loopback port unless ``listen`` is false), closed
    at the end of the block."""
    host = Host(PrivateKey.generate(), config)
    await host.start([LOOPBACK] if listen else [])
    try:
        yield host
    finally:
        await host.close()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
