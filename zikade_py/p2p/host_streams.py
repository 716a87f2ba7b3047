"""Inbound streams of the host: negotiate the protocol, run its handler, then close the
stream fully; a connection whose streams keep failing negotiation is closed."""

from __future__ import annotations

import asyncio
import contextlib
import time

from zikade_py.p2p.connection import Connection, MuxedStream, Stream
from zikade_py.p2p.host_parts import HostParts, log
from zikade_py.p2p.io import BufferedReader
from zikade_py.p2p.mss import handle_negotiation
from zikade_py.p2p.rcmgr import InboundStream, ResourceLimitError


class HostStreams(HostParts):
    """Runs each inbound stream a connection accepted (see ``HostConnections._serve``)."""

    async def _handle_stream(
        self, conn: Connection, inner: MuxedStream, slot: InboundStream
    ) -> None:
        """Negotiate, run the handler, then close the stream fully (see ``_finish_stream``);
        the stream's slot is given back on every path."""
        try:
            await self._run_stream(conn, inner, slot)
        finally:
            slot.release()
            state = self._states.get(conn)
            if state is not None:
                state.slot_freed.set()

    async def _run_stream(self, conn: Connection, inner: MuxedStream, slot: InboundStream) -> None:
        try:
            async with asyncio.timeout(self.config.negotiation_timeout):
                protocol, reader = await handle_negotiation(
                    inner, self._handlers.__contains__, reader=BufferedReader(inner)
                )
            slot.set_protocol(protocol)
        except Exception as exc:
            log.debug("stream negotiation with %s failed: %r", conn.remote_peer, exc)
            with contextlib.suppress(Exception):
                await inner.reset()
            if not isinstance(exc, ResourceLimitError):
                self._note_bad_stream(conn)
            return
        handler = self._handlers.get(protocol)
        stream = Stream(inner, reader, protocol, conn)
        if handler is None:
            await stream.reset()
            return
        try:
            await handler(stream)
        except Exception as exc:
            log.debug("%s handler for %s failed: %r", protocol, conn.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()
        conn.lingering += 1
        try:
            await self._finish_stream(inner)
        finally:
            conn.lingering -= 1

    def _note_bad_stream(self, conn: Connection) -> None:
        """A stream the peer opened failed its negotiation: past the connection's allowance
        (``bad_streams_per_connection``) the connection is closed."""
        state = self._states.get(conn)
        if state is None or state.scope.note_bad_stream(time.monotonic()):
            return
        log.debug("closing the connection of %s: too many failed streams", conn.remote_peer)
        self._spawn(conn.close(), name="close-misbehaving")

    async def _finish_stream(self, inner: MuxedStream) -> None:
        """After the handler: nothing more is read, so incoming data is dropped; the peer gets
        ``stream_close_timeout`` to send its FIN, then the stream is reset."""
        inner.discard_incoming()
        if inner.is_fully_closed:
            return
        try:
            async with asyncio.timeout(self.config.stream_close_timeout):
                await inner.wait_remote_closed()
        except TimeoutError:
            with contextlib.suppress(Exception):
                await inner.reset()
