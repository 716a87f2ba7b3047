"""QUIC endpoints and sessions on 127.0.0.1: handshakes that prove identities both ways, every
certificate rejection on both sides, streams (FIN, reset, backpressure, receive windows),
shared sockets, and garbage datagrams."""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aioquic.quic.connection import QuicConnectionState
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.endpoint import QuicEndpoint
from zikade_py.p2p.quic.session import HandshakeError, QuicConfig, QuicSession
from zikade_py.p2p.tls import (
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    Certificate,
    CertificateError,
    PeerIDMismatchError,
    SignedKey,
    make_certificate,
)
from zikade_py.p2p.yamux_errors import SessionClosedError, StreamResetError

TIMEOUT = 10.0


def pid(key: PrivateKey) -> PeerID:
    return PeerID.from_public_key(key.public_key)


async def until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


class Pair:
    """A listening endpoint ``a`` (its inbound sessions queue up) and a dialing ``b``."""

    def __init__(self, a: QuicEndpoint, b: QuicEndpoint, inbound: asyncio.Queue[QuicSession]):
        self.a, self.b, self.inbound = a, b, inbound

    async def dial(self, expected: PeerID | None) -> tuple[QuicSession, QuicSession]:
        client = await self.b.dial(self.a.local_address, expected, timeout=TIMEOUT)
        server = await asyncio.wait_for(self.inbound.get(), TIMEOUT)
        return client, server


