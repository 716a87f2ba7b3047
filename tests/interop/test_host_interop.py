"""Our host against a real js-libp2p node (pinned npm packages): both dial directions,
identify, identify push, ping, kad stream negotiation, and a long-lived connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import Direction, PeerIdentified
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.identify import AGENT_VERSION, IDENTIFY_PROTOCOL_ID
from zikade_py.p2p.mss import ProtocolNotSupportedError
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.ping import PING_PROTOCOL_ID, PingHandler

from .jsnode import JsCommandError, JsNode, JsNodeOptions

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

KAD = "/ipfs/kad/1.0.0"
OURS = "/zikade/test/interop/1.0.0"


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    h = Host(PrivateKey.generate(), HostConfig(keepalive_interval=5.0))

    async def noop(stream: Stream) -> None:
        await stream.close()

    h.set_stream_handler(OURS, noop)
    await h.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        yield h
    finally:
        await h.close()


def our_addr(host: Host) -> str:
    return str(host.listen_addrs[0].with_peer_id(host.peer_id))


async def eventually_js_protocols(js: JsNode, peer: PeerID, want: str, present: bool) -> list[str]:
    async with asyncio.timeout(15):
        while True:
            info = await js.peer_info(str(peer))
            protocols = list(info["protocols"]) if info else []
            if (want in protocols) == present:
                return protocols
            await asyncio.sleep(0.1)


async def test_we_dial_js_identify_ping_and_kad(host: Host, js_node: JsNode) -> None:
    events = host.events()
    conn = await host.connect(None, [Multiaddr.parse(js_node.addrs[0])])
    js_peer = PeerID.from_string(js_node.peer_id)
    assert conn.remote_peer == js_peer
    assert conn.direction is Direction.OUTBOUND
    info = await host.identify.identify(conn)
    assert {IDENTIFY_PROTOCOL_ID, PING_PROTOCOL_ID, KAD} <= set(info.protocols)
    assert info.agent_version.startswith("js-libp2p/")
    assert info.public_key is not None and js_peer.matches(info.public_key)
    assert Multiaddr.parse(js_node.addrs[0]).without_peer_id() in info.listen_addrs
    assert info.observed_addr is not None and info.observed_addr.is_loopback()
    async with asyncio.timeout(5):
        while not isinstance(ev := await events.get(), PeerIdentified):
            pass
    assert ev.peer == js_peer and KAD in ev.protocols
    assert host.peerstore.supports(js_peer, KAD)

    rtts = await host.ping(js_peer, 5)
    assert len(rtts) == 5 and all(r > 0 for r in rtts)

    stream = await host.new_stream(js_peer, ["/nope/1.0.0", KAD])
    assert stream.protocol == KAD
    await stream.close()
    with pytest.raises(ProtocolNotSupportedError):
        await host.new_stream(js_peer, ["/nope/1.0.0"])
    assert host.connmgr.get(js_peer) is conn  # one connection throughout


async def test_js_dials_us_identifies_and_pings(host: Host, js_node: JsNode) -> None:
    events = host.events()
    info = await js_node.dial(our_addr(host))
    assert info["peer"] == str(host.peer_id)
    assert info["encryption"] == "/noise" and info["multiplexer"] == "/yamux/1.0.0"
    protocols = await eventually_js_protocols(js_node, host.peer_id, OURS, True)
    assert {IDENTIFY_PROTOCOL_ID, PING_PROTOCOL_ID} <= set(protocols)
    entry = await js_node.peer_info(str(host.peer_id))
    assert entry is not None
    assert entry["agentVersion"] == AGENT_VERSION
    assert entry["protocolVersion"] == "ipfs/0.1.0"
    assert str(host.listen_addrs[0]) in entry["addrs"]
    rtts = await js_node.ping(our_addr(host), 3)
    assert len(rtts) == 3
    assert await js_node.new_stream(str(host.peer_id), OURS) == OURS
    with pytest.raises(JsCommandError):
        await js_node.new_stream(str(host.peer_id), "/nope/1.0.0")
    # we identified the inbound js connection too
    async with asyncio.timeout(5):
        while not isinstance(ev := await events.get(), PeerIdentified):
            pass
    assert str(ev.peer) == js_node.peer_id and KAD in ev.protocols
    conn = host.connmgr.get(ev.peer)
    assert conn is not None and conn.direction is Direction.INBOUND


async def test_identify_push_reaches_js(host: Host, js_node: JsNode) -> None:
    await js_node.dial(our_addr(host))
    await eventually_js_protocols(js_node, host.peer_id, OURS, True)

    async def noop(stream: Stream) -> None:
        await stream.close()

    host.set_stream_handler("/zikade/test/pushed/1.0.0", noop)
    await eventually_js_protocols(js_node, host.peer_id, "/zikade/test/pushed/1.0.0", True)
    host.remove_stream_handler(OURS)
    protocols = await eventually_js_protocols(js_node, host.peer_id, OURS, False)
    assert PING_PROTOCOL_ID in protocols


async def test_connection_stays_up_with_keepalive_both_ways(host: Host) -> None:
    """41 s with nothing but keep-alive traffic: our yamux pings every 5 s, js's
    connection monitor pings (/ipfs/ping/1.0.0) every 5 s; the connection survives."""
    served: list[float] = []
    ping_handler = PingHandler()

    async def counting_ping(stream: Stream) -> None:
        served.append(time.monotonic())
        await ping_handler(stream)

    host.set_stream_handler(PING_PROTOCOL_ID, counting_ping)
    options = JsNodeOptions(monitor=True, monitor_interval_ms=5000)
    async with JsNode(options) as js:
        js_peer = PeerID.from_string(js.peer_id)
        conn = await host.connect(js_peer, [Multiaddr.parse(js.addrs[0])])
        js_conn_ids = {c["id"] for c in await js.connections(str(host.peer_id))}
        assert len(js_conn_ids) == 1
        answered: list[float] = []
        session = conn.session
        real_ping = session.ping

        async def counted_ping() -> float:
            rtt = await real_ping()
            answered.append(rtt)
            return rtt

        session.ping = counted_ping  # type: ignore[method-assign]  # the keep-alive loop's call
        start = time.monotonic()
        last_activity = session.last_activity
        while time.monotonic() - start < 41:
            await asyncio.sleep(5)
            assert session.last_activity > last_activity  # js sent us frames meanwhile
            last_activity = session.last_activity
            assert not conn.is_closed
        assert host.connmgr.get(js_peer) is conn and not conn.is_closed
        assert {c["id"] for c in await js.connections(str(host.peer_id))} == js_conn_ids
        assert len(answered) >= 4  # our keep-alive pings, every 5 s, answered by js
        assert len(served) >= 4  # js's connection monitor pinged us over the interval
        # and the connection still carries traffic at the end
        assert len(await host.ping(js_peer, 1)) == 1
