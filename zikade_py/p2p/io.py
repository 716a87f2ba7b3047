"""The byte-stream interface every layer of the host speaks, and a buffered reader.

TCP connections, Noise sessions and Yamux streams all look the same from above:
:class:`ByteStream`. Protocol code (multistream-select, length-prefixed
protobufs) reads through :class:`BufferedReader`, which can hand bytes that
arrived early back to the next layer: a pipelining initiator sends its first
application bytes together with the multistream proposal (WIRE.md §3.3).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, cast

from zikade_py.p2p.varint import MAX_VARINT_BYTES, VarintError, decode_uvarint, encode_uvarint


class ByteStream(Protocol):
    """A bidirectional byte stream: TCP, a Noise session, or a Yamux stream."""

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` only at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (may wait for flow control)."""
        ...

    async def close(self) -> None:
        """Close both directions (a Yamux stream closes its write side and waits for nothing)."""
        ...


class IncompleteReadError(EOFError):
    """The stream ended before the bytes a protocol needed arrived."""


class MessageTooLargeError(ValueError):
    """A length prefix announced more bytes than the protocol allows."""


class BufferedReader:
    """Reads exact sizes and varint-prefixed messages from a :class:`ByteStream`.

    Bytes read beyond what a call needed stay in the buffer; :meth:`take_buffer`
    hands them to whoever owns the stream next.
    """

    __slots__ = ("_buf", "_stream")

    def __init__(self, stream: ByteStream, initial: bytes = b"") -> None:
        self._stream = stream
        self._buf = bytearray(initial)

    @property
    def stream(self) -> ByteStream:
        """The underlying stream."""
        return self._stream

    async def _fill(self) -> bool:
        chunk = await self._stream.read()
        if not chunk:
            return False
        self._buf += chunk
        return True

    async def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`IncompleteReadError` at end of stream."""
        while len(self._buf) < n:
            if not await self._fill():
                raise IncompleteReadError(f"stream ended after {len(self._buf)} of {n} bytes")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_some(self, max_bytes: int = 65536) -> bytes:
        """Buffered bytes if any, otherwise one read from the stream (``b""`` at end)."""
        if not self._buf and not await self._fill():
            return b""
        out = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        return out

    async def read_uvarint(self) -> int:
        """One varint; :class:`IncompleteReadError` if the stream ends inside it."""
        while True:
            try:
                value, end = decode_uvarint(self._buf)
            except VarintError:
                if len(self._buf) >= MAX_VARINT_BYTES or (
                    self._buf and self._buf[-1] & 0x80 == 0
                ):
                    raise
                if not await self._fill():
                    raise IncompleteReadError("stream ended inside a varint") from None
                continue
            del self._buf[:end]
            return value

    async def read_length_prefixed(self, max_size: int) -> bytes:
        """A varint-length-prefixed message, refusing lengths over ``max_size`` before reading."""
        size = await self.read_uvarint()
        if size > max_size:
            raise MessageTooLargeError(f"message of {size} bytes exceeds the limit of {max_size}")
        return await self.read_exactly(size)

    async def at_eof(self) -> bool:
        """Whether the stream has ended with nothing left in the buffer."""
        return not self._buf and not await self._fill()

    def take_buffer(self) -> bytes:
        """Remove and return the bytes read ahead of what callers consumed."""
        out = bytes(self._buf)
        self._buf.clear()
        return out


def length_prefixed(data: bytes) -> bytes:
    """``data`` with its varint length in front (kad, identify, multistream)."""
    return encode_uvarint(len(data)) + data


class TcpStream:
    """A :class:`ByteStream` over an asyncio TCP connection."""

    __slots__ = ("_closed", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` from the socket; ``b""`` at EOF or after a reset."""
        try:
            return await self.reader.read(max_bytes)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        """Write and drain, so a slow peer applies backpressure to the writer."""
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        """Close the socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (no FIN handshake), for broken peers."""
        self._closed = True
        self.writer.transport.abort()

    def pause_reading_for(self, seconds: float) -> None:
        """Stop reading from the socket for ``seconds`` (the peer's sends then back up in
        TCP): how a connection that sends more than we will use is slowed down."""
        transport = cast(asyncio.Transport, self.writer.transport)
        if transport.is_closing() or not transport.is_reading():
            return  # closing, or paused already (by us or by a full read buffer)
        transport.pause_reading()
        asyncio.get_running_loop().call_later(seconds, self._resume_reading)

    def _resume_reading(self) -> None:
        transport = cast(asyncio.Transport, self.writer.transport)
        if not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)`` if the socket knows it."""
        peer = self.writer.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return str(peer[0]), int(peer[1])
        return None

    @property
    def local_address(self) -> tuple[str, int] | None:
        """Our ``(host, port)`` of this socket."""
        sock = self.writer.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            return str(sock[0]), int(sock[1])
        return None
