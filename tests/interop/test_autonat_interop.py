"""AutoNAT v1 against js-libp2p (@libp2p/autonat, pinned): our client asks js servers, js's
client asks our server, and an auto-mode node joins js routing tables once js confirms it.

Loopback stand-ins (docs/autonat.md): our hosts name 127.0.0.0/8 public
(``AddressPolicy(public_nets=("127.0.0.0/8",))``, the daemon's ``--public-net``) and
listen on their own 127.0.1.x address; the js nodes run with ``loopbackPublic``
(loopback_public_hooks.mjs drops 127.0.0.0/8 from js-libp2p's private ranges; without
it js never asks for, nor dials, a loopback address) on 127.0.0.1.

js's v1 server answers over an existing connection to the requester when there is one
(``openConnection`` reuses it) and says OK when that connection's remote address is the
one asked for: so the js nodes dial us first, as peers that found us would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace

import pytest

from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.autonat import AUTONAT_PROTOCOL, ResponseStatus
from zikade_py.p2p.autonat_status import AutoNATConfig
from zikade_py.p2p.autonat_v2 import DIAL_BACK_PROTOCOL, DIAL_REQUEST_PROTOCOL, DialStatus
from zikade_py.p2p.host import HostConfig
from zikade_py.p2p.localaddrs import LocalAddrs
from zikade_py.p2p.multiaddr import Multiaddr

from .jsnode import JsNode, JsNodeOptions

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

PUBLIC_LOOPBACK = HostConfig(
    inbound_per_ip_rate=10_000.0, inbound_per_ip_burst=10_000,
    address_policy=AddressPolicy(public_nets=("127.0.0.0/8",)),
)
FAST = AutoNATConfig(
    boot_delay=0.0, retry_interval=1.0, refresh_interval=60.0, request_timeout=20.0,
    dial_timeout=5.0, pad_failed_dials=False, throttle_peer_period=0.0,
)
JS_AUTONAT = JsNodeOptions(autonat={"startupDelay": 0}, loopback_public=True)
_ips = iter(range(100, 200))


def our_config(mode: str, *, listen: bool = True) -> NodeConfig:
    addrs: list[str] = [f"/ip4/127.0.1.{next(_ips)}/tcp/0"] if listen else []
    return NodeConfig(
        mode=mode,  # type: ignore[arg-type]
        listen_addrs=addrs,  # type: ignore[arg-type]
        bootstrap=[],
        host=PUBLIC_LOOPBACK,
        autonat=FAST,
        republish=False,
    )


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def start_js(stack: AsyncExitStack, options: JsNodeOptions, n: int) -> list[JsNode]:
    nodes = [JsNode(options) for _ in range(n)]
    for js in nodes:
        stack.push_async_callback(js.close)
    await asyncio.gather(*(js.start() for js in nodes))
    return nodes


async def start_ours(stack: AsyncExitStack, config: NodeConfig) -> Node:
    node = Node(config)
    await node.start()
    stack.push_async_callback(node.close)
    return node


async def wait_until(predicate: object, timeout: float = 45.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not await _value(predicate()):
            await asyncio.sleep(0.1)


async def _value(v: object) -> object:
    return await v if asyncio.iscoroutine(v) else v


async def test_js_v1_server_gets_our_request_but_never_answers_it(
    stack: AsyncExitStack,
) -> None:
    """js's v1 server takes our DIAL and dials the address we named, but over the
    connection we asked on (``openConnection`` reuses it), which it then closes in a
    ``finally`` before writing its answer (@libp2p/autonat 3.0.28 ``handleAutonatMessage``):
    a directly connected requester never gets a DIAL_RESPONSE from js. We count that as
    no verdict (go: an error is "unknown"), never as private, and stay a client; js's
    AutoNAT v2 server dials back on a fresh connection (test_autonat_v2_interop.py)."""
    js_nodes = [JsNode(JS_AUTONAT, env={"DEBUG": "libp2p:auto-nat"}) for _ in range(2)]
    for js in js_nodes:
        stack.push_async_callback(js.close)
    await asyncio.gather(*(js.start() for js in js_nodes))
    assert all(AUTONAT_PROTOCOL in js.protocols for js in js_nodes)
    node = await start_ours(stack, our_config("auto"))
    assert KAD_PROTOCOL not in node.host.protocols
    for js in js_nodes:
        await js.dial(str(node.multiaddrs[0]))
    await wait_until(lambda: len(node.autonat.history) >= 2)
    assert {r.outcome for r in node.autonat.history} == {"failed"}
    assert node.reachability == "unknown" and node.effective_mode == "client"
    ours = str(node.listen_addrs[0])
    # js understood the request: it dialed exactly the address we asked for
    assert any(f"successfully dialed {node.peer_id} via {ours}" in js.stderr_tail()
               for js in js_nodes)


async def test_unreachable_node_stays_client_with_js_servers(stack: AsyncExitStack) -> None:
    """Without a listener we have nothing a js server could dial: it refuses, we never
    turn server and js never puts us in its table."""
    js_nodes = await start_js(stack, JS_AUTONAT, 2)
    node = await start_ours(stack, our_config("auto", listen=False))
    for js in js_nodes:
        await node.host.connect(None, [Multiaddr.parse(js.addrs[0])])
    await wait_until(lambda: len(node.autonat.history) >= 2)
    assert {r.outcome for r in node.autonat.history} <= {"refused", "dial_error"}
    assert node.reachability != "public" and node.effective_mode == "client"
    assert KAD_PROTOCOL not in node.host.protocols
    for js in js_nodes:
        assert str(node.peer_id) not in await js.routing_table()


async def test_we_answer_js_autonat_clients(stack: AsyncExitStack) -> None:
    """js's AutoNAT client asks our server to verify its address; we dial it back (from a
    throw-away identity) and answer OK."""
    node = await start_ours(stack, our_config("server"))
    server = node.autonat.server
    assert server.enabled and AUTONAT_PROTOCOL in node.host.protocols
    (js,) = await start_js(stack, replace(JS_AUTONAT, dht=False), 1)
    await js.dial(str(node.multiaddrs[0]))
    await wait_until(lambda: server.answered.get(ResponseStatus.OK, 0) >= 1)
    # js keeps the connection it made; our dial-back was a connection of its own
    assert str(node.peer_id) in [p["id"] for p in await js.peers()]


JS_AUTONAT_V2 = JsNodeOptions(autonat_v2={"startupDelay": 0}, loopback_public=True)


async def test_js_v2_servers_confirm_us_and_js_tables_add_us(stack: AsyncExitStack) -> None:
    """Our auto-mode node asks js AutoNAT v2 servers (they dial back on a new connection and
    deliver our nonce), is confirmed public, turns server, and the js nodes add it to their
    routing tables on the identify push; then we find each other both ways."""
    js_nodes = await start_js(stack, JS_AUTONAT_V2, 2)
    assert all(DIAL_REQUEST_PROTOCOL in js.protocols for js in js_nodes)
    node = await start_ours(stack, our_config("auto"))
    assert KAD_PROTOCOL not in node.host.protocols
    assert DIAL_BACK_PROTOCOL in node.host.protocols
    # we dial them (a js node announces its address only once verified, so its identify
    # gives us none: the address we dialed is what we know)
    for js in js_nodes:
        await node.host.connect(None, [Multiaddr.parse(js.addrs[0])])
    await wait_until(lambda: node.reachability == "public")
    ok = [r for r in node.autonat.history if r.outcome == "ok"]
    assert ok and ok[0].detail == f"v2 {node.listen_addrs[0]}"  # the nonce came back
    assert node.effective_mode == "server" and KAD_PROTOCOL in node.host.protocols
    assert node.self_info().addrs == tuple(node.listen_addrs)

    async def in_js_tables() -> bool:
        tables = await asyncio.gather(*(js.routing_table() for js in js_nodes))
        return all(str(node.peer_id) in t for t in tables)

    await wait_until(in_js_tables)
    found = await js_nodes[0].find_peer(str(node.peer_id))
    assert found is not None and found["id"] == str(node.peer_id)
    info = await node.find_peer(js_nodes[1].peer_id, timeout=20, local_first=False)
    assert info.addrs


async def test_v2_server_that_cannot_reach_us_keeps_us_client(
    stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 server asked to dial an address where nothing listens reports E_DIAL_ERROR:
    we turn private and stay a client."""
    js_nodes = await start_js(stack, JS_AUTONAT_V2, 2)
    node = await start_ours(stack, our_config("auto"))
    # what we claim is a port nothing listens on (a NAT without a port mapping)
    dead = Multiaddr.from_tcp(str(node.listen_addrs[0].ip_address()), 9)
    monkeypatch.setattr(LocalAddrs, "public_candidates", lambda _self: [dead])
    for js in js_nodes:
        await node.host.connect(None, [Multiaddr.parse(js.addrs[0])])
    await wait_until(lambda: node.reachability == "private")
    assert any(r.outcome == "dial_error" for r in node.autonat.history)
    assert node.effective_mode == "client" and KAD_PROTOCOL not in node.host.protocols


async def test_we_answer_js_v2_clients(stack: AsyncExitStack) -> None:
    """js's AutoNAT v2 client asks our v2 server about its address: we dial it on a fresh
    connection, deliver its nonce on /libp2p/autonat/2/dial-back, and answer OK."""
    node = await start_ours(stack, our_config("server"))
    assert DIAL_REQUEST_PROTOCOL in node.host.protocols
    (js,) = await start_js(stack, replace(JS_AUTONAT_V2, dht=False), 1)
    await js.dial(str(node.multiaddrs[0]))
    server = node.autonat.server_v2
    await wait_until(lambda: server.answered.get(DialStatus.OK, 0) >= 1)
