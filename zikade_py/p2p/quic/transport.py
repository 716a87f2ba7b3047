"""What the host calls for QUIC: listen on ``/udp/N/quic-v1``, dial, and hand over connections.

It owns the endpoints (one UDP socket per listen address; a dial-only host gets one
wildcard socket per IP family on first dial) and turns ready :class:`QuicSession` s into
the host's :class:`Connection`, so the host treats QUIC and TCP connections alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from zikade_py.p2p.connection import Connection
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import Direction
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.netif import interface_addresses
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.endpoint import Admit, QuicEndpoint
from zikade_py.p2p.quic.session import QuicConfig, QuicSession


def _version(host: str) -> int:
    return ipaddress.ip_address(host.split("%", 1)[0]).version


def session_multiaddr(addr: tuple[str, int] | tuple[str, int, int, int]) -> Multiaddr | None:
    """``/ip4|ip6/<ip>/udp/<port>/quic-v1`` of a UDP address (IPv4-mapped IPv6 unmapped)."""
    host, port = str(addr[0]).split("%", 1)[0], int(addr[1])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Multiaddr.from_quic(str(ip), port)


class QuicTransport:
    """The host's QUIC side (see the module docstring)."""

    def __init__(
        self,
        key: PrivateKey,
        config: QuicConfig,
        *,
        on_connection: Callable[[Connection], None],
        admit: Admit,
        handshake_timeout: float,
    ) -> None:
        config.validate()
        self._key = key
        self._config = config
        self._on_connection = on_connection
        self._admit = admit
        self._handshake_timeout = handshake_timeout
        self._listeners: list[QuicEndpoint] = []
        self._dialers: dict[int, QuicEndpoint] = {}
        self._closed = False

    def _endpoint(self, *, listening: bool) -> QuicEndpoint:
        return QuicEndpoint(
            self._key,
            self._config,
            on_inbound=self._inbound if listening else None,
            admit=self._admit,
            handshake_timeout=self._handshake_timeout,
        )

    async def listen(self, addr: Multiaddr) -> list[Multiaddr]:
        """Bind ``addr`` (``/ip4|ip6/<ip>/udp/<port>/quic-v1``); the concrete addresses
        (wildcards expanded to the interfaces' addresses)."""
        endpoint = addr.quic_endpoint()
        if endpoint is None:
            raise ValueError(f"cannot listen on {addr}: need /ip4|ip6/<ip>/udp/<port>/quic-v1")
        ep = self._endpoint(listening=True)
        await ep.open(*endpoint)
        self._listeners.append(ep)
        ip = ipaddress.ip_address(endpoint[0])
        port = ep.local_address[1]
        hosts = interface_addresses(ip.version) if ip.is_unspecified else [ep.local_address[0]]
        return [Multiaddr.from_quic(h, port) for h in hosts]

    def _inbound(self, session: QuicSession) -> None:
        self._on_connection(self._connection(session, Direction.INBOUND))

    async def _dialer_for(self, host: str) -> QuicEndpoint:
        """A socket of the target's IP family: a listener (so the peer sees our listen
        port) if we have one, else a wildcard socket kept for later dials."""
        version = _version(host)
        for ep in self._listeners:
            if _version(ep.local_address[0]) == version:
                local = ipaddress.ip_address(ep.local_address[0])
                target = ipaddress.ip_address(host)
                if local.is_unspecified or local.is_loopback == target.is_loopback:
                    return ep
        dialer = self._dialers.get(version)
        if dialer is None:
            dialer = self._endpoint(listening=False)
            await dialer.open("0.0.0.0" if version == 4 else "::", 0)
            self._dialers[version] = dialer
        return dialer

    async def dial(self, peer: PeerID | None, addr: Multiaddr, *, timeout: float) -> Connection:
        """A ready, authenticated connection to ``peer`` at ``addr`` (``HandshakeError``,
        ``TimeoutError`` otherwise)."""
        endpoint = addr.quic_endpoint()
        if endpoint is None:
            raise ValueError(f"not a QUIC address: {addr}")
        ep = await self._dialer_for(endpoint[0])
        session = await ep.dial(endpoint, peer, timeout=timeout)
        return self._connection(session, Direction.OUTBOUND)

    def _connection(self, session: QuicSession, direction: Direction) -> Connection:
        assert session.remote_peer is not None and session.remote_public_key is not None
        ep_local = None
        for ep in (*self._listeners, *self._dialers.values()):
            if session in ep.sessions:
                ep_local = session_multiaddr(ep.local_address)
        return Connection(
            session=session,
            remote_peer=session.remote_peer,
            remote_public_key=session.remote_public_key,
            direction=direction,
            remote_addr=session_multiaddr(session.remote_addr),
            local_addr=ep_local,
            transport="quic",
        )

    @property
    def endpoints(self) -> list[QuicEndpoint]:
        """Every open socket (listeners first)."""
        return [*self._listeners, *self._dialers.values()]

    async def close(self) -> None:
        """Close every connection and socket."""
        if self._closed:
            return
        self._closed = True
        for ep in self.endpoints:
            await ep.close()
        self._listeners.clear()
        self._dialers.clear()
