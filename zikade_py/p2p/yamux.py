"""Yamux session: many flow-controlled streams over one secured connection (WIRE.md §5).

Three tasks per session: a reader that decodes frames and dispatches them without ever
blocking, a writer that owns the connection's write side (so frames never interleave and
the reader never waits on a slow peer), and an optional keep-alive pinger. Any protocol
violation closes the whole session with GoAway(protocol error); everything a peer can send
is bounded by stream windows, the stream limit and the accept backlog.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from dataclasses import dataclass

from zikade_py.p2p.io import BufferedReader, ByteStream, IncompleteReadError
from zikade_py.p2p.session_base import SessionBase
from zikade_py.p2p.yamux_errors import (
    GoAwayError,
    PingTimeoutError,
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    YamuxError,
    YamuxProtocolError,
)
from zikade_py.p2p.yamux_frame import (
    HEADER_SIZE,
    MAX_UINT32,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    decode_header,
    encode_header,
)
from zikade_py.p2p.yamux_stream import INITIAL_STREAM_WINDOW, YamuxStream

__all__ = [
    "YAMUX_PROTOCOL_ID",
    "GoAwayError",
    "PingTimeoutError",
    "SessionClosedError",
    "StreamClosedError",
    "StreamLimitError",
    "StreamResetError",
    "YamuxConfig",
    "YamuxError",
    "YamuxProtocolError",
    "YamuxSession",
    "YamuxStream",
]

YAMUX_PROTOCOL_ID = "/yamux/1.0.0"

_log = logging.getLogger(__name__)

_WRITE_BATCH = 256 * 1024  # bytes of queued frames joined into one connection write
_WRITE_BEHIND = 256 * 1024  # queued data bytes writers may leave behind without waiting
_MAX_URGENT_BACKLOG = 8192  # queued control frames; more means the peer stopped reading
_MAX_PENDING_PONGS = 32  # go-yamux PingBacklog: ping answers beyond this are dropped
_MAX_CLOSE_WAIT = 5.0  # cap on flushing GoAway and closing the connection
# flag bits as plain ints: enum operators would run on every frame
_SYN, _ACK, _FIN, _RST = int(Flag.SYN), int(Flag.ACK), int(Flag.FIN), int(Flag.RST)


class StreamLimitError(YamuxError):
    """Local: opening another stream would exceed ``max_streams``."""


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Session tunables; defaults follow go-yamux / js-libp2p-yamux (WIRE.md §5).

    ``initial_window``: receive window granted per stream (the protocol starts every stream
    at 256 KiB; more is granted with the SYN/ACK). ``max_window``: auto-tuning cap.
    ``max_streams``: open streams per session, both directions. ``max_unacked_inbound``:
    inbound streams waiting for :meth:`YamuxSession.accept_stream` (ACK is sent on accept,
    like go-yamux); further SYNs are answered with RST. ``keepalive_interval``: ping period
    (None disables; the first ping goes out at start to measure RTT), ``ping_timeout``: how
    long a ping may stay unanswered before the session is closed. ``max_frame_data``: largest
    Data frame read at all (for streams we no longer know; known streams use their window).
    """

    initial_window: int = INITIAL_STREAM_WINDOW
    max_window: int = 16 * 1024 * 1024
    max_streams: int = 1000
    max_unacked_inbound: int = 256
    keepalive_interval: float | None = 30.0
    ping_timeout: float = 10.0
    max_frame_data: int = 16 * 1024 * 1024

    def validate(self) -> None:
        """Raise ``ValueError`` for settings the protocol or this implementation cannot honour."""
        if not INITIAL_STREAM_WINDOW <= self.initial_window <= self.max_window:
            raise ValueError("need 256 KiB <= initial_window <= max_window")
        if self.max_window > MAX_UINT32:
            raise ValueError("max_window must fit in 32 bits")
        if self.max_streams < 1 or self.max_unacked_inbound < 1:
            raise ValueError("max_streams and max_unacked_inbound must be positive")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be positive or None")
        if self.ping_timeout <= 0:
            raise ValueError("ping_timeout must be positive")
        if self.max_frame_data < self.max_window:
            raise ValueError("max_frame_data must be at least max_window")


