"""QUIC interop with js-libp2p + @chainsafe/libp2p-quic (issue 14, acceptance 1 and 2).

One mixed network per module: six js kad-dht servers, three listening on QUIC only and
three on TCP and QUIC, and two of our nodes, one QUIC-only and one on both. Every RPC
goes both ways over QUIC: identify, ping, FIND_NODE, ADD_PROVIDER / GET_PROVIDERS,
PUT_VALUE / GET_VALUE of ``/pk/`` records, and routing-table admission on both sides.

Then the certificate checks against js, both sides: we refuse a js node that is not the
peer we dialled; js refuses our client when its certificate lacks the libp2p extension,
carries a forged extension signature, or is missing; js refuses a server of ours whose
certificate is bad, and a server that is not the peer it dialled.

The js connection monitor is off (see test_dht_interop.py: it races kad's admission ping).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zikade_py.dht.config import NodeConfig
from zikade_py.dht.node import Node
from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.events import Direction
from zikade_py.p2p.host import DialError, Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.endpoint import QuicEndpoint
from zikade_py.p2p.quic.session import HandshakeError, QuicConfig, QuicSession
from zikade_py.p2p.tls import (
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    Certificate,
    PeerIDMismatchError,
    SignedKey,
)

from .dht_network import (
    ADMISSION_WAIT,
    KAD,
    OP_TIMEOUT,
    OP_TIMEOUT_MS,
    Network,
    bare,
    cid_of,
    eventually,
    running_network,
)
from .jsnode import (
    JsCommandError,
    JsNode,
    JsNodeOptions,
    js_available,
    node_modules_dir,
    sha256_multihash,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

QUIC_ONLY = JsNodeOptions(monitor=False, transports=("quic",))
BOTH = JsNodeOptions(monitor=False, transports=("tcp", "quic"))
OUR_QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
OUR_TCP = "/ip4/127.0.0.1/tcp/0"


class QuicNetwork(Network):
    """The network, with js nodes that listen on QUIC only or on TCP and QUIC."""

    def quic_only_js(self) -> set[str]:
        return {n.peer_id for n in self.js if not any("/tcp/" in a for a in n.addrs)}


def quic_addr(addrs: list[str] | list[Multiaddr]) -> str:
    """The QUIC one of a node's addresses."""
    return next(str(a) for a in addrs if "/quic-v1" in str(a))


def our_quic_addr(node: Node) -> str:
    return str(Multiaddr.parse(quic_addr(node.listen_addrs)).with_peer_id(node.peer_id))


def listens_on_quic(node: JsNode) -> None:
    assert any("/quic-v1/" in a for a in node.addrs), node.addrs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net() -> AsyncIterator[QuicNetwork]:
    if not js_available():
        pytest.skip("js-libp2p unavailable")
    if not (node_modules_dir() / "@chainsafe" / "libp2p-quic").is_dir():
        # a skip here fails in CI (tests/conftest.py), like every interop skip
        pytest.skip("@chainsafe/libp2p-quic missing: run `npm ci` in tests/interop")
    js = [JsNode(QUIC_ONLY if i % 2 == 0 else BOTH) for i in range(6)]

    def ours() -> list[NodeConfig]:
        return [
            NodeConfig(mode="server", listen_addrs=[*listen], bootstrap=[quic_addr(seed.addrs)])
            for listen, seed in (([OUR_QUIC], js[0]), ([OUR_QUIC, OUR_TCP], js[3]))
        ]

    # js–js wiring over QUIC, in a line
    async with running_network(js, js_addr=quic_addr, ours=ours, started=listens_on_quic) as nodes:
        yield QuicNetwork(js, nodes)


# ------------------------------------------------------------------------------ connections


