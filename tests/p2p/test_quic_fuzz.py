"""Hostile input against the QUIC entry point and the libp2p certificate parser.

Datagrams go straight into :meth:`QuicEndpoint.datagram_received` (no socket needed):
random bytes, and real client Initials and server flights with bytes flipped or cut. The
endpoint must never raise, must count what it drops, and garbage must never produce an
authenticated connection. Certificates: random DER-ish bytes and mutated valid
certificates only ever raise :class:`CertificateError`.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.endpoint import QuicEndpoint
from zikade_py.p2p.quic.hooks import Libp2pQuicConnection
from zikade_py.p2p.quic.session import QuicConfig, QuicSession
from zikade_py.p2p.tls import CertificateError, SignedKey, make_certificate, verify_certificate

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVER_KEY = PrivateKey.generate()
CLIENT_KEY = PrivateKey.generate()
PEER_ADDR = ("127.0.0.1", 40000)
CERT = make_certificate(PrivateKey.generate()).der


class FakeSocket:
    """Stands in for the UDP socket: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append((data, addr))

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 1)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class Capture(QuicEndpoint):
    """An endpoint without a socket: what it would send is kept in ``sent``."""

    def __init__(self, key: PrivateKey, **kw: object) -> None:
        super().__init__(key, QuicConfig(), **kw)  # type: ignore[arg-type]
        self.fake = FakeSocket()
        self._sock = self.fake  # type: ignore[assignment]

    @property
    def sent(self) -> list[tuple[bytes, object]]:
        return self.fake.sent


_INITIAL: list[bytes] = []


async def client_initial() -> list[bytes]:
    """The datagram a real client sends first (its Initial with the ClientHello)."""
    if _INITIAL:
        return _INITIAL
    client = Capture(CLIENT_KEY)
    task = asyncio.create_task(
        client.dial(PEER_ADDR, PeerID.from_public_key(SERVER_KEY.public_key), timeout=0.05)
    )
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    _INITIAL.extend(d for d, _ in client.sent[:1])
    return _INITIAL


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] ^= value or 1
    if cut is not None and out:
        del out[cut % len(out) :]
    return bytes(out)


flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)


@FUZZ
@given(datagrams=st.lists(st.binary(max_size=1500), min_size=1, max_size=10))
async def test_random_datagrams_are_dropped(datagrams: list[bytes]) -> None:
    inbound: list[QuicSession] = []
    ep = Capture(SERVER_KEY, on_inbound=inbound.append)
    try:
        for data in datagrams:
            ep.datagram_received(data, PEER_ADDR)
        assert not inbound
        assert ep.dropped + len(ep.sessions) >= 1 or all(len(d) < 1200 for d in datagrams)
        assert all(not s.is_ready for s in ep.sessions)
    finally:
        await ep.close()


@FUZZ
@given(flip=flips, cut=st.one_of(st.none(), st.integers(0, 1500)), repeat=st.integers(1, 3))
async def test_mutated_client_initials_never_crash(
    flip: list[tuple[int, int]], cut: int | None, repeat: int
) -> None:
    initial = (await client_initial())[0]
    inbound: list[QuicSession] = []
    ep = Capture(SERVER_KEY, on_inbound=inbound.append)
    try:
        for _ in range(repeat):
            ep.datagram_received(mutate(initial, flip, cut), PEER_ADDR)
        await asyncio.sleep(0)
        # a half-handshake may exist, but nothing is authenticated without a client Finished
        assert not inbound
        assert all(not s.is_ready for s in ep.sessions)
    finally:
        await ep.close()


async def test_unmutated_initial_starts_exactly_one_handshake() -> None:
    initial = (await client_initial())[0]
    ep = Capture(SERVER_KEY, on_inbound=lambda s: None)
    try:
        ep.datagram_received(initial, PEER_ADDR)
        ep.datagram_received(initial, PEER_ADDR)  # a retransmission: same connection
        assert len(ep.sessions) == 1
        assert ep.sent, "the server answered the ClientHello"
    finally:
        await ep.close()


async def test_admission_refusal_drops_the_initial() -> None:
    initial = (await client_initial())[0]
    asked: list[str] = []

    def admit(ip: str) -> None:
        asked.append(ip)
        return None

    ep = Capture(SERVER_KEY, on_inbound=lambda s: None, admit=admit)
    try:
        ep.datagram_received(initial, PEER_ADDR)
        assert asked == ["127.0.0.1"]
        assert not ep.sessions and not ep.sent and ep.dropped == 1
    finally:
        await ep.close()


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes_are_not_a_certificate(data: bytes) -> None:
    with pytest.raises(CertificateError):
        verify_certificate(data)


@FUZZ
@given(flip=flips, cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_mutated_certificates_raise_only_certificate_error(
    flip: list[tuple[int, int]], cut: int | None
) -> None:
    data = mutate(CERT, flip, cut)
    if data == CERT:
        verify_certificate(data)
        return
    with contextlib.suppress(CertificateError):  # the only acceptable failure
        verify_certificate(data)  # (a flip in an unsigned part may still verify)


@FUZZ
@given(data=st.binary(max_size=300))
def test_signed_key_parser_raises_only_certificate_error(data: bytes) -> None:
    try:
        parsed = SignedKey.from_der(data)
    except CertificateError:
        return
    assert parsed.to_der() == data  # strict DER: what parses re-encodes identically


async def test_under_load_an_initial_gets_a_stateless_retry() -> None:
    initial = (await client_initial())[0]
    ep = Capture(SERVER_KEY, on_inbound=lambda s: None)
    ep._config = QuicConfig(retry_above=0)
    try:
        ep.datagram_received(initial, PEER_ADDR)
        assert not ep.sessions and ep.retries == 1
        (retry, _), *_ = ep.sent
        assert retry[0] & 0xF0 == 0xF0  # long header, type Retry
        assert len(retry) < len(initial)  # no amplification
        config = Capture(CLIENT_KEY)._configuration(is_client=True)
        config.token = b"\x07" * 40  # a token we never issued
        forged = Libp2pQuicConnection(configuration=config)
        forged.connect(PEER_ADDR, now=asyncio.get_running_loop().time())
        (first, _), *_ = forged.datagrams_to_send(now=asyncio.get_running_loop().time())
        ep.datagram_received(first, PEER_ADDR)
        # as good as no token (it may be another server's NEW_TOKEN): a Retry again
        assert not ep.sessions and ep.retries == 2
    finally:
        await ep.close()