def endpoint(key: PrivateKey, inbound: asyncio.Queue[QuicSession] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return QuicEndpoint(
        key,
        QuicConfig(**kw),
        on_inbound=inbound.put_nowait if inbound else None,  # type: ignore[arg-type]
    )


@pytest.fixture
async def keys() -> tuple[PrivateKey, PrivateKey]:
    return PrivateKey.generate(), PrivateKey.generate()


@pytest.fixture
async def pair(keys: tuple[PrivateKey, PrivateKey]) -> AsyncIterator[Pair]:
    inbound: asyncio.Queue[QuicSession] = asyncio.Queue()
    a, b = endpoint(keys[0], inbound), endpoint(keys[1])
    await a.open("127.0.0.1", 0)
    await b.open("127.0.0.1", 0)
    yield Pair(a, b, inbound)
    await a.close()
    await b.close()


# --- handshakes -----------------------------------------------------------------------------------


async def test_both_sides_learn_the_authenticated_peer(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    assert client.remote_peer == pid(keys[0])
    assert server.remote_peer == pid(keys[1])
    assert server.remote_public_key == keys[1].public_key
    assert client.is_ready and server.is_ready


async def test_dial_without_expected_peer_accepts_any_identity(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, _ = await pair.dial(None)
    assert client.remote_peer == pid(keys[0])


async def test_one_socket_carries_inbound_and_outbound_connections(
    keys: tuple[PrivateKey, PrivateKey],
) -> None:
    inbound_a: asyncio.Queue[QuicSession] = asyncio.Queue()
    inbound_b: asyncio.Queue[QuicSession] = asyncio.Queue()
    a, b = endpoint(keys[0], inbound_a), endpoint(keys[1], inbound_b)
    c_key = PrivateKey.generate()
    c = endpoint(c_key, asyncio.Queue())
    for ep in (a, b, c):
        await ep.open("127.0.0.1", 0)
    try:
        ab = await a.dial(b.local_address, pid(keys[1]), timeout=TIMEOUT)
        ba = await b.dial(a.local_address, pid(keys[0]), timeout=TIMEOUT)
        ca = await c.dial(a.local_address, pid(keys[0]), timeout=TIMEOUT)
        server_side = await asyncio.wait_for(inbound_b.get(), TIMEOUT)
        # b's inbound connection came from a's listening port: one socket, both directions
        assert server_side.remote_addr[1] == a.local_address[1]
        assert len(a.sessions) == 3  # a dialed b, b dialed a, c dialed a
        for session in (ab, ba, ca):
            stream = await session.open_stream()
            await stream.write(b"ping")
            await stream.close()
        assert {s.remote_peer for s in a.sessions} == {pid(keys[1]), pid(c_key)}
    finally:
        for ep in (a, b, c):
            await ep.close()


# --- certificate rejections, both sides ----------------------------------------------------------


def _plain_certificate() -> Certificate:
    """Self-signed, no libp2p extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return Certificate(cert, key)


def _forged_certificate(identity: PrivateKey) -> Certificate:
    """The extension's signature covers another key than the certificate's."""
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = SignedKey(identity.public_key.to_protobuf(), identity.sign(SIGNATURE_PREFIX + spki))
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "2")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, signed.to_der()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Certificate(cert, key)


def _no_certificate() -> None:
    return None


BAD_CERTS: dict[str, Callable[[PrivateKey], Certificate | None]] = {
    "no-extension": lambda k: _plain_certificate(),
    "bad-extension-signature": _forged_certificate,
}


async def _expect_refused(dial: Awaitable[QuicSession]) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        await dial
    return info.value


@pytest.mark.parametrize("kind", sorted(BAD_CERTS))
async def test_server_refuses_a_bad_client_certificate(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey], kind: str
) -> None:
    pair.b._cert = BAD_CERTS[kind](keys[1])  # type: ignore[assignment]
    await _expect_refused(pair.b.dial(pair.a.local_address, pid(keys[0]), timeout=TIMEOUT))
    assert pair.inbound.empty()
    await until(lambda: not pair.a.sessions)  # the refused connection is gone


@pytest.mark.parametrize("kind", sorted(BAD_CERTS))
async def test_client_refuses_a_bad_server_certificate(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey], kind: str
) -> None:
    pair.a._cert = BAD_CERTS[kind](keys[0])  # type: ignore[assignment]
    error = await _expect_refused(pair.b.dial(pair.a.local_address, pid(keys[0]), timeout=TIMEOUT))
    assert isinstance(error.__cause__ or error, CertificateError)
    await until(lambda: not pair.a.sessions and not pair.b.sessions)
    assert pair.inbound.empty()


async def test_server_refuses_a_client_without_certificate(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    original = pair.b._configuration

    def no_cert(*, is_client: bool):  # type: ignore[no-untyped-def]
        config = original(is_client=is_client)
        config.certificate = None
        config.private_key = None
        return config

    pair.b._configuration = no_cert  # type: ignore[method-assign]
    # the client completes its side; only confirmation (never coming) tells it otherwise
    await _expect_refused(pair.b.dial(pair.a.local_address, pid(keys[0]), timeout=TIMEOUT))
    assert pair.inbound.empty()
    await until(lambda: not pair.a.sessions)


async def test_wrong_peer_id_is_refused_by_the_dialer(pair: Pair) -> None:
    other = pid(PrivateKey.generate())
    error = await _expect_refused(pair.b.dial(pair.a.local_address, other, timeout=TIMEOUT))
    assert isinstance(error.__cause__ or error, PeerIDMismatchError)
    await until(lambda: not pair.b.sessions and not pair.a.sessions)
    assert pair.inbound.empty()


async def test_a_good_certificate_after_refusals_still_works(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    await _expect_refused(
        pair.b.dial(pair.a.local_address, pid(PrivateKey.generate()), timeout=TIMEOUT)
    )
    pair.b._cert = make_certificate(keys[1])
    client, server = await pair.dial(pid(keys[0]))
    assert server.remote_peer == pid(keys[1]) and client.is_ready


# --- streams --------------------------------------------------------------------------------------


async def test_stream_round_trip_with_half_close(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    payload = os.urandom(300_000)
    out = await client.open_stream()
    await out.write(payload)
    await out.close()
    inbound = await server.accept_stream()
    got = bytearray()
    while chunk := await inbound.read():
        got += chunk
    assert bytes(got) == payload
    await inbound.write(b"answer")
    await inbound.close()
    assert await out.read() == b"answer"
    assert await out.read() == b""
    await until(lambda: client.num_streams == 0 and server.num_streams == 0)
    assert out.is_fully_closed and inbound.is_fully_closed


async def test_reset_reaches_the_peer(pair: Pair, keys: tuple[PrivateKey, PrivateKey]) -> None:
    client, server = await pair.dial(pid(keys[0]))
    out = await client.open_stream()
    await out.write(b"x")
    inbound = await server.accept_stream()
    assert await inbound.read() == b"x"
    await out.reset()
    with pytest.raises(StreamResetError):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await inbound.read()
    await until(lambda: server.num_streams == 0)
    with pytest.raises(StreamResetError):
        await out.write(b"more")


async def test_on_end_runs_once_when_the_stream_ends(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    ended: list[int] = []
    out = await client.open_stream()
    out.on_end(lambda: ended.append(1))
    await out.write(b"a")
    await out.close()
    inbound = await server.accept_stream()
    assert await inbound.read() == b"a"
    await inbound.close()
    await out.wait_remote_closed()
    await until(lambda: ended == [1])


async def test_write_waits_for_a_reader_and_the_receive_window_bounds_memory(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    window = client.config.max_stream_data
    payload = os.urandom(3 * window)
    out = await client.open_stream()
    writer = asyncio.create_task(out.write(payload))
    await until(lambda: client.send_buffered(out.stream_id) > client.high_water)
    inbound = await server.accept_stream()
    # nobody reads: the peer holds at most one window; the writer is blocked, not done
    await until(lambda: inbound.buffered >= window // 2)
    for _ in range(20):
        await asyncio.sleep(0.01)
        assert inbound.buffered <= window
    assert not writer.done()
    got = bytearray()
    while len(got) < len(payload):
        got += await asyncio.wait_for(inbound.read(), TIMEOUT)
    await asyncio.wait_for(writer, TIMEOUT)
    assert bytes(got) == payload


async def test_connection_close_ends_streams_and_accept(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    out = await client.open_stream()
    await out.write(b"x")
    inbound = await server.accept_stream()
    await client.close()
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    # ended when the CONNECTION_CLOSE arrived, not after aioquic's draining period
    assert server.quic._state is QuicConnectionState.DRAINING
    assert await inbound.read() == b"x"  # what arrived stays readable
    with pytest.raises(SessionClosedError):
        await inbound.read()
    with pytest.raises(SessionClosedError):
        await server.accept_stream()
    with pytest.raises(SessionClosedError):
        await client.open_stream()
    await until(lambda: not pair.a.sessions and not pair.b.sessions)


async def test_idle_connection_is_closed_by_the_idle_timeout(
    keys: tuple[PrivateKey, PrivateKey],
) -> None:
    inbound: asyncio.Queue[QuicSession] = asyncio.Queue()
    a = endpoint(keys[0], inbound, idle_timeout=0.5, keepalive_interval=None)
    b = endpoint(keys[1], idle_timeout=0.5, keepalive_interval=None)
    await a.open("127.0.0.1", 0)
    await b.open("127.0.0.1", 0)
    try:
        client = await b.dial(a.local_address, pid(keys[0]), timeout=TIMEOUT)
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    finally:
        await a.close()
        await b.close()


async def test_keepalive_keeps_an_idle_connection_open(
    keys: tuple[PrivateKey, PrivateKey],
) -> None:
    inbound: asyncio.Queue[QuicSession] = asyncio.Queue()
    # idle 1.5 s: a loaded machine may starve the loop for a while; pings every 0.1 s
    a = endpoint(keys[0], inbound, idle_timeout=1.5, keepalive_interval=0.1)
    b = endpoint(keys[1], idle_timeout=1.5, keepalive_interval=0.1)
    await a.open("127.0.0.1", 0)
    await b.open("127.0.0.1", 0)
    try:
        client = await b.dial(a.local_address, pid(keys[0]), timeout=TIMEOUT)
        pings = 0
        while pings < 60:  # two idle timeouts' worth of pings
            await asyncio.sleep(0.05)
            pings += 1
            assert not client.is_closed
    finally:
        await a.close()
        await b.close()


# --- hostile datagrams ----------------------------------------------------------------------------


async def test_garbage_datagrams_are_dropped_cheaply(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=pair.a.local_address
    )
    try:
        junk = [b"", b"\x00", os.urandom(50), b"\xc0" + os.urandom(1300), os.urandom(1400)]
        junk += [b"\x40" + os.urandom(30) for _ in range(50)]
        for datagram in junk:
            transport.sendto(datagram)
        await until(lambda: pair.a.dropped >= len(junk) - 5)
        assert not pair.a.sessions
        _, server = await pair.dial(pid(keys[0]))  # still serving
        assert server.remote_peer == pid(keys[1])
    finally:
        transport.close()


async def test_unknown_version_gets_version_negotiation(pair: Pair) -> None:
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    class Catch(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            got.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Catch, remote_addr=pair.a.local_address)
    try:
        # long header, version 0x1a2a3a4a, dcid 8 bytes, scid 8 bytes, padded to 1200
        packet = b"\xc0" + bytes.fromhex("1a2a3a4a") + b"\x08" + b"D" * 8 + b"\x08" + b"S" * 8
        transport.sendto(packet + b"\x00" * (1200 - len(packet)))
        answer = await asyncio.wait_for(got.get(), TIMEOUT)
        assert answer[1:5] == b"\x00\x00\x00\x00"  # version negotiation
        assert b"\x00\x00\x00\x01" in answer[5:]  # offers QUIC v1
        transport.sendto(packet)  # too small: no answer (no amplification)
        await asyncio.sleep(0.1)
        assert got.empty()
    finally:
        transport.close()


async def test_streams_opened_before_any_write_get_distinct_ids(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    streams = [await client.open_stream() for _ in range(5)]
    assert len({s.stream_id for s in streams}) == 5
    for i, stream in enumerate(streams):
        await stream.write(bytes([i]))
        await stream.close()
    got = set()
    for _ in range(5):
        inbound = await asyncio.wait_for(server.accept_stream(), TIMEOUT)
        got.add(await inbound.read())
    assert got == {bytes([i]) for i in range(5)}


class TinyBudget:
    """A connection memory budget of ``limit`` bytes (the host's scope, in small)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def reserve_memory(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release_memory(self, size: int) -> None:
        self.used -= size

    def headroom(self) -> int:
        return self.limit - self.used


async def test_a_stream_beyond_the_memory_budget_is_reset_and_its_bytes_released(
    pair: Pair, keys: tuple[PrivateKey, PrivateKey]
) -> None:
    client, server = await pair.dial(pid(keys[0]))
    budget = TinyBudget(64 * 1024)
    server.memory = budget
    out = await client.open_stream()
    writer = asyncio.create_task(out.write(os.urandom(256 * 1024)))
    inbound = await server.accept_stream()  # never read: the bytes pile up in the budget
    await until(lambda: inbound.is_reset)
    assert budget.used == 0  # everything it held went back
    with pytest.raises(StreamResetError):
        await inbound.read()
    await asyncio.wait_for(asyncio.gather(writer, return_exceptions=True), TIMEOUT)
    await until(lambda: out.is_reset)  # the writer's side learns it too
    with pytest.raises(StreamResetError):
        await out.write(b"more")
    other = await client.open_stream()  # the connection itself stays
    await other.write(b"still here")
    await other.close()
    nxt = await server.accept_stream()
    assert await nxt.read() == b"still here"


async def test_retry_validates_the_client_address_before_any_state(
    keys: tuple[PrivateKey, PrivateKey],
) -> None:
    inbound: asyncio.Queue[QuicSession] = asyncio.Queue()
    a = endpoint(keys[0], inbound, retry_above=0)  # always ask for a Retry
    b = endpoint(keys[1])
    await a.open("127.0.0.1", 0)
    await b.open("127.0.0.1", 0)
    try:
        client = await b.dial(a.local_address, pid(keys[0]), timeout=TIMEOUT)
        server = await asyncio.wait_for(inbound.get(), TIMEOUT)
        assert a.retries == 1
        assert client.remote_peer == pid(keys[0]) and server.remote_peer == pid(keys[1])
        stream = await client.open_stream()
        await stream.write(b"after retry")
        await stream.close()
        assert await (await server.accept_stream()).read() == b"after retry"
    finally:
        await a.close()
        await b.close()


async def test_a_stream_that_comes_with_the_handshake_end_waits_for_accept(
    keys: tuple[PrivateKey, PrivateKey],
) -> None:
    # The server's first stream often shares a read batch with its HANDSHAKE_DONE (the
    # dialer becomes ready while the same batch is processed): the stream must wait in
    # the backlog, not be refused as "before the connection is up". Datagrams are
    # carried by hand between two socketless endpoints so that they do share one batch.
    from .test_quic_fuzz import Capture

    greeted: list[asyncio.Task[None]] = []

    async def greet(session: QuicSession) -> None:
        stream = await session.open_stream()
        await stream.write(b"hello first")
        await stream.close()

    def on_inbound(session: QuicSession) -> None:
        greeted.append(asyncio.get_running_loop().create_task(greet(session)))

    server, client = Capture(keys[0], on_inbound=on_inbound), Capture(keys[1])
    server_addr, client_addr = ("127.0.0.1", 50002), ("127.0.0.1", 50001)
    dial = asyncio.create_task(client.dial(server_addr, pid(keys[0]), timeout=TIMEOUT))
    try:
        for _ in range(100):  # bounded: a handshake takes a few exchanges
            for src, dst, addr in ((client, server, client_addr), (server, client, server_addr)):
                await asyncio.sleep(0.02)  # tasks (the server's greet) run, output piles up
                batch, src.fake.sent[:] = list(src.fake.sent), []
                for data, _ in batch:
                    dst._receive(data, addr)
                dst._flush()  # one batch: HANDSHAKE_DONE and the stream data together
            if dial.done() and greeted and greeted[0].done():
                break
        session = await dial
        await asyncio.sleep(0.01)
        for data, _ in server.fake.sent:
            client._receive(data, server_addr)
        client._flush()
        stream = await asyncio.wait_for(session.accept_stream(), 1.0)
        assert await stream.read() == b"hello first"
    finally:
        dial.cancel()
        await asyncio.gather(dial, *greeted, return_exceptions=True)
        await server.close()
        await client.close()


async def test_every_connection_id_we_announce_is_routed_before_it_leaves(pair: Pair) -> None:
    """A peer may switch to a connection id the moment it reads our NEW_CONNECTION_ID
    (quinn does when the handshake completes): the id must already be routed when the
    datagram announcing it is sent. aioquic reports new ids only as events queued while
    sending, so js's HANDSHAKE_DONE to our new id was dropped as unroutable and the dial
    waited for quinn's PTO (~35 ms), a third of back-to-back dials to js."""
    unrouted: list[bytes] = []

    def checking(ep: QuicEndpoint) -> None:
        send = ep.sendto

        def sendto(data: bytes, addr: tuple[str, int]) -> None:
            for session in ep.sessions:
                for cid in session.quic._host_cids:
                    if cid.was_sent and cid.cid not in ep._routes:
                        unrouted.append(cid.cid)
            send(data, addr)

        ep.sendto = sendto  # type: ignore[method-assign]

    checking(pair.a)
    checking(pair.b)
    client, server = await pair.dial(None)
    stream = await client.open_stream()
    await stream.write(b"x")
    await stream.close()
    got = await server.accept_stream()
    assert await got.read() == b"x"
    assert len(client.quic._host_cids) > 1  # the client did announce new ids
    assert unrouted == []


def record_datagrams(pair: Pair) -> list[int]:
    """The sizes of the datagrams ``pair.b`` sends from now on (a live list)."""
    sent: list[int] = []
    send = pair.b.sendto

    def sendto(data: bytes, addr: tuple[str, int]) -> None:
        sent.append(len(data))
        send(data, addr)

    pair.b.sendto = sendto  # type: ignore[method-assign]
    return sent


async def test_writes_made_in_one_step_share_a_datagram(pair: Pair) -> None:
    """A task's writes without an await between them (multistream header, protocol,
    message, FIN) leave together: one datagram, not one each (and one ACK each back)."""
    client, server = await pair.dial(None)
    await asyncio.sleep(0.05)  # the handshake's last ACKs are out
    sent = record_datagrams(pair)
    stream = await client.open_stream()
    for part in (b"/multistream/1.0.0\n", b"/ipfs/id/1.0.0\n", b"hello"):
        await stream.write(part)
    await stream.close()
    got = await server.accept_stream()
    data = b""
    while chunk := await got.read():
        data += chunk
    assert data == b"/multistream/1.0.0\n/ipfs/id/1.0.0\nhello"
    assert len(sent) >= 1 and sent[0] < 200  # the stream's bytes and FIN in the first one
    assert len(sent) <= 2  # at most an ACK of the server's ACK besides


async def test_bytes_written_just_before_close_still_leave(pair: Pair) -> None:
    """Writes leave at the end of the loop iteration; closing the connection in the same
    step sends them (their own datagram) before CONNECTION_CLOSE, not never."""
    client, _server = await pair.dial(None)
    stream = await client.open_stream()
    await asyncio.sleep(0.05)  # the handshake's last ACKs are out
    sent = record_datagrams(pair)
    await stream.write(b"last words" * 10)
    await client.close()
    assert len(sent) == 2 and sent[0] > 100  # the stream's bytes, then the close