async def test_our_quic_only_node_talks_quic_to_js(net: QuicNetwork) -> None:
    ours = net.ours[0]
    conns = list(ours.host.connmgr.connections())
    assert all(c.transport == "quic" for c in conns if c.direction is Direction.INBOUND)
    assert all(c.transport == "quic" for c in conns if str(c.remote_peer) in net.quic_only_js())
    js_conns = await net.js[0].connections(str(ours.peer_id))
    assert js_conns and all(c["multiplexer"] == "quic" for c in js_conns), js_conns


async def test_ping_and_identify_both_ways_over_quic(net: QuicNetwork) -> None:
    js = net.js[5]  # offers TCP and QUIC: a fresh host of ours must pick QUIC
    peer = PeerID.from_string(js.peer_id)
    host = Host(PrivateKey.generate())
    await host.start([Multiaddr.parse(OUR_QUIC), Multiaddr.parse(OUR_TCP)])
    try:
        conn = await host.connect(peer, [Multiaddr.parse(a) for a in js.addrs])
        assert conn.transport == "quic"
        assert len(await host.ping(peer, 3, timeout=OP_TIMEOUT)) == 3
        info = await host.identify_peer(peer, timeout=OP_TIMEOUT)
        assert KAD in info.protocols
        assert any(a.quic_endpoint() for a in info.listen_addrs)
    finally:
        await host.close()
    ours = net.ours[1]
    rtts = await net.js[2].ping(our_quic_addr(ours), count=2, timeout_ms=OP_TIMEOUT_MS)
    assert len(rtts) == 2
    seen = await net.js[2].peer_info(str(ours.peer_id))
    assert seen is not None and KAD in seen["protocols"]
    assert any("/quic-v1" in a for a in seen["addrs"])


# ------------------------------------------------------------------------------ routing tables


async def test_js_quic_nodes_in_our_routing_tables(net: QuicNetwork) -> None:
    def js_in_table(node: Node) -> set[str]:
        return {str(e.peer.peer_id) for e in node.routing_table()} & net.js_ids()

    async def enough() -> bool:
        return all(len(js_in_table(n)) >= 3 for n in net.ours)

    assert await eventually(enough, timeout=ADMISSION_WAIT), [len(js_in_table(n)) for n in net.ours]
    quic_only_js = net.quic_only_js()
    for node in net.ours:
        for entry in node.routing_table():
            if str(entry.peer.peer_id) in quic_only_js:
                assert entry.peer.addrs and all(a.quic_endpoint() for a in entry.peer.addrs)


async def test_ours_admitted_by_js_over_quic(net: QuicNetwork) -> None:
    async def admitted() -> bool:
        tables = [set(await js.routing_table()) for js in net.js]
        return all(any(str(o.peer_id) in t for t in tables) for o in net.ours)

    assert await eventually(admitted, timeout=ADMISSION_WAIT)


# ------------------------------------------------------------------------------ FIND_NODE


async def test_js_find_peer_finds_ours(net: QuicNetwork) -> None:
    for ours, js in ((net.ours[0], net.js[4]), (net.ours[1], net.js[1])):
        found = await js.find_peer(str(ours.peer_id), timeout_ms=OP_TIMEOUT_MS)
        assert found is not None and found["id"] == str(ours.peer_id)
        assert bare(quic_addr(ours.listen_addrs)) in {bare(a) for a in found["addrs"]}


async def test_our_quic_only_node_finds_every_js_node(net: QuicNetwork) -> None:
    ours = net.ours[0]
    for js in net.js:
        info = await ours.find_peer(js.peer_id, timeout=OP_TIMEOUT, local_first=False)
        assert info.peer_id == PeerID.from_string(js.peer_id)
        assert bare(quic_addr(js.addrs)) in {bare(a) for a in info.addrs}
    # it dials TCP too (listening is another matter); a QUIC-only peer only over QUIC
    for conn in ours.host.connmgr.connections():
        if str(conn.remote_peer) in net.quic_only_js():
            assert conn.transport == "quic"


