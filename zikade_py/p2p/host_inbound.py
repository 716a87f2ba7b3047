"""Inbound side of the host: listening on TCP and QUIC addresses, and the checks a new
inbound connection passes before its handshake (rate per IP group, room, a handshake
slot) and after it (admission as any connection)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from zikade_py.p2p.connection import Connection, upgrade_inbound
from zikade_py.p2p.connmgr import ConnectionLimitError
from zikade_py.p2p.host_conns import HostConnections
from zikade_py.p2p.host_parts import log
from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.netif import interface_addresses
from zikade_py.p2p.rcmgr import ResourceLimitError


class HostListening(HostConnections):
    """Listens, accepts and upgrades inbound connections."""

    @property
    def _pending_handshakes(self) -> int:
        return self.resources.stats()["handshakes"]

    async def _listen(self, addr: Multiaddr) -> None:
        if addr.quic_endpoint() is not None:
            for bound in await self._quic.listen(addr):
                if bound not in self._listen_addrs:
                    self._listen_addrs.append(bound)
            return
        endpoint = addr.tcp_endpoint()
        ip = addr.ip_address()
        if endpoint is None or ip is None:
            raise ValueError(
                f"cannot listen on {addr}: need /ip4|ip6/<ip>/tcp/<port> or .../udp/<port>/quic-v1"
            )
        server = await asyncio.start_server(self._on_accept, str(ip), endpoint[1])
        self._servers.append(server)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            hosts = interface_addresses(ip.version) if ip.is_unspecified else [host]
            for h in hosts:
                bound = Multiaddr.from_tcp(h, port)
                if bound not in self._listen_addrs:
                    self._listen_addrs.append(bound)

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp = TcpStream(reader, writer)
        remote = tcp.remote_address
        if self._closing or remote is None:
            tcp.abort()
            return
        group = self.resources.group(remote[0])
        if not self._rate.allow(group or remote[0], time.monotonic()):
            log.debug("inbound rate limit for %s", remote[0])
            tcp.abort()
            return
        if not self.connmgr.has_room() and self.connmgr.trim_candidate() is None:
            tcp.abort()  # full of held or busy connections: spare us the handshake
            return
        try:
            handshake = self.resources.open_handshake(remote[0])
        except ResourceLimitError as exc:
            log.debug("inbound connection from %s refused: %s", remote[0], exc)
            tcp.abort()
            return
        try:
            self._spawn(self._upgrade_inbound(tcp, handshake.release), name="upgrade-inbound")
        except BaseException:
            handshake.release()
            tcp.abort()
            raise

    def _admit_quic(self, ip: str) -> Callable[[], None] | None:
        """The TCP accept checks for a new inbound QUIC connection from ``ip``: rate, room,
        a handshake slot (whose release is returned), else None (its Initial is dropped)."""
        if self._closing:
            return None
        group = self.resources.group(ip)
        if not self._rate.allow(group or ip, time.monotonic()):
            return None
        if not self.connmgr.has_room() and self.connmgr.trim_candidate() is None:
            return None
        try:
            return self.resources.open_handshake(ip).release
        except ResourceLimitError as exc:
            log.debug("inbound QUIC connection from %s refused: %s", ip, exc)
            return None

    def _on_quic_connection(self, conn: Connection) -> None:
        self._spawn(self._add_inbound(conn), name="quic-inbound")

    async def _add_inbound(self, conn: Connection) -> None:
        try:
            await self._add_connection(conn)
        except ConnectionLimitError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)

    async def _upgrade_inbound(self, tcp: TcpStream, done: Callable[[], None]) -> None:
        try:
            conn = await upgrade_inbound(
                tcp, self._key, yamux_config=self._yamux, timeout=self.config.handshake_timeout
            )
        except Exception as exc:  # whatever a broken peer caused; the socket is closed
            log.debug("inbound upgrade from %s failed: %r", tcp.remote_address, exc)
            return
        finally:
            done()
        try:
            await self._add_connection(conn)
        except ConnectionLimitError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)
