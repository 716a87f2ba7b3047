"""Hostile bytes against the Noise layer: only our own exception classes, never a hang.

Every example runs over an in-memory stream that serves the fuzzed bytes and then EOF, so a
correct implementation always finishes; a hang would trip the handshake/test timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import BufferedReader, IncompleteReadError
from zikade_py.p2p.noise import (
    InvalidHandshakePayloadError,
    NoiseDecryptError,
    NoiseHandshakeError,
    NoiseHandshakeTimeoutError,
    NoiseSession,
    frame,
    make_handshake_payload,
    secure_inbound,
    secure_outbound,
    verify_handshake_payload,
)
from zikade_py.p2p.pb.noise_pb2 import NoiseExtensions, NoiseHandshakePayload

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = PrivateKey.generate()
PEER_KEY = PrivateKey.generate()
chunk_sizes = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=8)


class ScriptedStream:
    """Serves ``data`` in the given chunk sizes (cycled), then EOF; records writes."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._pos = 0
        self._sizes = sizes
        self._reads = 0
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        size = min(max_bytes, self._sizes[self._reads % len(self._sizes)])
        self._reads += 1
        out = self._data[self._pos : self._pos + size]
        self._pos += len(out)
        await asyncio.sleep(0)
        return out

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


def expect_only_our_errors(run: Callable[[], Awaitable[object]]) -> BaseException | None:
    """Run ``run`` and return its exception, failing on anything outside the contract."""

    async def main() -> BaseException | None:
        try:
            await run()
        except (NoiseHandshakeError, IncompleteReadError) as exc:
            assert not isinstance(exc, NoiseHandshakeTimeoutError), "hung on a finite stream"
            return exc
        return None

    return asyncio.run(main())


@FUZZ
@given(data=st.binary(max_size=600), sizes=chunk_sizes)
def test_random_bytes_to_responder(data: bytes, sizes: list[int]) -> None:
    stream = ScriptedStream(data, sizes)
    exc = expect_only_our_errors(lambda: secure_inbound(BufferedReader(stream), KEY, timeout=5))
    assert exc is not None


@FUZZ
@given(data=st.binary(max_size=600), sizes=chunk_sizes)
def test_random_bytes_to_initiator(data: bytes, sizes: list[int]) -> None:
    stream = ScriptedStream(data, sizes)
    exc = expect_only_our_errors(
        lambda: secure_outbound(BufferedReader(stream), KEY, None, timeout=5)
    )
    assert exc is not None


@FUZZ
@given(msg1=st.binary(min_size=32, max_size=80), msg3=st.binary(max_size=400))
def test_well_framed_garbage_to_responder(msg1: bytes, msg3: bytes) -> None:
    # correct framing gets the garbage past the length prefix and into the cryptography
    stream = ScriptedStream(frame(msg1) + frame(msg3), [65536])
    exc = expect_only_our_errors(lambda: secure_inbound(BufferedReader(stream), KEY, timeout=5))
    assert isinstance(exc, NoiseHandshakeError)
    # message 2 went out unless message 1 held a low-order point (then nothing was sent)
    assert len(stream.written) in (0, 2 + 200)


@FUZZ
@given(msg2=st.binary(max_size=400))
def test_well_framed_garbage_to_initiator(msg2: bytes) -> None:
    stream = ScriptedStream(frame(msg2), [65536])
    exc = expect_only_our_errors(
        lambda: secure_outbound(BufferedReader(stream), KEY, None, timeout=5)
    )
    assert isinstance(exc, NoiseHandshakeError)


def _sessions() -> tuple[proto.CipherState, proto.CipherState]:
    """Transport ciphers ``(peer_send, our_recv)`` from a real in-memory handshake."""
    init = proto.HandshakeState(True, X25519PrivateKey.generate())
    resp = proto.HandshakeState(False, X25519PrivateKey.generate())
    resp.read_message(init.write_message(b""))
    init.read_message(resp.write_message(b""))
    resp.read_message(init.write_message(b""))
    peer_send, _ = init.split()
    _, our_recv = resp.split()
    return peer_send, our_recv