async def test_our_get_closest_peers_returns_js_nodes(net: QuicNetwork) -> None:
    key = sha256_multihash(b"zikade quic interop closest peers")
    peers = await net.ours[0].get_closest_peers(key, timeout=OP_TIMEOUT)
    ids = {str(p.peer_id) for p in peers}
    assert net.js_ids() <= ids, f"missing js nodes: {net.js_ids() - ids}"


# ------------------------------------------------------------------------------ providers


async def test_js_finds_what_we_provide_over_quic(net: QuicNetwork) -> None:
    mh = sha256_multihash(b"provided over quic by zikade-py")
    ours = net.ours[0]
    result = await ours.provide(cid_of(mh), timeout=OP_TIMEOUT)
    assert set(map(str, result.contacted)) & net.js_ids(), "no js node took ADD_PROVIDER"
    for js in (net.js[1], net.js[4]):
        found = await js.find_providers(multihash=mh, count=1, timeout_ms=OP_TIMEOUT_MS)
        assert [p["id"] for p in found] == [str(ours.peer_id)]


async def test_we_find_what_js_provides_over_quic(net: QuicNetwork) -> None:
    mh = sha256_multihash(b"provided over quic by js-libp2p")
    res = await net.js[2].provide(multihash=mh, timeout_ms=OP_TIMEOUT_MS)
    assert set(res["sentTo"]) & net.our_ids(), f"js sent ADD_PROVIDER to none of ours: {res}"
    for ours in net.ours:
        found = [p async for p in ours.find_providers(cid_of(mh), count=1, timeout=OP_TIMEOUT)]
        assert [p.peer_id for p in found] == [PeerID.from_string(net.js[2].peer_id)]


# ------------------------------------------------------------------------------ /pk/ records


async def test_js_reads_the_pk_record_we_put_over_quic(net: QuicNetwork) -> None:
    key, value = make_pk_record(PrivateKey.generate().public_key)
    result = await net.ours[0].put_value(key, value, timeout=OP_TIMEOUT)
    assert set(map(str, result.contacted)) & net.js_ids(), "no js node took PUT_VALUE"
    got = await net.js[5].get_value(key, timeout_ms=OP_TIMEOUT_MS)
    assert got is not None and got.value == value


async def test_we_read_the_pk_record_js_put_over_quic(net: QuicNetwork) -> None:
    js = net.js[4]
    kp = await js.keygen()
    key = b"/pk/" + kp.multihash
    res = await js.put_value(key, kp.public_key, timeout_ms=OP_TIMEOUT_MS)
    assert set(res["storedAt"]) & net.our_ids(), f"js PUT_VALUE reached none of ours: {res}"
    for ours in net.ours:
        assert await ours.get_value(key, timeout=OP_TIMEOUT) == kp.public_key


