"""Hosts over QUIC on 127.0.0.1: dial preference, fallback to TCP, identify and ping over
QUIC, certificate checks through the host's dial path, limits and clean shutdown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import PeerDisconnected
from zikade_py.p2p.host import DialError, Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.ping import PING_PROTOCOL_ID
from zikade_py.p2p.quic.session import HandshakeError
from zikade_py.p2p.tls import PeerIDMismatchError

QUIC = Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")
TCP = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
CONFIG = HostConfig(inbound_per_ip_rate=1000.0, inbound_per_ip_burst=1000)


async def until(cond: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.01)


@pytest.fixture
async def hosts() -> AsyncIterator[tuple[Host, Host]]:
    a, b = Host(PrivateKey.generate(), CONFIG), Host(PrivateKey.generate(), CONFIG)
    await a.start([QUIC, TCP])
    await b.start([QUIC, TCP])
    yield a, b
    await a.close()
    await b.close()


def quic_addrs(host: Host) -> list[Multiaddr]:
    return [a for a in host.listen_addrs if a.quic_endpoint() is not None]


def tcp_addrs(host: Host) -> list[Multiaddr]:
    return [a for a in host.listen_addrs if a.tcp_endpoint() is not None]


async def test_listen_addrs_name_both_transports(hosts: tuple[Host, Host]) -> None:
    a, _ = hosts
    assert len(quic_addrs(a)) == 1 and len(tcp_addrs(a)) == 1
    assert str(quic_addrs(a)[0]).endswith("/quic-v1")


async def test_quic_is_preferred_when_both_are_offered(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    conn = await b.connect(a.peer_id, tcp_addrs(a) + quic_addrs(a))  # TCP listed first
    assert conn.transport == "quic"
    assert conn.remote_addr == quic_addrs(a)[0]
    rtts = await b.ping(a.peer_id, 3)
    assert len(rtts) == 3
    info = await b.identify_peer(a.peer_id)
    assert PING_PROTOCOL_ID in info.protocols
    assert set(quic_addrs(a) + tcp_addrs(a)) <= set(info.listen_addrs)
    # the listener side sees an inbound QUIC connection from b's listening socket
    await until(lambda: a.connmgr.get(b.peer_id) is not None)
    inbound = a.connmgr.get(b.peer_id)
    assert inbound is not None and inbound.transport == "quic"
    assert inbound.remote_addr == quic_addrs(b)[0]


async def test_tcp_wins_when_the_quic_address_is_dead(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    dead.bind(("127.0.0.1", 0))
    try:
        silent = Multiaddr.from_quic("127.0.0.1", dead.getsockname()[1])
        # a dial that waited for QUIC's handshake timeout (10 s) would run out of budget
        conn = await b.connect(a.peer_id, [silent, *tcp_addrs(a)], timeout=5.0)
        assert conn.transport == "tcp"
        assert await b.ping(a.peer_id)
    finally:
        dead.close()


async def test_quic_only_dial_with_wrong_peer_id_fails(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    stranger = PeerID.from_public_key(PrivateKey.generate().public_key)
    with pytest.raises(DialError) as info:
        await b.connect(stranger, quic_addrs(a))
    (_, error), *_ = info.value.errors
    assert isinstance(error, HandshakeError)
    assert isinstance(error.__cause__, PeerIDMismatchError)
    assert b.connmgr.get(a.peer_id) is None and a.connmgr.get(b.peer_id) is None


async def test_dial_only_host_dials_quic_from_one_socket() -> None:
    a = Host(PrivateKey.generate(), CONFIG)
    b = Host(PrivateKey.generate(), CONFIG)
    c = Host(PrivateKey.generate(), CONFIG)
    await a.start([QUIC])
    await c.start([QUIC])
    await b.start([])  # no listeners: a wildcard socket is made for dials
    try:
        ca = await b.connect(a.peer_id, quic_addrs(a))
        cc = await b.connect(c.peer_id, quic_addrs(c))
        assert ca.transport == cc.transport == "quic"
        assert ca.local_addr == cc.local_addr  # same socket for both dials
        assert await b.ping(c.peer_id)
    finally:
        for h in (a, b, c):
            await h.close()


async def test_closing_a_host_ends_its_quic_connections_and_frees_resources(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    events = a.events()
    await b.connect(a.peer_id, quic_addrs(a))
    stream = await b.new_stream(a.peer_id, [PING_PROTOCOL_ID])
    await stream.write(b"x" * 32)
    await until(lambda: a.connmgr.get(b.peer_id) is not None)
    await b.close()
    async with asyncio.timeout(10):
        while True:
            event = await events.get()
            if isinstance(event, PeerDisconnected) and event.peer == b.peer_id:
                break
    await until(lambda: a.resources.stats()["connections"] == 0)
    stats = a.resources.stats()
    assert stats["memory"] == 0 and stats["handshakes"] == 0


async def test_inbound_stream_limit_applies_to_quic(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    conn = await b.connect(a.peer_id, quic_addrs(a))
    limit = a.config.limits.inbound_streams_per_connection
    opened = [await conn.session.open_stream() for _ in range(limit + 5)]
    for inner in opened:
        await inner.write(b"\x13/multistream/1.0.0\n")  # header only: it never negotiates
    await until(lambda: a.connmgr.get(b.peer_id) is not None)
    server = a.connmgr.get(b.peer_id)
    assert server is not None
    await until(lambda: server.session.num_streams >= limit)
    await asyncio.sleep(0.2)
    state = a._states[server]
    assert state.scope.inbound_streams <= limit
    for inner in opened:
        await inner.reset()
    await until(lambda: state.scope.inbound_streams == 0)
