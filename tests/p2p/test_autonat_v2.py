"""Our AutoNAT v2 client against hand-written v2 servers: the nonce must come back on a
dial-back stream, dial data is paid up to a limit (stand-ins as in test_autonat.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.autonat import AutoNATError, AutoNATServer
from zikade_py.p2p.autonat_v2 import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    DialBackHandler,
    DialStatus,
    ResponseStatusV2,
    request_dial_back_v2,
)
from zikade_py.p2p.autonat_v2_server import AutoNATv2Server
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.pb import autonat_v2_pb2 as pb

from .test_autonat import FAST, PUBLIC_LOOPBACK, host_config, start_host

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def read(stream: Stream) -> pb.Message:
    msg = pb.Message()
    msg.ParseFromString(await stream.reader.read_length_prefixed(1 << 20))
    return msg


def v2_server(
    stack: AsyncExitStack, host: Host, *, ask_bytes: int = 0, dial_back: bool = True,
    nonce_offset: int = 0,
) -> None:
    """A v2 server: optionally asks for dial data, dials the first address back from a
    throw-away host and delivers the nonce (plus ``nonce_offset``: a liar), answers OK."""

    async def handle(stream: Stream) -> None:
        request = (await read(stream)).dialRequest
        if ask_bytes:
            await stream.write(length_prefixed(pb.Message(
                dialDataRequest=pb.DialDataRequest(addrIdx=0, numBytes=ask_bytes)
            ).SerializeToString()))
            got = 0
            while got < ask_bytes:
                got += len((await read(stream)).dialDataResponse.data)
        if dial_back:
            dialer = Host(PrivateKey.generate(), host_config())
            await dialer.start()
            try:
                target = Multiaddr.from_bytes(request.addrs[0])
                await dialer.connect(stream.remote_peer, [target])
                back = await dialer.new_stream(stream.remote_peer, [DIAL_BACK_PROTOCOL])
                await back.write(length_prefixed(
                    pb.DialBack(nonce=(request.nonce + nonce_offset) % 2**64).SerializeToString()
                ))
                await back.reader.read_length_prefixed(1024)
                await back.close()
            finally:
                await dialer.close()
        await stream.write(length_prefixed(pb.Message(dialResponse=pb.DialResponse(
            status=pb.DialResponse.OK, addrIdx=0, dialStatus=pb.OK,
        )).SerializeToString()))
        await stream.close()

    host.set_stream_handler(DIAL_REQUEST_PROTOCOL, handle)


async def client(stack: AsyncExitStack) -> tuple[Host, DialBackHandler]:
    host = await start_host(stack)
    handler = DialBackHandler()
    host.set_stream_handler(DIAL_BACK_PROTOCOL, handler.handle_stream)
    return host, handler


async def test_honest_server_delivers_the_nonce_and_gets_paid(stack: AsyncExitStack) -> None:
    server = await start_host(stack)
    v2_server(stack, server, ask_bytes=10_000)
    host, handler = await client(stack)
    await host.connect(server.peer_id, server.listen_addrs)
    result = await request_dial_back_v2(
        host, handler, server.peer_id, host.listen_addrs, timeout=10.0
    )
    assert result.status is ResponseStatusV2.OK and result.dial_status is DialStatus.OK
    assert result.nonce_received and result.reachable
    assert result.addr == host.listen_addrs[0]
    assert 10_000 <= result.paid < 10_000 + 4096


async def test_ok_without_our_nonce_is_not_believed(stack: AsyncExitStack) -> None:
    for offset, dial_back in ((0, False), (1, True)):  # no dial-back; a wrong nonce
        server = await start_host(stack)
        v2_server(stack, server, dial_back=dial_back, nonce_offset=offset)
        host, handler = await client(stack)
        await host.connect(server.peer_id, server.listen_addrs)
        result = await request_dial_back_v2(
            host, handler, server.peer_id, host.listen_addrs, timeout=10.0
        )
        assert result.dial_status is DialStatus.OK and not result.nonce_received
        assert not result.reachable


async def test_greedy_server_is_refused(stack: AsyncExitStack) -> None:
    server = await start_host(stack)
    v2_server(stack, server, ask_bytes=10**6)
    host, handler = await client(stack)
    await host.connect(server.peer_id, server.listen_addrs)
    with pytest.raises(AutoNATError, match="dial data"):
        await request_dial_back_v2(
            host, handler, server.peer_id, host.listen_addrs, timeout=10.0
        )


# -- our v2 server ---------------------------------------------------------------------------


async def our_v2_server(stack: AsyncExitStack, policy: AddressPolicy = PUBLIC_LOOPBACK) -> Host:
    host = await start_host(stack, policy=policy)
    AutoNATv2Server(host, AutoNATServer(host, FAST)).enable()
    return host


async def test_our_server_dials_back_with_the_nonce(stack: AsyncExitStack) -> None:
    server = await our_v2_server(stack)
    host, handler = await client(stack)
    await host.connect(server.peer_id, server.listen_addrs)
    result = await request_dial_back_v2(
        host, handler, server.peer_id, host.listen_addrs, timeout=10.0
    )
    assert result.reachable and result.addr == host.listen_addrs[0] and result.paid == 0


async def test_our_server_charges_for_another_ip(stack: AsyncExitStack) -> None:
    """The requester asks about an address whose IP is not the one we see it on: it must
    pay 30..100 kB of dial data first (amplification protection), then we dial."""
    server = await our_v2_server(stack)
    # two listen IPs: it dials from the kernel's 127.0.0.1, so both differ from what we see
    host = Host(PrivateKey.generate(), host_config())
    await host.start([Multiaddr.parse("/ip4/127.0.1.241/tcp/0"),
                      Multiaddr.parse("/ip4/127.0.1.242/tcp/0")])
    stack.push_async_callback(host.close)
    handler = DialBackHandler()
    host.set_stream_handler(DIAL_BACK_PROTOCOL, handler.handle_stream)
    await host.connect(server.peer_id, server.listen_addrs)
    result = await request_dial_back_v2(
        host, handler, server.peer_id, host.listen_addrs[1:], timeout=20.0
    )
    assert result.reachable and 30_000 <= result.paid <= 100_000 + 4096


async def test_our_server_refuses_loopback_without_the_policy(stack: AsyncExitStack) -> None:
    server = await our_v2_server(stack, AddressPolicy())
    host, handler = await client(stack)
    await host.connect(server.peer_id, server.listen_addrs)
    result = await request_dial_back_v2(
        host, handler, server.peer_id, host.listen_addrs, timeout=10.0
    )
    assert result.status is ResponseStatusV2.E_DIAL_REFUSED and not result.reachable
