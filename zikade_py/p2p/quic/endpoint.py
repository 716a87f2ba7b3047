"""One UDP socket carrying every QUIC connection of one local address, both directions.

A node that dials from the port it listens on is reachable through the mappings its
dials create (NATs, firewalls) and spends one socket per address, not one per peer;
aioquic's ready-made ``connect()`` opens a socket per dial, so the routing is ours:
datagrams go to a session by destination connection id (every id a session issued is
routed), a long-header Initial for an unknown id from a big enough datagram starts an
inbound connection if the host admits it, an unsupported version gets a Version
Negotiation, and everything else is dropped after a header parse (garbage costs little).

The socket is read directly (``loop.add_reader``), up to :data:`READ_BATCH` datagrams
per wake-up, and each connection that received some is processed and transmits once
after the batch: asyncio's datagram transport hands over one datagram per loop
iteration, and a connection then answers every datagram on its own (an ACK-only packet
and a timer re-arm per datagram received), which doubled the CPU per MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Final

from aioquic._buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.hooks import Libp2pQuicConnection, check_internals
from zikade_py.p2p.quic.session import HandshakeError, QuicConfig, QuicSession, Transmitter
from zikade_py.p2p.tls import ALPN, make_certificate

log = logging.getLogger(__name__)

READ_BATCH: Final = 64
"""Datagrams read per socket wake-up before the connections concerned are processed."""

CID_LENGTH: Final = 8
"""Length of the connection ids we issue (how short headers are parsed)."""

SUPPORTED_VERSIONS: Final = [QuicProtocolVersion.VERSION_1]
"""``/quic-v1`` is RFC 9000 QUIC version 1 only."""

Admit = Callable[[str], Callable[[], None] | None]
"""Host admission for a new inbound connection from an IP: a release callback (called
when its handshake ends either way), or None to drop it."""


class QuicEndpoint(Transmitter):
    """A UDP socket with its QUIC connections (see the module docstring)."""

    def __init__(
        self,
        key: PrivateKey,
        config: QuicConfig,
        *,
        on_inbound: Callable[[QuicSession], None] | None = None,
        admit: Admit | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        check_internals()
        config.validate()
        self._config = config
        self._key = key
        self._cert = make_certificate(key)
        self._on_inbound = on_inbound
        self._admit = admit
        self._handshake_timeout = handshake_timeout
        self._sock: socket.socket | None = None
        self._dirty: dict[QuicSession, None] = {}  # fed this batch, in arrival order
        self._routes: dict[bytes, QuicSession] = {}
        self._sessions: set[QuicSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._retry = QuicRetryTokenHandler()
        self._handshaking = 0
        self.dropped = 0
        """Datagrams dropped without a session (garbage, unknown ids, refused Initials)."""
        self.retries = 0
        """Retry packets sent (address validation under load)."""

    # -- socket -----------------------------------------------------------------------------

    async def open(self, host: str, port: int) -> None:
        """Bind the UDP socket (port 0 picks one) and start reading it."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
            asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound ``(ip, port)``."""
        assert self._sock is not None, "endpoint not open"
        sockname = self._sock.getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def sessions(self) -> frozenset[QuicSession]:
        """Live connections on this socket."""
        return frozenset(self._sessions)

    def _on_readable(self) -> None:
        """Read what the socket holds (bounded), then let each connection concerned act."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error for something we sent: timers handle it
                log.debug("quic endpoint: %r", exc)
                continue
            self._receive(data, addr)
        self._flush()

    # -- Transmitter ------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: NetworkAddress) -> None:
        """Send one datagram (nothing once the socket is closed; a full socket buffer
        drops it, and QUIC's loss recovery sends it again)."""
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            log.debug("quic endpoint: sendto %s: %r", addr, exc)

    def route(self, cid: bytes, session: QuicSession) -> None:
        """Deliver datagrams for ``cid`` to ``session``."""
        if not session.is_closed:
            self._routes[cid] = session

    def unroute(self, cid: bytes) -> None:
        """Forget ``cid``."""
        self._routes.pop(cid, None)

    def forget(self, session: QuicSession) -> None:
        """``session`` ended: drop its routes."""
        self._sessions.discard(session)
        for cid in [c for c, s in self._routes.items() if s is session]:
            del self._routes[cid]

    # -- receiving --------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        """Route one datagram and let its connection act at once (never raises)."""
        self._receive(data, addr)
        self._flush()

    def _receive(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            self._datagram(data, addr)
        except Exception:  # a bug or an aioquic surprise: this datagram is lost, not the loop
            self.dropped += 1
            log.exception("quic: datagram from %s dropped", addr)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for session in dirty:
            try:
                session.flush()
            except Exception:
                log.exception("quic: processing %r failed", session)

    def _datagram(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            self.dropped += 1
            return
        session = self._routes.get(header.destination_cid)
        if session is not None:
            session.feed(data, addr)
            self._dirty[session] = None
            return
        if (
            header.version is not None
            and header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version not in SUPPORTED_VERSIONS
        ):
            if len(data) >= SMALLEST_MAX_DATAGRAM_SIZE:  # no amplification for small ones
                self.sendto(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=list(SUPPORTED_VERSIONS),
                    ),
                    addr,
                )
            self.dropped += 1
            return
        if (
            header.packet_type != QuicPacketType.INITIAL
            or len(data) < SMALLEST_MAX_DATAGRAM_SIZE
            or self._on_inbound is None
            or self._closed
        ):
            self.dropped += 1
            return
        now = asyncio.get_running_loop().time()
        original_dcid, retry_scid = header.destination_cid, None
        if header.token:
            # ours are Retry tokens only; a client may also bring a NEW_TOKEN token another
            # server gave it (quinn keeps them per server name, and every libp2p server
            # has the same one): RFC 9000 §8.1.3, such a token is as good as none
            try:
                original_dcid = self._retry.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
                retry_scid = header.destination_cid
            except ValueError:
                pass
        if retry_scid is None and self._handshaking >= self._config.retry_above:
            scid = os.urandom(CID_LENGTH)
            token = self._retry.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=scid,
                now=now,
            )
            self.sendto(
                encode_quic_retry(
                    version=header.version or QuicProtocolVersion.VERSION_1,
                    source_cid=scid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid,
                    retry_token=token,
                ),
                addr,
            )
            self.retries += 1
            return
        release = self._admit(str(addr[0])) if self._admit is not None else _nothing
        if release is None:
            self.dropped += 1
            return
        quic = Libp2pQuicConnection(
            configuration=self._configuration(is_client=False),
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_scid,
            stream_window=self._config.max_stream_data,
        )
        session = QuicSession(self, quic, addr, config=self._config)
        self._sessions.add(session)
        self.route(header.destination_cid, session)
        self.route(quic.host_cid, session)
        session.feed(data, addr)
        self._dirty[session] = None
        self._handshaking += 1  # until _await_inbound ends, either way
        self._spawn(self._await_inbound(session, release))

    async def _await_inbound(self, session: QuicSession, release: Callable[[], None]) -> None:
        try:
            async with asyncio.timeout(self._handshake_timeout):
                await session.wait_ready()
        except (HandshakeError, TimeoutError) as exc:
            log.debug("inbound QUIC handshake from %s failed: %r", session.remote_addr, exc)
            session.abort("handshake failed")
            return
        finally:
            self._handshaking -= 1
            release()
        if self._on_inbound is None or self._closed:
            await session.close()
            return
        self._on_inbound(session)

    # -- dialing ----------------------------------------------------------------------------

    async def dial(
        self, addr: tuple[str, int], expected_peer: PeerID | None, *, timeout: float
    ) -> QuicSession:
        """A ready connection to ``addr`` whose certificate proves ``expected_peer`` (any
        peer if None). Raises :class:`HandshakeError` (its ``__cause__`` a
        ``CertificateError`` when the certificate was refused) or ``TimeoutError``; a
        failed or cancelled dial's connection is closed."""
        if self._closed or self._sock is None:
            raise HandshakeError("endpoint closed")
        quic = Libp2pQuicConnection(
            configuration=self._configuration(is_client=True),
            expected_peer=expected_peer,
            stream_window=self._config.max_stream_data,
        )
        loop = asyncio.get_running_loop()
        quic.connect(addr, now=loop.time())
        session = QuicSession(self, quic, addr, config=self._config)
        self._sessions.add(session)
        self.route(quic.host_cid, session)
        session.start()
        try:
            async with asyncio.timeout(timeout):
                await session.wait_ready()
        except BaseException:
            session.abort("dial abandoned")
            raise
        return session

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            certificate=self._cert.certificate,
            private_key=self._cert.private_key,
            verify_mode=ssl.CERT_NONE,  # the libp2p check in hooks.py replaces CA checks
            idle_timeout=self._config.idle_timeout,
            max_data=self._config.max_data,
            max_stream_data=self._config.max_stream_data,
            supported_versions=list(SUPPORTED_VERSIONS),
            connection_id_length=CID_LENGTH,
        )

    # -- the end ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every connection (CONNECTION_CLOSE is sent) and the socket."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self._sessions):
            with contextlib.suppress(Exception):
                await session.close()
        self._routes.clear()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


def _nothing() -> None:
    """Release callback when there is no admission control."""
