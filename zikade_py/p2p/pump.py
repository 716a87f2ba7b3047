"""Receive path of an upgraded TCP connection without a reader task.

After the upgrade, the bytes of a connection always take the same way: Noise frames are
decrypted and the plaintext is yamux frames. :class:`NoisePump` does both synchronously in
the transport's ``data_received`` callback, so a frame reaches its stream in the same event
loop step it arrived in: no reader task to wake, no awaits per layer. That is one task
switch and a stack of coroutine calls less per received segment, on every request.

Writes still go through the ``StreamWriter`` (and the yamux writer task): the pump forwards
the transport's flow-control and close callbacks to the original ``StreamReaderProtocol``,
which ``StreamWriter.drain`` and ``wait_closed`` rely on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.noise import NoiseSession
from zikade_py.p2p.yamux import YamuxSession

log = logging.getLogger(__name__)


class NoisePump(asyncio.Protocol):
    """Decrypts Noise transport frames and feeds the plaintext to a yamux session.

    ``expect`` are plaintext bytes that must come first (the listener's multistream header
    and ``/yamux/1.0.0`` echo when the dialer did not wait for them); anything else there
    closes the session, as a refused muxer would.
    """

    def __init__(
        self,
        inner: asyncio.BaseProtocol,
        noise: NoiseSession,
        session: YamuxSession,
        expect: bytes = b"",
    ) -> None:
        self._inner = inner
        self._recv = noise.recv_cipher
        self._session = session
        self._cipher = bytearray()
        self._expect = expect
        self._pending_plain = bytearray()

    def feed_plaintext(self, data: bytes) -> None:
        """Plaintext that was decrypted before the pump took over."""
        if not data:
            return
        if self._expect:
            self._pending_plain += data
            if len(self._pending_plain) < len(self._expect):
                if not self._expect.startswith(bytes(self._pending_plain)):
                    self._refused()
                return
            if not self._pending_plain.startswith(self._expect):
                self._refused()
                return
            data = bytes(self._pending_plain[len(self._expect) :])
            self._expect = b""
            self._pending_plain.clear()
        self._session.feed(data)

    def _refused(self) -> None:
        self._expect = b""
        self._session.feed_eof("the listener did not confirm /yamux/1.0.0")

    def data_received(self, data: bytes) -> None:
        """Decrypt every complete Noise frame and hand the plaintext on."""
        if self._session.is_closed:
            return
        buf = self._cipher
        buf += data
        pos = 0
        end = len(buf)
        plain: list[bytes] = []
        error: str | None = None
        with memoryview(buf) as view:  # frames are decrypted in place, not copied out first
            while end - pos >= 2:
                size = (buf[pos] << 8) | buf[pos + 1]
                if end - pos - 2 < size:
                    break
                try:
                    plain.append(self._recv.decrypt_with_ad(b"", view[pos + 2 : pos + 2 + size]))
                except proto.NoiseProtocolError as exc:
                    error = str(exc)  # not the exception: its traceback holds the slice
                    break
                pos += 2 + size
        if error is not None:
            log.debug("noise frame failed to decrypt: %s", error)
            buf.clear()
            self._session.feed_eof(f"noise: {error}")
            return
        if pos:
            del buf[:pos]
        if plain:
            self.feed_plaintext(plain[0] if len(plain) == 1 else b"".join(plain))

    def eof_received(self) -> bool | None:
        """The peer closed its side: the session ends (it closes the socket)."""
        self._session.feed_eof()
        return self._inner.eof_received() if isinstance(self._inner, asyncio.Protocol) else None

    def connection_lost(self, exc: Exception | None) -> None:
        """Forwarded, so ``StreamWriter.wait_closed`` and ``drain`` see it."""
        self._session.feed_eof()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Forwarded: ``StreamWriter.drain`` waits on the original protocol."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Forwarded, see :meth:`pause_writing`."""
        self._inner.resume_writing()


def can_pump(tcp: TcpStream) -> bool:
    """Whether :func:`install_pump` can take over ``tcp`` (a CPython ``StreamReader`` whose
    buffer it can drain, on a transport that can switch protocols)."""
    reader = tcp.reader
    return (
        isinstance(getattr(reader, "_buffer", None), bytearray)
        and isinstance(getattr(reader, "_paused", None), bool)
        and hasattr(tcp.writer.transport, "set_protocol")
    )


def install_pump(
    tcp: TcpStream, noise: NoiseSession, session: YamuxSession, plaintext: bytes, expect: bytes
) -> None:
    """Take over ``tcp``'s receive path for ``session`` (started with ``read_loop=False``);
    only where :func:`can_pump` said so.

    ``plaintext``: bytes already decrypted but not consumed; then the ciphertext still
    buffered in the handshake's reader and in the ``StreamReader``; then the transport.
    """
    reader = tcp.reader
    transport = cast(asyncio.Transport, tcp.writer.transport)
    stream_buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    pump = NoisePump(transport.get_protocol(), noise, session, expect)
    cipher = noise.take_ciphertext() + bytes(stream_buffer)
    stream_buffer.clear()
    at_eof = reader.at_eof() or reader.exception() is not None or transport.is_closing()
    transport.set_protocol(pump)
    if reader._paused:  # type: ignore[attr-defined]
        reader._paused = False  # type: ignore[attr-defined]
        transport.resume_reading()
    pump.feed_plaintext(plaintext)
    if cipher:
        pump.data_received(cipher)
    if at_eof:
        session.feed_eof()
