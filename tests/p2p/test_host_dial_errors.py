"""A failed dial says what happened on each address (issue 11: a timed-out dial printed
``dial to … failed: <addr>:`` with nothing after the colon)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import (
    DialError,
    DialTimeoutError,
    Host,
    HostConfig,
    describe_dial_error,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .tcp_stubs import SilentListener

pytestmark = pytest.mark.timeout(60)


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def dial_error(host: Host, addrs: list[Multiaddr], timeout: float = 10.0) -> DialError:
    with pytest.raises(DialError) as info:
        await host.connect(random_peer(), addrs, timeout=timeout)
    return info.value


async def test_handshake_timeout_says_timed_out_and_after_how_long() -> None:
    hole = await SilentListener().start()
    host = Host(PrivateKey.generate(), HostConfig(handshake_timeout=0.2))
    await host.start([])
    try:
        error = await dial_error(host, [hole.addr])
        assert not isinstance(error, DialTimeoutError)  # the caller's budget was not spent
        assert str(error).endswith(f"failed: {hole.addr}: handshake timed out after 0.2 s")
    finally:
        await host.close()
        await hole.close()


async def test_caller_budget_running_out_says_timed_out() -> None:
    hole = await SilentListener().start()
    host = Host(PrivateKey.generate())
    await host.start([])
    try:
        with pytest.raises(TimeoutError) as info:
            await host.connect(random_peer(), [hole.addr], timeout=0.25)
        assert isinstance(info.value, DialTimeoutError)
        assert str(info.value).endswith("timed out after 0.25 s")
    finally:
        await host.close()
        await hole.close()


async def test_refused_connection_says_connection_refused_for_each_address() -> None:
    host = Host(PrivateKey.generate())
    await host.start([])
    try:
        first, second = (Multiaddr.from_tcp("127.0.0.1", closed_port()) for _ in range(2))
        error = await dial_error(host, [first, second])
        assert str(error).endswith(
            f"failed: {first}: connection refused; {second}: connection refused"
        )
        assert [a for a, _ in error.errors] == [first, second]
    finally:
        await host.close()


async def test_peer_closing_during_the_handshake_is_described() -> None:
    async def hang_up(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    addr = Multiaddr.from_tcp("127.0.0.1", server.sockets[0].getsockname()[1])
    host = Host(PrivateKey.generate())
    await host.start([])
    try:
        error = await dial_error(host, [addr])
        detail = str(error).split(f"{addr}: ", 1)[1]
        assert "ended" in detail
    finally:
        await host.close()
        server.close()
        await server.wait_closed()


def test_every_error_has_words() -> None:
    assert describe_dial_error(TimeoutError()) == "TimeoutError"
    assert describe_dial_error(TimeoutError("handshake timed out after 1 s")) == (
        "handshake timed out after 1 s"
    )
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
    assert describe_dial_error(refused) == "connection refused"
    assert describe_dial_error(socket.gaierror(-2, "Name or service not known")) == (
        "name or service not known"
    )
    assert describe_dial_error(ValueError()) == "ValueError"
