"""libp2p Noise over real TCP on 127.0.0.1: handshake, identity checks, framing, tampering."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.crypto import KeyType, PrivateKey, PublicKey
from zikade_py.p2p.io import BufferedReader, ByteStream, IncompleteReadError
from zikade_py.p2p.noise import (
    MAX_PLAINTEXT_LEN,
    NOISE_PROTOCOL_ID,
    SIGNATURE_PREFIX,
    InvalidHandshakePayloadError,
    NoiseDecryptError,
    NoiseHandshakeError,
    NoiseHandshakeTimeoutError,
    NoiseSession,
    PeerIDMismatchError,
    frame,
    make_handshake_payload,
    read_frame,
    secure_inbound,
    secure_outbound,
    verify_handshake_payload,
)
from zikade_py.p2p.pb.noise_pb2 import NoiseHandshakePayload
from zikade_py.p2p.peer_id import PeerID

from .tcp_pair import tcp_pair

pytestmark = pytest.mark.timeout(30)

SPEC_SEED = bytes.fromhex("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d")


class Tap:
    """A ByteStream wrapper that records every write and may rewrite it first."""

    def __init__(
        self, inner: ByteStream, tamper: Callable[[int, bytes], bytes] | None = None
    ) -> None:
        self.inner = inner
        self.tamper = tamper
        self.writes: list[bytes] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def write(self, data: bytes) -> None:
        if self.tamper is not None:
            data = self.tamper(len(self.writes), data)
        self.writes.append(data)
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


def flip_in_write(index: int, offset: int) -> Callable[[int, bytes], bytes]:
    """A tamper function flipping one bit at ``offset`` of write number ``index``."""

    def tamper(i: int, data: bytes) -> bytes:
        if i != index:
            return data
        out = bytearray(data)
        out[offset] ^= 0x10
        return bytes(out)

    return tamper


def split_frames(data: bytes) -> list[int]:
    """Lengths of the 2-byte-framed messages in ``data`` (which must hold whole frames)."""
    sizes, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 2], "big")
        sizes.append(size)
        pos += 2 + size
    assert pos == len(data)
    return sizes


async def secure_pair(
    client: ByteStream,
    srv: ByteStream,
    client_key: PrivateKey,
    server_key: PrivateKey,
    expected: PeerID | None = None,
) -> tuple[NoiseSession, NoiseSession]:
    return await asyncio.gather(
        secure_outbound(BufferedReader(client), client_key, expected, timeout=5),
        secure_inbound(BufferedReader(srv), server_key, timeout=5),
    )


async def read_n(session: NoiseSession, n: int) -> bytes:
    out = bytearray()
    for _ in range(10_000):
        if len(out) >= n:
            break
        chunk = await session.read()
        assert chunk, "unexpected EOF"
        out += chunk
    return bytes(out)


async def manual_peer(
    reader: BufferedReader,
    initiator: bool,
    make_payload: Callable[[bytes], bytes],
) -> tuple[proto.CipherState, proto.CipherState, bytes]:
    """A hand-driven Noise peer sending ``make_payload(our_static)``; returns its ciphers."""
    hs = proto.HandshakeState(initiator, X25519PrivateKey.generate())
    stream = reader.stream
    if initiator:
        await stream.write(frame(hs.write_message(b"")))
        theirs = hs.read_message(await read_frame(reader))
        await stream.write(frame(hs.write_message(make_payload(hs.local_static))))
    else:
        hs.read_message(await read_frame(reader))
        await stream.write(frame(hs.write_message(make_payload(hs.local_static))))
        theirs = hs.read_message(await read_frame(reader))
    send, recv = hs.split()
    return send, recv, theirs


async def closing_on_error(
    handshake: Coroutine[Any, Any, NoiseSession], stream: ByteStream
) -> NoiseSession:
    """Close ``stream`` if the handshake fails, as the host does."""
    try:
        return await handshake
    except BaseException:
        await stream.close()
        raise


def payload_with(identity_key: bytes, identity_sig: bytes) -> bytes:
    return NoiseHandshakePayload(
        identity_key=identity_key, identity_sig=identity_sig
    ).SerializeToString()


def test_protocol_id() -> None:
    assert NOISE_PROTOCOL_ID == "/noise"


def test_payload_matches_wire_doc_example() -> None:
    key = PrivateKey.from_seed(SPEC_SEED)
    payload = make_handshake_payload(key, bytes(range(32)))
    assert len(payload) == 104
    assert payload[:2] == b"\x0a\x24"
    assert payload[2:38] == key.public_key.to_protobuf()
    assert payload[38:40] == b"\x12\x40"
    assert payload[40:].hex() == (
        "6748f6f4c32e36aa2ef8df283a99a76275a9358b224844c53ced6ae4789262d0"
        "0a86a6fe47a578ae243faa2a3ed9f4fd22d1bc38527f4797548e568ca43f500c"
    )
    assert verify_handshake_payload(payload, bytes(range(32))) == key.public_key
    with pytest.raises(InvalidHandshakePayloadError):
        verify_handshake_payload(payload, bytes(range(1, 33)))


async def test_handshake_and_data_both_ways() -> None:
    ck, sk = PrivateKey.generate(), PrivateKey.generate()
    async with tcp_pair() as (client, srv):
        c_tap, s_tap = Tap(client), Tap(srv)
        cs, ss = await secure_pair(c_tap, s_tap, ck, sk, PeerID.from_public_key(sk.public_key))
        assert cs.remote_peer == PeerID.from_public_key(sk.public_key)
        assert cs.remote_public_key == sk.public_key
        assert ss.remote_peer == PeerID.from_public_key(ck.public_key)
        assert cs.handshake_hash == ss.handshake_hash
        # WIRE.md §4: msg1 32 bytes, msg2 200, msg3 168 for Ed25519 without extensions
        assert [len(w) for w in c_tap.writes] == [2 + 32, 2 + 168]
        assert [len(w) for w in s_tap.writes] == [2 + 200]

        await cs.write(b"hello from the dialer")
        assert await read_n(ss, 21) == b"hello from the dialer"
        await ss.write(b"and back")
        assert await read_n(cs, 8) == b"and back"
        await cs.write(b"")
        assert len(c_tap.writes) == 3  # msg1, msg3, one frame: the empty write sent nothing


async def test_one_mib_in_one_write_is_chunked() -> None:
    data = os.urandom(1 << 20)
    async with tcp_pair() as (client, srv):
        c_tap = Tap(client)
        cs, ss = await secure_pair(c_tap, srv, PrivateKey.generate(), PrivateKey.generate())
        handshake_writes = len(c_tap.writes)
        received, _ = await asyncio.gather(read_n(ss, len(data)), cs.write(data))
        assert received == data
        sizes = split_frames(b"".join(c_tap.writes[handshake_writes:]))
        assert all(size <= 65535 for size in sizes)
        full, rest = divmod(len(data), MAX_PLAINTEXT_LEN)
        assert sizes == [65535] * full + [rest + 16]
        # and the other direction, with reads smaller than a frame
        back = os.urandom(200_000)
        got = bytearray()

        async def small_reads() -> None:
            for _ in range(10_000):
                if len(got) >= len(back):
                    return
                chunk = await cs.read(1000)
                assert 0 < len(chunk) <= 1000
                got.extend(chunk)

        await asyncio.gather(small_reads(), ss.write(back))
        assert bytes(got) == back


async def test_concurrent_writers_keep_nonce_order() -> None:
    async with tcp_pair() as (client, srv):
        cs, ss = await secure_pair(client, srv, PrivateKey.generate(), PrivateKey.generate())
        blobs = [bytes([i]) * 150_000 for i in range(6)]
        results = await asyncio.gather(
            read_n(ss, sum(map(len, blobs))), *(cs.write(b) for b in blobs)
        )
        received = results[0]
        assert isinstance(received, bytes)
        # each write is atomic with respect to the others
        assert sorted(received[i : i + 150_000] for i in range(0, len(received), 150_000)) == blobs


async def test_eof_reads_empty() -> None:
    async with tcp_pair() as (client, srv):
        cs, ss = await secure_pair(client, srv, PrivateKey.generate(), PrivateKey.generate())
        await cs.write(b"last words")
        await cs.close()
        assert await read_n(ss, 10) == b"last words"
        assert await ss.read() == b""


async def test_reader_with_prebuffered_bytes() -> None:
    # bytes that arrived with multistream-select sit in the reader's buffer
    ck, sk = PrivateKey.generate(), PrivateKey.generate()
    async with tcp_pair() as (client, srv):

        async def inbound() -> NoiseSession:
            early = await srv.reader.readexactly(10)  # part of message 1
            return await secure_inbound(BufferedReader(srv, early), sk, timeout=5)

        cs, ss = await asyncio.gather(
            secure_outbound(BufferedReader(client), ck, None, timeout=5), inbound()
        )
        await cs.write(b"ok")
        assert await read_n(ss, 2) == b"ok"


async def test_expected_peer_mismatch() -> None:
    ck, sk, other = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    async with tcp_pair() as (client, srv):
        results = await asyncio.gather(
            closing_on_error(
                secure_outbound(
                    BufferedReader(client), ck, PeerID.from_public_key(other.public_key), timeout=5
                ),
                client,
            ),
            secure_inbound(BufferedReader(srv), sk, timeout=5),
            return_exceptions=True,
        )
        # the dialer aborts before message 3 and hangs up, so the listener fails too
        mismatch = results[0]
        assert isinstance(mismatch, PeerIDMismatchError)
        assert mismatch.actual == PeerID.from_public_key(sk.public_key)
        assert mismatch.expected == PeerID.from_public_key(other.public_key)
        assert isinstance(results[1], IncompleteReadError)


async def test_expected_peer_match_hashed_remote_id() -> None:
    # an ECDSA identity has a sha2-256 (Qm…) peer id; noise must accept any libp2p key type
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    der = ecdsa.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    remote_key = PublicKey(KeyType.ECDSA, der)
    remote_id = PeerID.from_public_key(remote_key)
    assert str(remote_id).startswith("Qm")

    def ecdsa_payload(static: bytes) -> bytes:
        sig = ecdsa.sign(SIGNATURE_PREFIX + static, ec.ECDSA(hashes.SHA256()))
        return payload_with(remote_key.to_protobuf(), sig)

    async with tcp_pair() as (client, srv):
        cs, (send, recv, _) = await asyncio.gather(
            secure_outbound(BufferedReader(client), PrivateKey.generate(), remote_id, timeout=5),
            manual_peer(BufferedReader(srv), False, ecdsa_payload),
        )
        assert cs.remote_peer == remote_id
        # zero-length frames are legal and must not look like EOF
        await srv.write(frame(send.encrypt_with_ad(b"", b"")))
        await srv.write(frame(send.encrypt_with_ad(b"", b"after empty")))
        assert await read_n(cs, 11) == b"after empty"
        await cs.write(b"x")
        raw = await read_frame(BufferedReader(srv))
        assert recv.decrypt_with_ad(b"", raw) == b"x"


def _bad_payloads(key: PrivateKey, other: PrivateKey) -> dict[str, Callable[[bytes], bytes]]:
    def tampered_sig(static: bytes) -> bytes:
        sig = bytearray(key.sign(SIGNATURE_PREFIX + static))
        sig[5] ^= 0x01
        return payload_with(key.public_key.to_protobuf(), bytes(sig))

    return {
        "tampered signature": tampered_sig,
        "key of another peer": lambda s: payload_with(
            other.public_key.to_protobuf(), key.sign(SIGNATURE_PREFIX + s)
        ),
        "signature over another static key": lambda s: make_handshake_payload(key, bytes(32)),
        "signature without prefix": lambda s: payload_with(
            key.public_key.to_protobuf(), key.sign(s)
        ),
        "raw key instead of protobuf": lambda s: payload_with(
            key.public_key.data, key.sign(SIGNATURE_PREFIX + s)
        ),
        "missing signature": lambda s: NoiseHandshakePayload(
            identity_key=key.public_key.to_protobuf()
        ).SerializeToString(),
        "empty payload": lambda s: b"",
        "not a protobuf": lambda s: b"\xff\xff\xff",
    }


BAD_PAYLOADS = list(_bad_payloads(PrivateKey.generate(), PrivateKey.generate()).items())


@pytest.mark.parametrize("bad", BAD_PAYLOADS, ids=[name for name, _ in BAD_PAYLOADS])
@pytest.mark.parametrize("we_dial", [True, False], ids=["outbound", "inbound"])
async def test_bad_payload_rejected(
    bad: tuple[str, Callable[[bytes], bytes]], we_dial: bool
) -> None:
    _, make_payload = bad
    async with tcp_pair() as (client, srv):
        key = PrivateKey.generate()
        handshake = (
            secure_outbound(BufferedReader(client), key, None, timeout=5)
            if we_dial
            else secure_inbound(BufferedReader(client), key, timeout=5)
        )
        results = await asyncio.gather(
            closing_on_error(handshake, client),
            manual_peer(BufferedReader(srv), we_dial is False, make_payload),
            return_exceptions=True,
        )
        assert isinstance(results[0], InvalidHandshakePayloadError), results


async def test_flipped_handshake_bit_is_rejected() -> None:
    async with tcp_pair() as (client, srv):
        # flip a bit inside the encrypted static key of message 2
        s_tap = Tap(srv, flip_in_write(0, 2 + 40))
        results = await asyncio.gather(
            closing_on_error(
                secure_outbound(BufferedReader(client), PrivateKey.generate(), None, timeout=5),
                client,
            ),
            secure_inbound(BufferedReader(s_tap), PrivateKey.generate(), timeout=5),
            return_exceptions=True,
        )
        assert isinstance(results[0], NoiseDecryptError)
        assert isinstance(results[1], IncompleteReadError)


async def test_flipped_transport_bit_is_rejected() -> None:
    async with tcp_pair() as (client, srv):
        # writes: msg1, msg3, then the first transport frame (bit inside the ciphertext)
        c_tap = Tap(client, flip_in_write(2, 2 + 3))
        cs, ss = await secure_pair(c_tap, srv, PrivateKey.generate(), PrivateKey.generate())
        await cs.write(b"this frame is tampered with")
        with pytest.raises(NoiseDecryptError):
            await ss.read()
        await cs.write(b"later frames do not resync")
        with pytest.raises(NoiseDecryptError):
            await ss.read()


async def test_replayed_frame_is_rejected() -> None:
    async with tcp_pair() as (client, srv):
        c_tap = Tap(client)
        cs, ss = await secure_pair(c_tap, srv, PrivateKey.generate(), PrivateKey.generate())
        await cs.write(b"once")
        assert await read_n(ss, 4) == b"once"
        await client.write(c_tap.writes[-1])
        with pytest.raises(NoiseDecryptError):
            await ss.read()


async def test_truncated_frame_at_eof() -> None:
    async with tcp_pair() as (client, srv):
        c_tap = Tap(client)
        _, ss = await secure_pair(c_tap, srv, PrivateKey.generate(), PrivateKey.generate())
        await client.write(b"\x00\x40" + b"\x00" * 10)
        await client.close()
        with pytest.raises(IncompleteReadError):
            await ss.read()


async def test_stalled_handshake_times_out() -> None:
    async with tcp_pair() as (client, srv):
        with pytest.raises(NoiseHandshakeTimeoutError):
            await secure_outbound(BufferedReader(client), PrivateKey.generate(), None, timeout=0.2)
        with pytest.raises(NoiseHandshakeTimeoutError):
            # the peer sent half of message 1 and stopped
            await client.write(b"\x00\x20" + b"\x01" * 5)
            await secure_inbound(BufferedReader(srv), PrivateKey.generate(), timeout=0.2)


async def test_peer_hangs_up_during_handshake() -> None:
    async with tcp_pair() as (client, srv):
        await srv.close()
        with pytest.raises((IncompleteReadError, NoiseHandshakeError)):
            await secure_outbound(BufferedReader(client), PrivateKey.generate(), None, timeout=5)


async def test_initiator_payload_in_message1_is_empty() -> None:
    async with tcp_pair() as (client, srv):
        c_tap = Tap(client)
        task = asyncio.create_task(
            secure_outbound(BufferedReader(c_tap), PrivateKey.generate(), None, timeout=5)
        )
        msg1 = await read_frame(BufferedReader(srv))
        assert len(msg1) == 32  # just the ephemeral key
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
