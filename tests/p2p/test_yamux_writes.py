"""How yamux frames reach the connection: small writes do not wait for the writer task, so a
request and its FIN leave in one connection write; nothing handed over is lost on close."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.p2p.yamux import YamuxConfig, YamuxSession
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, decode_header

from .test_yamux import PipeEnd, memory_pipe, read_all, serve

pytestmark = pytest.mark.timeout(30)

NO_KEEPALIVE = YamuxConfig(keepalive_interval=None)


class CountingPipe:
    """A pipe end that records every write made to it."""

    def __init__(self, inner: PipeEnd) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


def frames(data: bytes) -> list[tuple[FrameType, Flag, int]]:
    out = []
    while data:
        header = decode_header(data[:HEADER_SIZE])
        body = header.length if header.type is FrameType.DATA else 0
        out.append((header.type, header.flags, body))
        data = data[HEADER_SIZE + body :]
    return out


async def test_request_and_fin_leave_in_one_write() -> None:
    a, b = memory_pipe()
    counted = CountingPipe(a)
    client = YamuxSession(counted, is_client=True, config=NO_KEEPALIVE)
    server = YamuxSession(b, is_client=False, config=NO_KEEPALIVE)
    await client.start()
    await server.start()
    try:
        stream = await client.open_stream()
        await stream.write(b"request")
        await stream.close()
        inbound = await server.accept_stream()
        assert await read_all(inbound) == b"request"
        assert len(counted.writes) == 1, [frames(w) for w in counted.writes]
        kinds = frames(counted.writes[0])
        assert kinds[0][0] is FrameType.WINDOW_UPDATE and kinds[0][1] & Flag.SYN
        assert kinds[1] == (FrameType.DATA, Flag(0), len(b"request"))
        assert kinds[2][0] is FrameType.WINDOW_UPDATE and kinds[2][1] & Flag.FIN
    finally:
        await client.close()
        await server.close()


async def test_data_handed_over_before_a_local_close_is_delivered() -> None:
    a, b = memory_pipe()
    client = YamuxSession(a, is_client=True, config=NO_KEEPALIVE)
    server = YamuxSession(b, is_client=False, config=NO_KEEPALIVE)
    await client.start()
    await server.start()
    received: list[bytes] = []

    async def collect(stream: object) -> None:
        received.append(await read_all(stream))  # type: ignore[arg-type]

    serving = asyncio.create_task(serve(server, collect))
    try:
        payloads = [bytes([i]) * (1000 * (i + 1)) for i in range(5)]
        for payload in payloads:
            stream = await client.open_stream()
            await stream.write(payload)
            await stream.close()
        await client.close()  # at once: everything written above must still arrive
        async with asyncio.timeout(10):
            while len(received) < len(payloads):
                await asyncio.sleep(0.005)
        assert sorted(received, key=len) == payloads
    finally:
        await server.close()
        await serving