# ------------------------------------------------------------------------------ certificates


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate(identity: PrivateKey | None, *, forge: bool = False) -> Certificate:
    """Self-signed; with ``identity`` the libp2p extension (its signature over another key
    when ``forge``), without it no extension at all."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "3")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(3)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if identity is not None:
        signed_key = (
            ec.generate_private_key(ec.SECP256R1()).public_key() if forge else key.public_key()
        )
        proof = SignedKey(
            identity.public_key.to_protobuf(), identity.sign(SIGNATURE_PREFIX + _spki(signed_key))
        )
        builder = builder.add_extension(
            x509.UnrecognizedExtension(EXTENSION_OID, proof.to_der()), critical=False
        )
    return Certificate(builder.sign(key, hashes.SHA256()), key)


@pytest_asyncio.fixture(loop_scope="module")
async def endpoint() -> AsyncIterator[tuple[QuicEndpoint, PrivateKey, asyncio.Queue[QuicSession]]]:
    key = PrivateKey.generate()
    inbound: asyncio.Queue[QuicSession] = asyncio.Queue()
    ep = QuicEndpoint(key, QuicConfig(), on_inbound=inbound.put_nowait)
    await ep.open("127.0.0.1", 0)
    yield ep, key, inbound
    await ep.close()


def _js_target(js: JsNode) -> tuple[tuple[str, int], PeerID]:
    addr = Multiaddr.parse(quic_addr(js.addrs))
    endpoint = addr.quic_endpoint()
    assert endpoint is not None
    return endpoint, PeerID.from_string(js.peer_id)


async def test_we_refuse_a_js_node_that_is_not_the_peer_we_dialled(net: QuicNetwork) -> None:
    stranger = PeerID.from_public_key(PrivateKey.generate().public_key)
    with pytest.raises(DialError) as info:
        await net.ours[0].host.connect(
            stranger, [Multiaddr.parse(bare(quic_addr(net.js[0].addrs)))]
        )
    (_, error), *_ = info.value.errors
    assert isinstance(error, HandshakeError) and isinstance(error.__cause__, PeerIDMismatchError)


@pytest.mark.parametrize("kind", ["no-extension", "forged-extension", "no-certificate"])
async def test_js_refuses_our_bad_client_certificate(
    net: Network, endpoint: tuple[QuicEndpoint, PrivateKey, asyncio.Queue[QuicSession]], kind: str
) -> None:
    ep, key, _ = endpoint
    if kind == "no-certificate":
        original = ep._configuration

        def no_cert(*, is_client: bool):  # type: ignore[no-untyped-def]
            config = original(is_client=is_client)
            config.certificate = None
            config.private_key = None
            return config

        ep._configuration = no_cert  # type: ignore[method-assign]
    else:
        ep._cert = (
            _certificate(key, forge=True) if kind == "forged-extension" else _certificate(None)
        )
    target, peer = _js_target(net.js[1])
    # the server's verdict reaches a TLS 1.3 client only as a missing handshake confirmation
    with pytest.raises(HandshakeError):
        await ep.dial(target, peer, timeout=10.0)
    assert not ep.sessions
    assert str(PeerID.from_public_key(key.public_key)) not in {
        c["peer"] for c in await net.js[1].connections()
    }


@pytest.mark.parametrize("kind", ["no-extension", "forged-extension", "wrong-peer"])
async def test_js_refuses_a_bad_server_of_ours(
    net: Network, endpoint: tuple[QuicEndpoint, PrivateKey, asyncio.Queue[QuicSession]], kind: str
) -> None:
    ep, key, inbound = endpoint
    claimed = PeerID.from_public_key(key.public_key)
    if kind == "wrong-peer":
        claimed = PeerID.from_public_key(PrivateKey.generate().public_key)  # not us
    else:
        ep._cert = (
            _certificate(key, forge=True) if kind == "forged-extension" else _certificate(None)
        )
    host, port = ep.local_address
    with pytest.raises(JsCommandError):
        await net.js[3].dial(f"/ip4/{host}/udp/{port}/quic-v1/p2p/{claimed}", timeout_ms=10_000)
    if kind != "wrong-peer":
        await asyncio.sleep(0.2)
        assert inbound.empty()  # nothing came up on our side either
        return
    # js checks the peer id only once the handshake is done (our server side completed
    # it): the connection it does not want is closed at once
    while not inbound.empty():
        session = inbound.get_nowait()
        await asyncio.wait_for(session.wait_closed(), 10.0)


async def test_js_passes_our_retry_address_validation(net: QuicNetwork) -> None:
    host = Host(PrivateKey.generate(), HostConfig(quic=QuicConfig(retry_above=0)))
    await host.start([Multiaddr.parse(OUR_QUIC)])
    try:
        addr = str(host.listen_addrs[0].with_peer_id(host.peer_id))
        # js[1] has talked QUIC with other js nodes: quinn brings their NEW_TOKEN tokens
        assert len(await net.js[1].ping(addr, count=2, timeout_ms=OP_TIMEOUT_MS)) == 2
        assert sum(ep.retries for ep in host._quic.endpoints) == 1
    finally:
        await host.close()
