"""Hypothesis fuzzing of the yamux header decoder and of a session fed arbitrary bytes.

Whatever a peer sends, the session must end (or keep running) with only YamuxError
subclasses, must never hang, must leave no task behind, and must only ever write
well-formed frames — in particular never a Ping ACK nobody asked for.
"""

from __future__ import annotations

import asyncio
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zikade_py.p2p.yamux import (
    SessionClosedError,
    YamuxConfig,
    YamuxError,
    YamuxSession,
    YamuxStream,
)
from zikade_py.p2p.yamux_errors import YamuxProtocolError
from zikade_py.p2p.yamux_frame import HEADER_SIZE, Flag, FrameType, decode_header, encode_header

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_header_decoder_round_trips_or_rejects(raw: bytes) -> None:
    try:
        header = decode_header(raw)
    except YamuxProtocolError:
        assert raw[0] != 0 or raw[1] > 3
        return
    assert header.encode() == raw


@FUZZ
@given(st.binary(max_size=40).filter(lambda b: len(b) != HEADER_SIZE))
def test_header_decoder_rejects_wrong_sizes(raw: bytes) -> None:
    try:
        decode_header(raw)
    except YamuxProtocolError:
        return
    raise AssertionError("a header of the wrong size was accepted")


class ScriptedStream:
    """Plays back chunks, then EOF or silence; records what the session writes."""

    def __init__(self, chunks: list[bytes], *, eof: bool) -> None:
        self._chunks = list(chunks)
        self._eof = eof
        self._closed = asyncio.Event()
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        while self._chunks:
            chunk = self._chunks.pop(0)
            if len(chunk) > max_bytes:
                self._chunks.insert(0, chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            if chunk:
                await asyncio.sleep(0)
                return chunk
        if not self._eof:
            await self._closed.wait()
        return b""

    async def write(self, data: bytes) -> None:
        if self._closed.is_set():
            raise ConnectionResetError("closed")
        self.written += data

    async def close(self) -> None:
        self._closed.set()


def check_written(written: bytes, sent_ping_syns: set[int]) -> None:
    """Every frame we wrote decodes, and every Ping ACK answers a Ping SYN the peer sent."""
    pos = 0
    while pos < len(written):
        header = decode_header(written[pos : pos + HEADER_SIZE])
        pos += HEADER_SIZE
        if header.type is FrameType.DATA:
            pos += header.length
        if header.type is FrameType.PING and header.has(Flag.ACK):
            assert header.flags == Flag.ACK
            assert header.length in sent_ping_syns, "unsolicited ping ACK"
    assert pos == len(written)


def ping_syns(data: bytes) -> set[int]:
    """Opaque values of Ping SYN headers anywhere in ``data`` (a superset is fine)."""
    found = set()
    for i in range(len(data) - HEADER_SIZE + 1):
        if data[i] == 0 and data[i + 1] == FrameType.PING:
            flags, _, value = struct.unpack(">HII", data[i + 2 : i + HEADER_SIZE])
            if flags & Flag.SYN:
                found.add(value)
    return found


async def _handle(stream: YamuxStream) -> None:
    try:
        data = await stream.read(100)
        await stream.write(data[:10] + b"reply")
        if data[:1] == b"r":
            await stream.reset()
        else:
            await stream.close()
    except YamuxError:
        pass


async def feed_session(chunks: list[bytes], *, is_client: bool, eof: bool) -> None:
    conn = ScriptedStream(chunks, eof=eof)
    session = YamuxSession(
        conn,
        is_client=is_client,
        config=YamuxConfig(keepalive_interval=None, max_streams=8, max_unacked_inbound=4),
    )
    await session.start()
    handlers: list[asyncio.Task[None]] = []

    async def acceptor() -> None:
        while True:
            try:
                stream = await session.accept_stream()
            except SessionClosedError:
                return
            handlers.append(asyncio.create_task(_handle(stream)))

    accept_task = asyncio.create_task(acceptor())
    async with asyncio.timeout(10):
        if eof:
            await session.wait_closed()
        else:
            for _ in range(50):  # let the session chew on the script
                await asyncio.sleep(0)
            await session.close()
        await accept_task
        await asyncio.gather(*handlers)
    assert session.is_closed
    assert session.close_reason is None or isinstance(session.close_reason, YamuxError)
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("yamux") and not t.done()]
    assert leftover == []
    check_written(bytes(conn.written), ping_syns(b"".join(chunks)))


@FUZZ
@given(
    chunks=st.lists(st.binary(max_size=64), max_size=8),
    is_client=st.booleans(),
    eof=st.booleans(),
)
def test_session_fed_arbitrary_bytes(chunks: list[bytes], is_client: bool, eof: bool) -> None:
    asyncio.run(feed_session(chunks, is_client=is_client, eof=eof))


# Mostly well-formed frames get much deeper into the session than random bytes.
@st.composite
def frames(draw: st.DrawFn) -> bytes:
    frame_type = draw(st.sampled_from(FrameType))
    flags = draw(st.sampled_from([0, 1, 2, 4, 8, 3, 5, 9, 6, 12, 15, 0x10]))
    stream_id = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 2**32 - 1]))
    body = draw(st.binary(max_size=8)) if frame_type is FrameType.DATA else b""
    length = draw(st.sampled_from([len(body), len(body), 0, 5, 2**18, 2**18 + 1, 2**32 - 1]))
    return encode_header(frame_type, flags, stream_id, length) + body


@FUZZ
@given(
    script=st.lists(frames(), max_size=20),
    split=st.integers(min_value=1, max_value=40),
    is_client=st.booleans(),
    eof=st.booleans(),
)
def test_session_fed_frame_sequences(
    script: list[bytes], split: int, is_client: bool, eof: bool
) -> None:
    data = b"".join(script)
    chunks = [data[i : i + split] for i in range(0, len(data), split)]
    asyncio.run(feed_session(chunks, is_client=is_client, eof=eof))