class YamuxSession(SessionBase[YamuxStream]):
    """A Yamux session over ``conn``; ``is_client`` is the TCP dialer (odd stream ids)."""

    def __init__(
        self, conn: ByteStream, *, is_client: bool, config: YamuxConfig = YamuxConfig()
    ) -> None:
        config.validate()
        super().__init__()
        self._conn = conn
        self.is_client = is_client
        self.config = config
        self._next_stream_id = 1 if is_client else 2
        self._urgent: deque[bytes] = deque()
        self._queue: deque[tuple[bytes, asyncio.Future[None] | None]] = deque()
        self._queued_bytes = 0
        self._wake_writer = asyncio.Event()
        self._pongs_queued = 0
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._next_ping_id = 1
        self._rtt = 0.0
        self._remote_goaway: int | None = None
        self._closing = False
        self._closing_event = asyncio.Event()
        self._close_reason: YamuxError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writer_task: asyncio.Task[None] | None = None
        self._finisher: asyncio.Task[None] | None = None
        self._started = False
        self._rbuf = bytearray()  # fed bytes not yet a complete frame (push mode)
        self._skip = 0  # bytes of a data frame for no known stream still to drop (push mode)
        self._rbuf_charged = 0  # bytes of _rbuf reserved from the memory budget
        self.read_pauses = 0
        """Times reading was paused because the peer sent too much we drop unread."""
        self.last_activity = time.monotonic()

    # -- properties -------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once the session started shutting down; no new streams or frames."""
        return self._closing

    @property
    def close_reason(self) -> YamuxError | None:
        """Why the session ended (protocol error, EOF, keep-alive timeout, local close)."""
        return self._close_reason

    @property
    def rtt(self) -> float:
        """Round-trip time of the last answered ping, 0.0 before the first."""
        return self._rtt

    @property
    def max_window(self) -> int:
        """Receive-window auto-tuning cap, for the streams."""
        return self.config.max_window

    @property
    def remote_goaway(self) -> int | None:
        """The error code of the peer's GoAway, or None if it sent none."""
        return self._remote_goaway

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, *, read_loop: bool = True) -> None:
        """Start the reader, writer and (if configured) keep-alive tasks.

        ``read_loop=False``: no reader task; whoever receives the connection's bytes hands
        them to :meth:`feed` (the TCP pump does, from the transport's callback).
        """
        if self._closing:
            raise SessionClosedError("session is closed")
        if self._started:
            raise YamuxError("session already started")
        self._started = True
        loop = asyncio.get_running_loop()
        # the session outlives the dial that started it: none of its tasks keep that context
        self._writer_task = loop.create_task(
            self._write_loop(), name="yamux-writer", context=contextvars.Context()
        )
        self._tasks = [self._writer_task]
        if read_loop:
            self._tasks.append(
                loop.create_task(
                    self._read_loop(), name="yamux-reader", context=contextvars.Context()
                )
            )
        if self.config.keepalive_interval is not None:
            self._tasks.append(
                loop.create_task(
                    self._keepalive_loop(), name="yamux-keepalive", context=contextvars.Context()
                )
            )

    async def close(self, *, error_code: int = GoAwayCode.NORMAL) -> None:
        """Send GoAway(``error_code``), close the connection, fail all streams, stop all tasks."""
        self._fail(SessionClosedError("session closed locally"), error_code)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session has fully shut down (connection closed, tasks finished)."""
        await self._closing_event.wait()
        assert self._finisher is not None
        await asyncio.shield(self._finisher)

    # -- streams ----------------------------------------------------------------------------

    async def open_stream(self) -> YamuxStream:
        """Open an outbound stream; the SYN goes out at once, the ACK is not awaited."""
        if self._closing:
            raise SessionClosedError("session is closed")
        if self._remote_goaway is not None:
            raise GoAwayError(self._remote_goaway)
        if len(self._streams) >= self.config.max_streams:
            raise StreamLimitError(f"{len(self._streams)} streams open (max_streams)")
        stream_id = self._next_stream_id
        if stream_id > MAX_UINT32:
            raise StreamLimitError("stream ids exhausted")
        self._next_stream_id += 2
        stream = YamuxStream(self, stream_id, is_outbound=True)
        self._streams[stream_id] = stream
        self._enqueue(stream._open_frame(Flag.SYN, self.config.initial_window), urgent=True)
        return stream

    def _on_accepted(self, stream: YamuxStream) -> None:
        """An inbound stream is ACKed only when accepted (like go-yamux): until then the
        peer sees a backlog it must not outrun."""
        if not stream.is_reset:
            self._enqueue(stream._open_frame(Flag.ACK, self.config.initial_window), urgent=True)

    async def ping(self) -> float:
        """Round-trip time in seconds; :class:`PingTimeoutError` after ``ping_timeout``."""
        if self._closing:
            raise SessionClosedError("session is closed")
        ping_id = self._next_ping_id
        self._next_ping_id = ping_id % MAX_UINT32 + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = future
        start = time.monotonic()
        self._enqueue(encode_header(FrameType.PING, Flag.SYN, 0, ping_id), urgent=True)
        try:
            async with asyncio.timeout(self.config.ping_timeout):
                await future
        except TimeoutError:
            raise PingTimeoutError(f"no ping answer within {self.config.ping_timeout}s") from None
        finally:
            self._pings.pop(ping_id, None)
        self._rtt = time.monotonic() - start
        return self._rtt

    # -- stream link (used by YamuxStream) ----------------------------------------------------

    def _enqueue(self, frame: bytes, *, urgent: bool) -> None:
        """Queue a frame without waiting; urgent frames overtake queued data frames."""
        if self._closing:
            return
        if urgent:
            if len(self._urgent) >= _MAX_URGENT_BACKLOG:
                self._fail(SessionClosedError("peer stopped reading"), GoAwayCode.INTERNAL_ERROR)
                return
            self._urgent.append(frame)
        else:
            self._queue.append((frame, None))
        self._wake_writer.set()

    async def _send_data(self, frame: bytes) -> None:
        """Queue a data frame; wait until it was written only when much is queued already
        (backpressure). A small write returns at once, so a request and the FIN after it
        leave in one connection write and the writer's task need not resume it."""
        if self._closing:
            raise SessionClosedError("session is closed")
        self._queued_bytes += len(frame)
        if self._queued_bytes <= _WRITE_BEHIND:
            self._queue.append((frame, None))
            self._wake_writer.set()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future))
        self._wake_writer.set()
        await future

    # -- tasks ------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            if not self._urgent and not self._queue:
                if self._closing:
                    return
                self._wake_writer.clear()
                await self._wake_writer.wait()
                continue
            parts = list(self._urgent)
            self._urgent.clear()
            self._pongs_queued = 0
            futures: list[asyncio.Future[None]] = []
            size = 0
            while self._queue and size < _WRITE_BATCH:
                frame, future = self._queue.popleft()
                parts.append(frame)
                size += len(frame)
                if future is not None:
                    futures.append(future)
            self._queued_bytes = max(self._queued_bytes - size, 0)
            try:
                await self._conn.write(b"".join(parts))
            except Exception as exc:  # the connection is gone, whatever the transport raised
                for future in futures:
                    if not future.done():
                        future.set_exception(SessionClosedError("connection write failed"))
                self._fail(SessionClosedError(f"connection write failed: {exc!r}"), None)
                return
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def _read_loop(self) -> None:
        reader = BufferedReader(self._conn)
        try:
            while not self._closing:
                header = decode_header(await reader.read_exactly(HEADER_SIZE))
                self.last_activity = time.monotonic()
                body = b""
                if header.type is FrameType.DATA and header.length:
                    if self._check_data(header):
                        left = header.length  # go-yamux: discarded as it is read
                        while left:
                            left -= len(await reader.read_exactly(min(left, 65536)))
                        continue
                    body = await reader.read_exactly(header.length)
                self._handle_frame(header, body)
        except IncompleteReadError:
            self._fail(SessionClosedError("connection closed by peer"), None)
        except YamuxProtocolError as exc:
            _log.debug("yamux protocol error: %s", exc)
            self._fail(exc, GoAwayCode.PROTOCOL_ERROR)
        except Exception as exc:  # a broken transport or a bug: end this session only
            _log.debug("yamux reader failed", exc_info=True)
            err = SessionClosedError(f"yamux reader failed: {exc!r}")
            self._fail(err, GoAwayCode.INTERNAL_ERROR)

    def feed(self, data: bytes | bytearray) -> None:
        """Dispatch every complete frame in the bytes received so far (push mode).

        Never blocks: frame handling only buffers and signals. A protocol violation closes
        the session exactly as the reader task would.
        """
        if self._closing:
            return
        dropped = 0
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                self.last_activity = time.monotonic()
                self._note_dropped(len(data))
                return
            dropped = self._skip
            data = data[self._skip :]
            self._skip = 0
        memory = self.memory
        if self._rbuf_charged and memory is not None:
            # the partial frame's bytes move on now; what stays is charged again below
            memory.release_memory(self._rbuf_charged)
            self._rbuf_charged = 0
        buf = self._rbuf
        buf += data
        pos = 0
        end = len(buf)
        try:
            with memoryview(buf) as view:  # one copy per payload, none per header
                while end - pos >= HEADER_SIZE:
                    header = decode_header(view[pos : pos + HEADER_SIZE])
                    body = b""
                    size = HEADER_SIZE
                    if header.type is FrameType.DATA and header.length:
                        if self._check_data(header):
                            # go-yamux discards such data as it reads it: never buffered whole
                            available = end - pos - HEADER_SIZE
                            if available < header.length:
                                self._skip = header.length - available
                                dropped += available
                                pos = end
                                break
                            dropped += header.length
                            pos += HEADER_SIZE + header.length
                            continue
                        if end - pos - HEADER_SIZE < header.length:
                            break
                        body = bytes(view[pos + HEADER_SIZE : pos + HEADER_SIZE + header.length])
                        size += header.length
                    pos += size
                    dropped += self._handle_frame(header, body)
                    if self._closing:
                        return
        except YamuxProtocolError as exc:
            _log.debug("yamux protocol error: %s", exc)
            self._fail(exc, GoAwayCode.PROTOCOL_ERROR)
            return
        except Exception as exc:  # a bug: end this session only
            _log.debug("yamux dispatch failed", exc_info=True)
            self._fail(
                SessionClosedError(f"yamux dispatch failed: {exc!r}"), GoAwayCode.INTERNAL_ERROR
            )
            return
        finally:
            if pos:
                self.last_activity = time.monotonic()
        del buf[:pos]
        if buf and memory is not None:
            # a partial frame waits here: it draws on the connection's budget like stream data
            if not memory.reserve_memory(len(buf)):
                self._fail(SessionClosedError("partial frame over the memory budget"),
                           GoAwayCode.INTERNAL_ERROR)
                return
            self._rbuf_charged = len(buf)
        if dropped:
            self._note_dropped(dropped)

    def _note_dropped(self, size: int) -> None:
        """``size`` received bytes were dropped unread: past the connection's allowance,
        reading pauses (TCP then slows the sender; go-yamux reads no faster than it drops)."""
        memory = self.memory
        if memory is None:
            return
        pause = memory.note_discarded(size, time.monotonic())
        if pause > 0:
            pause_for = getattr(self._conn, "pause_reading_for", None)
            if callable(pause_for):
                pause_for(pause)
                self.read_pauses += 1

    def feed_eof(self, reason: str = "connection closed by peer") -> None:
        """The connection ended (push mode): close the session."""
        self._fail(SessionClosedError(reason), None)

    async def _keepalive_loop(self) -> None:
        interval = self.config.keepalive_interval
        assert interval is not None
        while not self._closing:
            try:
                await self.ping()
            except PingTimeoutError:
                self._fail(SessionClosedError("keep-alive ping timed out"), None)
                return
            except SessionClosedError:
                return
            await asyncio.sleep(interval)

    # -- frame dispatch ---------------------------------------------------------------------

    def _check_data(self, header: FrameHeader) -> bool:
        """Check a Data frame's length against what its stream may still receive
        (:class:`YamuxProtocolError` past it); True if its payload is to be dropped unread:
        it is for a stream we do not know (closed or reset) and does not open one."""
        stream = self._streams.get(header.stream_id)
        dropped = False
        if stream is not None:
            limit = stream._data_limit()
        elif header.stream_id == 0:
            raise YamuxProtocolError("data frame on stream 0")
        elif header.flags & _SYN:
            limit = INITIAL_STREAM_WINDOW
        else:
            limit = self.config.max_frame_data  # late data for a closed stream: read and drop
            dropped = True
        if header.length > limit:
            raise YamuxProtocolError(
                f"data frame of {header.length} bytes on stream {header.stream_id} "
                "exceeds the receive window"
            )
        return dropped

    def _handle_frame(self, header: FrameHeader, body: bytes) -> int:
        """Dispatch one frame; returns how many payload bytes were dropped unread."""
        if header.type is FrameType.PING:
            self._on_ping(header)
            return 0
        if header.type is FrameType.GO_AWAY:
            self._remote_goaway = header.length
            return 0
        stream_id = header.stream_id
        if stream_id == 0:
            raise YamuxProtocolError(f"{header.type.name} frame on stream 0")
        stream = self._streams.get(stream_id)
        flags = header.flags
        if flags & _SYN:
            if (stream_id % 2 == 1) == self.is_client:
                raise YamuxProtocolError(f"SYN for stream {stream_id} of our own parity")
            if stream is not None:
                raise YamuxProtocolError(f"SYN for existing stream {stream_id}")
            stream = self._on_inbound_syn(stream_id)
        if stream is None:
            return len(body)  # a late frame for a stream already closed or reset: ignore
        if flags & _ACK:
            stream._on_ack()
        dropped = 0
        if header.type is FrameType.DATA:
            dropped = stream._on_data(body)
        elif not flags & _RST:  # go-yamux v5 puts an error code in an RST's length
            stream._on_window_update(header.length)
        if flags & _FIN:
            stream._on_remote_fin()
        if flags & _RST:
            stream._on_remote_reset()
        return dropped

    def _on_inbound_syn(self, stream_id: int) -> YamuxStream | None:
        if (
            len(self._streams) >= self.config.max_streams
            or len(self._backlog) >= self.config.max_unacked_inbound
        ):
            rst = encode_header(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)
            self._enqueue(rst, urgent=True)
            return None
        stream = YamuxStream(self, stream_id, is_outbound=False)
        self._admit(stream)
        return stream

    def _on_ping(self, header: FrameHeader) -> None:
        if header.flags & _SYN:
            if self._pongs_queued >= _MAX_PENDING_PONGS:
                return
            self._pongs_queued += 1
            self._enqueue(encode_header(FrameType.PING, Flag.ACK, 0, header.length), urgent=True)
        elif header.flags & _ACK:
            future = self._pings.get(header.length)
            if future is not None and not future.done():
                future.set_result(None)

    # -- shutdown ---------------------------------------------------------------------------

    def _fail(self, reason: YamuxError, goaway_code: int | None) -> None:
        """Start shutting down (idempotent): fail everything now, close the connection later."""
        if self._closing:
            return
        self._closing = True
        self._close_reason = reason
        if self._rbuf_charged and self.memory is not None:
            self.memory.release_memory(self._rbuf_charged)
        self._rbuf_charged = 0
        if goaway_code == GoAwayCode.NORMAL and self._writer_task is not None:
            # a local close: what writers already handed over still goes out, then GoAway
            self._queue.append((encode_header(FrameType.GO_AWAY, 0, 0, goaway_code), None))
        else:
            for _, future in self._queue:
                if future is not None and not future.done():
                    future.set_exception(SessionClosedError("session closed"))
            self._queue.clear()
            self._urgent.clear()
            if goaway_code is not None and self._writer_task is not None:
                self._urgent.append(encode_header(FrameType.GO_AWAY, 0, 0, goaway_code))
        self._wake_writer.set()
        self._end_streams()
        for future in self._pings.values():
            if not future.done():
                future.set_exception(SessionClosedError("session closed"))
        self._finisher = asyncio.get_running_loop().create_task(
            self._finish(), name="yamux-close", context=contextvars.Context()
        )
        self._closing_event.set()

    async def _finish(self) -> None:
        flush_timeout = min(self.config.ping_timeout, _MAX_CLOSE_WAIT)
        writer = self._writer_task
        if writer is not None and not writer.done():
            await asyncio.wait({writer}, timeout=flush_timeout)
        try:
            async with asyncio.timeout(flush_timeout):
                await self._conn.close()
        except TimeoutError:
            abort = getattr(self._conn, "abort", None)
            if callable(abort):
                abort()
        except Exception:  # closing a broken transport may fail; it is closed either way
            _log.debug("closing the yamux connection failed", exc_info=True)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # A cancelled task keeps its CancelledError, whose traceback holds the task's frame
        # and so this session: without these references the whole connection (session,
        # Noise, transport, tasks: ~60 objects) waited for a full GC cycle after closing.
        self._tasks = []
        self._writer_task = None