async def _drain(session: NoiseSession) -> bytes:
    out = bytearray()
    for _ in range(10_000):
        chunk = await session.read(4096)
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("read never reached EOF")


@FUZZ
@given(data=st.binary(max_size=2000), sizes=chunk_sizes)
def test_random_transport_bytes(data: bytes, sizes: list[int]) -> None:
    _, recv = _sessions()
    reader = BufferedReader(ScriptedStream(data, sizes))
    session = NoiseSession(reader, proto.CipherState(bytes(32)), recv, PEER_KEY.public_key, b"")
    exc = expect_only_our_errors(lambda: _drain(session))
    if data:
        assert exc is not None  # nothing random authenticates


@FUZZ
@given(
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
    flip_at=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
    sizes=chunk_sizes,
)
def test_bit_flipped_transport_frames(
    messages: list[bytes], flip_at: int, bit: int, sizes: list[int]
) -> None:
    send, recv = _sessions()
    wire = bytearray(b"".join(frame(send.encrypt_with_ad(b"", m)) for m in messages))
    wire[flip_at % len(wire)] ^= 1 << bit
    reader = BufferedReader(ScriptedStream(bytes(wire), sizes))
    session = NoiseSession(reader, proto.CipherState(bytes(32)), recv, PEER_KEY.public_key, b"")
    exc = expect_only_our_errors(lambda: _drain(session))
    # a flip in a length prefix may only truncate the stream; anywhere else it must fail auth
    assert isinstance(exc, NoiseDecryptError | IncompleteReadError)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_payloads(data: bytes) -> None:
    with pytest.raises(InvalidHandshakePayloadError):
        verify_handshake_payload(data, bytes(32))


@FUZZ
@given(
    identity_key=st.binary(max_size=80) | st.just(KEY.public_key.to_protobuf()),
    identity_sig=st.binary(max_size=80),
    muxers=st.lists(st.text(max_size=20), max_size=3),
)
def test_structured_bad_payloads(
    identity_key: bytes, identity_sig: bytes, muxers: list[str]
) -> None:
    payload = NoiseHandshakePayload(
        identity_key=identity_key,
        identity_sig=identity_sig,
        extensions=NoiseExtensions(stream_muxers=muxers),
    ).SerializeToString()
    with pytest.raises(InvalidHandshakePayloadError):
        verify_handshake_payload(payload, bytes(32))


@FUZZ
@given(muxers=st.lists(st.text(max_size=20), max_size=3), certhashes=st.lists(st.binary()))
def test_extensions_are_ignored(muxers: list[str], certhashes: list[bytes]) -> None:
    message = NoiseHandshakePayload.FromString(make_handshake_payload(KEY, bytes(32)))
    message.extensions.CopyFrom(
        NoiseExtensions(stream_muxers=muxers, webtransport_certhashes=certhashes)
    )
    assert verify_handshake_payload(message.SerializeToString(), bytes(32)) == KEY.public_key


@FUZZ
@given(
    stage=st.integers(min_value=0, max_value=2),
    message=st.binary(max_size=300),
)
def test_handshake_state_raises_only_protocol_errors(stage: int, message: bytes) -> None:
    init = proto.HandshakeState(True, X25519PrivateKey.generate())
    resp = proto.HandshakeState(False, X25519PrivateKey.generate())
    if stage == 0:
        target = resp  # garbage as message 1
    else:
        resp.read_message(init.write_message(b""))
        target = init  # garbage as message 2
        if stage == 2:
            init.read_message(resp.write_message(b""))
            init.write_message(b"")
            target = resp  # garbage as message 3
    try:
        target.read_message(message)
        if stage == 0:  # message 1 is only a key; writing message 2 does the DH
            target.write_message(b"")
    except proto.NoiseProtocolError:
        return
    assert stage == 0, "garbage authenticated as message 2 or 3"
