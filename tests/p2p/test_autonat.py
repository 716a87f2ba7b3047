"""AutoNAT v1 between our own hosts on loopback stand-ins (docs/autonat.md).

Stand-ins: every host's address policy names ``127.0.0.0/8`` as public, and each
host listens on its own 127.0.1.x address (it dials loopback from it, so peers
observe that address). A host with no listener stands in for one behind a NAT:
it is observed at 127.0.0.1 with an ephemeral port nobody can dial.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.autonat import (
    AUTONAT_PROTOCOL,
    AutoNATError,
    AutoNATServer,
    ResponseStatus,
    decode_response,
    encode_dial,
    request_dial_back,
)
from zikade_py.p2p.autonat_service import AutoNAT
from zikade_py.p2p.autonat_status import AutoNATConfig, Reachability
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.pb import autonat_pb2
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(60)

PUBLIC_LOOPBACK = AddressPolicy(public_nets=("127.0.0.0/8",))
FAST = AutoNATConfig(
    boot_delay=0.0, retry_interval=0.5, refresh_interval=5.0, request_timeout=5.0,
    dial_timeout=2.0, pad_failed_dials=False, throttle_peer_period=0.0,
)
_next_ip = iter(range(10, 250))


def stand_in_ip() -> str:
    """A fresh 127.0.1.x address (distinct hosts must be distinct observers)."""
    return f"127.0.1.{next(_next_ip)}"


def host_config(policy: AddressPolicy = PUBLIC_LOOPBACK) -> HostConfig:
    return HostConfig(address_policy=policy, keepalive_interval=None)


async def start_host(
    stack: AsyncExitStack, *, listen: bool = True, policy: AddressPolicy = PUBLIC_LOOPBACK
) -> Host:
    host = Host(PrivateKey.generate(), host_config(policy))
    addrs = [Multiaddr.parse(f"/ip4/{stand_in_ip()}/tcp/0")] if listen else []
    await host.start(addrs)
    stack.push_async_callback(host.close)
    return host


async def start_autonat(
    stack: AsyncExitStack, host: Host, config: AutoNATConfig = FAST
) -> AutoNAT:
    service = AutoNAT(host, config)
    service.start()
    stack.push_async_callback(service.close)
    return service


async def wait_for(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


def test_codec_round_trip() -> None:
    peer = PeerID.from_public_key(PrivateKey.generate().public_key)
    addr = Multiaddr.parse("/ip4/127.0.1.1/tcp/4001")
    data = encode_dial(peer, [addr.with_peer_id(peer)])
    msg = autonat_pb2.Message()
    msg.ParseFromString(data[1:])
    assert msg.type == autonat_pb2.Message.DIAL
    assert msg.dial.peer.id == peer.multihash
    assert [Multiaddr.from_bytes(a) for a in msg.dial.peer.addrs] == [addr]  # /p2p stripped
    response = autonat_pb2.Message(type=autonat_pb2.Message.DIAL_RESPONSE)
    response.dialResponse.status = autonat_pb2.Message.E_DIAL_REFUSED
    response.dialResponse.statusText = "no"
    result = decode_response(response)
    assert result.status is ResponseStatus.E_DIAL_REFUSED and result.text == "no"


def test_dial_targets_only_the_observed_ip() -> None:
    """go: every requested address gets the requester's observed IP; non-TCP ones go."""
    server = AutoNATServer.__new__(AutoNATServer)
    server.config = AutoNATConfig(max_peer_addresses=3)
    server._host = Host(PrivateKey.generate(), host_config())  # not started: no own IPs
    observed = Multiaddr.parse("/ip4/127.0.1.7/tcp/55555")
    raw = [
        Multiaddr.parse("/ip4/127.0.1.99/tcp/4001").to_bytes(),  # a third party's IP
        Multiaddr.parse("/ip4/127.0.1.7/tcp/4002").to_bytes(),
        Multiaddr.parse("/dns4/example.com/tcp/4003").to_bytes(),  # no IP: skipped
        Multiaddr.parse("/ip4/127.0.1.7/tcp/4002").to_bytes(),  # duplicate
        b"\xff\xff",  # garbage
    ]
    targets = server.dial_targets(observed, raw)
    assert targets == [
        Multiaddr.parse("/ip4/127.0.1.7/tcp/4001"),
        Multiaddr.parse("/ip4/127.0.1.7/tcp/4002"),
        Multiaddr.parse("/ip4/127.0.1.7/tcp/55555"),
    ]


async def test_server_dials_back_a_reachable_requester(stack: AsyncExitStack) -> None:
    server_host = await start_host(stack)
    server = AutoNATServer(server_host, FAST)
    server.enable()
    client = await start_host(stack)
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    result = await request_dial_back(
        client, server_host.peer_id, client.listen_addrs, timeout=10.0
    )
    assert result.status is ResponseStatus.OK
    assert result.addr == client.listen_addrs[0]


async def test_server_reports_a_failed_dial_back(stack: AsyncExitStack) -> None:
    """A requester without a listener (behind a NAT) cannot be dialed: E_DIAL_ERROR."""
    server_host = await start_host(stack)
    server = AutoNATServer(server_host, FAST)
    server.enable()
    client = await start_host(stack, listen=False)
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    claimed = Multiaddr.parse("/ip4/127.0.1.250/tcp/9")  # nothing listens there
    result = await request_dial_back(client, server_host.peer_id, [claimed], timeout=10.0)
    assert result.status is ResponseStatus.E_DIAL_ERROR


