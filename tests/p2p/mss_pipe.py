"""An in-memory ByteStream pair for protocol tests, recording every write."""

from __future__ import annotations

import asyncio


class MemoryStream:
    """One end of an in-memory pipe; ``writes`` records each write call's bytes."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending = b""
        self._eof = False
        self.peer: MemoryStream | None = None
        self.writes: list[bytes] = []
        self.closed = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            if self._eof:
                return b""
            chunk = await self._inbox.get()
            if not chunk:
                self._eof = True
                return b""
            self._pending = chunk
        out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("write after close")
        assert self.peer is not None
        self.writes.append(bytes(data))
        if data:
            self.peer._inbox.put_nowait(bytes(data))

    async def close(self) -> None:
        """Half-close: the peer reads EOF after the bytes already written."""
        if not self.closed:
            self.closed = True
            assert self.peer is not None
            self.peer._inbox.put_nowait(b"")


def memory_pipe() -> tuple[MemoryStream, MemoryStream]:
    """Two connected ends."""
    a, b = MemoryStream(), MemoryStream()
    a.peer, b.peer = b, a
    return a, b


def feed(data: bytes, chunk: int = 0) -> MemoryStream:
    """A stream that yields ``data`` (in ``chunk``-sized pieces if > 0) and then EOF.

    Writes to it go to a sink end nobody reads.
    """
    stream, sink = memory_pipe()
    if chunk > 0:
        for i in range(0, len(data), chunk):
            stream._inbox.put_nowait(data[i : i + chunk])
    elif data:
        stream._inbox.put_nowait(data)
    stream._inbox.put_nowait(b"")
    del sink
    return stream
