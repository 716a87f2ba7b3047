"""TCP listeners on 127.0.0.1 that hold a dial in the middle of its handshake.

* :class:`SilentListener` accepts connections and never writes a byte (a black hole):
  a dial to it waits for the peer's Noise answer until it is cancelled or times out.
  It reads until the dialer closes, so it can tell when each connection ended.
* :class:`Gate` forwards each accepted connection to a real host, but only once
  :meth:`Gate.open` was called: a dial through it is in progress until the test says so.
"""

from __future__ import annotations

import asyncio
import contextlib

from zikade_py.p2p.multiaddr import Multiaddr


class SilentListener:
    """Accepts TCP connections and never answers; counts them and notices when they close."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        """Accepted connections the dialer has not closed yet."""
        return self.accepted - self.closed

    @property
    def addr(self) -> Multiaddr:
        assert self._server is not None
        return Multiaddr.from_tcp("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def start(self) -> SilentListener:
        self._server = await asyncio.start_server(self._on_accept, "127.0.0.1", 0)
        return self

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.get_running_loop().create_task(self._drain(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except OSError:  # a reset is a close too
            pass
        finally:
            self.closed += 1
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class Gate:
    """A TCP forwarder to ``target`` that holds every connection until :meth:`open`."""

    def __init__(self, target: Multiaddr) -> None:
        endpoint = target.tcp_endpoint()
        assert endpoint is not None
        self._target = endpoint
        self._opened = asyncio.Event()
        self.accepted = 0
        self.closed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addr(self) -> Multiaddr:
        assert self._server is not None
        return Multiaddr.from_tcp("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def start(self) -> Gate:
        self._server = await asyncio.start_server(self._on_accept, "127.0.0.1", 0)
        return self

    def open(self) -> None:
        """Let held and future connections through."""
        self._opened.set()

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.get_running_loop().create_task(self._forward(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = bytearray()
        try:
            # hold the connection, keeping what the dialer sends, and notice if it leaves
            gate = asyncio.ensure_future(self._opened.wait())
            try:
                while not gate.done():
                    read = asyncio.ensure_future(reader.read(65536))
                    await asyncio.wait({gate, read}, return_when=asyncio.FIRST_COMPLETED)
                    if not read.done():
                        read.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await read
                        break
                    data = read.result()
                    if not data:
                        return
                    held += data
            finally:
                gate.cancel()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            up_writer.write(bytes(held))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            self.closed += 1
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()