async def test_server_refuses_loopback_without_the_explicit_policy(stack: AsyncExitStack) -> None:
    """Loopback is never public by accident: the default policy refuses to dial it."""
    server_host = await start_host(stack, policy=AddressPolicy())
    server = AutoNATServer(server_host, FAST)
    server.enable()
    client = await start_host(stack, policy=AddressPolicy())
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    result = await request_dial_back(
        client, server_host.peer_id, client.listen_addrs, timeout=10.0
    )
    assert result.status is ResponseStatus.E_DIAL_REFUSED
    assert server.answered == {ResponseStatus.E_DIAL_REFUSED: 1}


async def test_server_refuses_a_request_naming_another_peer(stack: AsyncExitStack) -> None:
    server_host = await start_host(stack)
    AutoNATServer(server_host, FAST).enable()
    client = await start_host(stack)
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    stream = await client.new_stream(server_host.peer_id, [AUTONAT_PROTOCOL])
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    await stream.write(encode_dial(other, client.listen_addrs))
    body = await stream.reader.read_length_prefixed(4096)
    msg = autonat_pb2.Message()
    msg.ParseFromString(body)
    assert decode_response(msg).status is ResponseStatus.E_BAD_REQUEST


async def test_rate_limit_per_peer(stack: AsyncExitStack) -> None:
    server_host = await start_host(stack)
    config = AutoNATConfig(throttle_peer_max=2, dial_timeout=2.0, pad_failed_dials=False)
    AutoNATServer(server_host, config).enable()
    client = await start_host(stack)
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    statuses = [
        (await request_dial_back(
            client, server_host.peer_id, client.listen_addrs, timeout=10.0
        )).status
        for _ in range(3)
    ]
    assert statuses == [ResponseStatus.OK, ResponseStatus.OK, ResponseStatus.E_DIAL_REFUSED]


async def test_reachable_host_becomes_public(stack: AsyncExitStack) -> None:
    servers = [await start_host(stack) for _ in range(2)]
    for s in servers:
        await start_autonat(stack, s)
    host = await start_host(stack)
    service = await start_autonat(stack, host)
    changes: list[Reachability] = []
    service.subscribe(changes.append)
    for s in servers:
        await host.connect(s.peer_id, s.listen_addrs)
    await wait_for(lambda: service.status is Reachability.PUBLIC)
    assert changes[0] is Reachability.PUBLIC
    assert host.identify.addresses.confirmed() == host.listen_addrs
    assert any(r.outcome == "ok" for r in service.history)


async def test_unreachable_host_becomes_private(stack: AsyncExitStack) -> None:
    servers = [await start_host(stack) for _ in range(2)]
    for s in servers:
        await start_autonat(stack, s)
    host = await start_host(stack, listen=False)
    service = await start_autonat(stack, host)
    for s in servers:
        await host.connect(s.peer_id, s.listen_addrs)
    await wait_for(lambda: service.status is Reachability.PRIVATE)
    assert not service.server.enabled  # go: a private node does not serve AutoNAT
    assert host.identify.addresses.confirmed() == []


async def test_forced_status_makes_no_probes(stack: AsyncExitStack) -> None:
    server = await start_host(stack)
    await start_autonat(stack, server)
    host = await start_host(stack)
    service = AutoNAT(host, FAST, forced=Reachability.PUBLIC)
    service.start()
    stack.push_async_callback(service.close)
    await host.connect(server.peer_id, server.listen_addrs)
    await asyncio.sleep(0.5)
    assert service.status is Reachability.PUBLIC and service.history == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_response_bytes_decode_or_raise_autonat_error(data: bytes) -> None:
    msg = autonat_pb2.Message()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        return
    try:
        result = decode_response(msg)
    except AutoNATError:
        return
    assert isinstance(result.status, ResponseStatus)


async def test_server_survives_garbage_requests(stack: AsyncExitStack) -> None:
    """Hostile bytes on the AutoNAT stream: the stream is reset or answered, the server
    keeps serving (checked with an honest request afterwards)."""
    server_host = await start_host(stack)
    server = AutoNATServer(server_host, FAST)
    server.enable()
    client = await start_host(stack)
    await client.connect(server_host.peer_id, server_host.listen_addrs)
    junk = [
        b"\xff\xff\xff\xff\xff",  # bad varint
        b"\x05abc",  # truncated
        length_prefixed(b"\x08\x01"),  # a DIAL_RESPONSE, not a DIAL
        length_prefixed(b"\x08\x00"),  # a DIAL without peer info
        length_prefixed(bytes(5000)),  # too large
    ]
    for data in junk:
        stream = await client.new_stream(server_host.peer_id, [AUTONAT_PROTOCOL])
        await stream.write(data)
        with contextlib.suppress(Exception):
            await stream.close()
        with contextlib.suppress(Exception):
            await stream.reader.read_length_prefixed(4096)
    result = await request_dial_back(
        client, server_host.peer_id, client.listen_addrs, timeout=10.0
    )
    assert result.status is ResponseStatus.OK
