"""libp2p's Noise security layer (``/noise``) on asyncio: handshake payload, framing, session.

Every TCP connection is secured with ``Noise_XX_25519_ChaChaPoly_SHA256`` as the libp2p
noise spec profiles it (WIRE.md §4): empty prologue, a fresh X25519 static key per
connection, and a protobuf payload in XX messages 2 and 3 that binds the static key to the
peer's libp2p identity with a signature. Every Noise message travels behind a 2-byte
big-endian length. The Noise state machine itself lives in :mod:`noise_protocol`.

On any :class:`NoiseHandshakeError` (or :class:`IncompleteReadError` when the peer hangs
up mid-message) the caller must close the raw connection: the stream is no longer in sync.
"""

from __future__ import annotations

import asyncio
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.message import DecodeError

from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.crypto import InvalidKeyError, PrivateKey, PublicKey
from zikade_py.p2p.io import BufferedReader, ByteStream
from zikade_py.p2p.pb.noise_pb2 import NoiseHandshakePayload
from zikade_py.p2p.peer_id import PeerID

NOISE_PROTOCOL_ID: Final = "/noise"
SIGNATURE_PREFIX: Final = b"noise-libp2p-static-key:"
MAX_FRAME_LEN: Final = 65535
MAX_PLAINTEXT_LEN: Final = MAX_FRAME_LEN - proto.TAGLEN
"""Largest plaintext per transport frame (65519, go's ``MaxPlaintextLength``)."""

_FRAMES_PER_WRITE: Final = 16  # frames encrypted per write to the raw stream (~1 MiB)


class NoiseHandshakeError(Exception):
    """The peer broke the Noise handshake or session; close the connection."""


class PeerIDMismatchError(NoiseHandshakeError):
    """The authenticated remote identity is not the peer we dialled."""

    def __init__(self, expected: PeerID, actual: PeerID) -> None:
        super().__init__(f"dialled {expected} but the remote is {actual}")
        self.expected = expected
        self.actual = actual


class InvalidHandshakePayloadError(NoiseHandshakeError):
    """The handshake payload is not a valid protobuf, key, or signature of the static key."""


class NoiseDecryptError(NoiseHandshakeError):
    """A handshake or transport message failed authentication (tampered or desynced)."""


class NoiseMessageError(NoiseHandshakeError):
    """A Noise message was malformed (too short, bad public key) or the nonces ran out."""


class NoiseHandshakeTimeoutError(NoiseHandshakeError):
    """The handshake did not finish within its time limit."""


def make_handshake_payload(local_key: PrivateKey, static_public: bytes) -> bytes:
    """The encoded payload proving that ``local_key`` owns the X25519 ``static_public``."""
    return NoiseHandshakePayload(
        identity_key=local_key.public_key.to_protobuf(),
        identity_sig=local_key.sign(SIGNATURE_PREFIX + static_public),
    ).SerializeToString()


def verify_handshake_payload(payload: bytes, remote_static: bytes) -> PublicKey:
    """The remote identity key, after checking its signature over ``remote_static``.

    Extensions (early muxer negotiation, WebTransport cert hashes) are ignored.
    """
    try:
        message = NoiseHandshakePayload.FromString(payload)
    except DecodeError as exc:
        raise InvalidHandshakePayloadError(f"undecodable handshake payload: {exc}") from None
    if not message.HasField("identity_key") or not message.HasField("identity_sig"):
        raise InvalidHandshakePayloadError("handshake payload lacks identity_key or identity_sig")
    try:
        key = PublicKey.from_protobuf(message.identity_key)
    except InvalidKeyError as exc:
        raise InvalidHandshakePayloadError(f"bad identity key: {exc}") from None
    if not key.verify(SIGNATURE_PREFIX + remote_static, message.identity_sig):
        raise InvalidHandshakePayloadError("identity signature does not cover the static key")
    return key


def frame(message: bytes) -> bytes:
    """``message`` behind its 2-byte big-endian length."""
    if len(message) > MAX_FRAME_LEN:
        raise ValueError(f"Noise message of {len(message)} bytes exceeds {MAX_FRAME_LEN}")
    return len(message).to_bytes(2, "big") + message


async def read_frame(reader: BufferedReader) -> bytes:
    """One length-framed Noise message (IncompleteReadError if the stream ends inside it)."""
    header = await reader.read_exactly(2)
    return await reader.read_exactly(int.from_bytes(header, "big"))


def _translate(exc: proto.NoiseProtocolError) -> NoiseHandshakeError:
    if isinstance(exc, proto.NoiseDecryptError):
        return NoiseDecryptError(str(exc))
    return NoiseMessageError(str(exc))


class NoiseSession:
    """The secured byte stream (a :class:`ByteStream`) over a finished handshake.

    Plaintext frames may split or join application messages arbitrarily; reads return
    whatever decrypted bytes are available. One task may read while another writes.
    """

    __slots__ = (
        "_broken",
        "_plain",
        "_read_lock",
        "_reader",
        "_recv",
        "_send",
        "_write_lock",
        "handshake_hash",
        "remote_peer",
        "remote_public_key",
    )

    def __init__(
        self,
        reader: BufferedReader,
        send: proto.CipherState,
        recv: proto.CipherState,
        remote_public_key: PublicKey,
        handshake_hash: bytes,
    ) -> None:
        self._reader = reader
        self._send = send
        self._recv = recv
        self._plain = bytearray()
        self._broken: NoiseHandshakeError | None = None
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self.remote_public_key = remote_public_key
        self.remote_peer = PeerID.from_public_key(remote_public_key)
        self.handshake_hash = handshake_hash

    @property
    def raw_stream(self) -> ByteStream:
        """The connection underneath (to abort it)."""
        return self._reader.stream

    @property
    def recv_cipher(self) -> proto.CipherState:
        """The receiving cipher, for a receive path that decrypts frames itself (the pump)."""
        return self._recv

    def take_ciphertext(self) -> bytes:
        """Remove and return received bytes not yet decrypted (for the pump taking over)."""
        return self._reader.take_buffer()

    def take_plaintext(self) -> bytes:
        """Remove and return decrypted bytes no read has returned yet."""
        out = bytes(self._plain)
        self._plain.clear()
        return out

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` decrypted bytes; ``b""`` at end of stream.

        Raises a :class:`NoiseHandshakeError` subclass for a frame that fails
        authentication (and on every later call), IncompleteReadError for a truncated one.
        """
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        async with self._read_lock:
            while not self._plain:
                if self._broken is not None:
                    raise self._broken
                if await self._reader.at_eof():
                    return b""
                ciphertext = await read_frame(self._reader)
                try:
                    plaintext = self._recv.decrypt_with_ad(b"", ciphertext)
                except proto.NoiseProtocolError as exc:
                    self._broken = _translate(exc)
                    raise self._broken from None
                if len(plaintext) <= max_bytes and not self._plain:
                    if plaintext:  # empty frames are legal and simply skipped
                        return plaintext
                    continue
                self._plain += plaintext
            out = bytes(self._plain[:max_bytes])
            del self._plain[:max_bytes]
            return out

    async def write(self, data: bytes) -> None:
        """Encrypt and send all of ``data``, in frames of at most 65519 plaintext bytes."""
        view = memoryview(data)
        batch = MAX_PLAINTEXT_LEN * _FRAMES_PER_WRITE
        encrypt = self._send.encrypt_with_ad
        async with self._write_lock:
            # encrypting and writing under one lock keeps nonces in wire order; the
            # plaintext is sliced without copies and the frames are joined once
            for start in range(0, len(view), batch):
                parts: list[bytes] = []
                for off in range(start, min(start + batch, len(view)), MAX_PLAINTEXT_LEN):
                    sealed = encrypt(b"", view[off : off + MAX_PLAINTEXT_LEN])
                    parts.append(len(sealed).to_bytes(2, "big"))
                    parts.append(sealed)
                await self._reader.stream.write(b"".join(parts))

    async def close(self) -> None:
        """Close the underlying connection."""
        await self._reader.stream.close()


async def _handshake(
    reader: BufferedReader,
    local_key: PrivateKey,
    expected_peer: PeerID | None,
    initiator: bool,
    preamble: bytes = b"",
) -> NoiseSession:
    hs = proto.HandshakeState(initiator, X25519PrivateKey.generate(), prologue=b"")
    stream = reader.stream
    our_payload = make_handshake_payload(local_key, hs.local_static)
    try:
        if initiator:  # message 1 carries no payload
            await stream.write(preamble + frame(hs.write_message(b"")))
            their_payload = hs.read_message(await read_frame(reader))
        else:
            hs.read_message(await read_frame(reader))  # a payload here is ignored, as go does
            await stream.write(frame(hs.write_message(our_payload)))
            their_payload = hs.read_message(await read_frame(reader))
    except proto.NoiseProtocolError as exc:
        raise _translate(exc) from None
    remote_static = hs.remote_static
    assert remote_static is not None  # XX always transmits s by message 2
    remote_key = verify_handshake_payload(their_payload, remote_static)
    if expected_peer is not None and not expected_peer.matches(remote_key):
        raise PeerIDMismatchError(expected_peer, PeerID.from_public_key(remote_key))
    if initiator:
        await stream.write(frame(hs.write_message(our_payload)))
    send, recv = hs.split()
    return NoiseSession(reader, send, recv, remote_key, hs.handshake_hash)


async def _run(
    reader: BufferedReader,
    local_key: PrivateKey,
    expected_peer: PeerID | None,
    initiator: bool,
    timeout: float,
    preamble: bytes = b"",
) -> NoiseSession:
    try:
        async with asyncio.timeout(timeout):
            return await _handshake(reader, local_key, expected_peer, initiator, preamble)
    except TimeoutError:
        raise NoiseHandshakeTimeoutError(f"Noise handshake took longer than {timeout}s") from None


async def secure_outbound(
    reader: BufferedReader,
    local_key: PrivateKey,
    expected_peer: PeerID | None,
    *,
    timeout: float = 10.0,
    preamble: bytes = b"",
) -> NoiseSession:
    """Run the XX handshake as initiator (we dialled) over ``reader``'s connection.

    ``expected_peer`` is the ``/p2p/`` id we dialled, if known; a different authenticated
    identity raises :class:`PeerIDMismatchError`. ``preamble`` goes out in the same write
    as message 1 (a pipelined multistream proposal for ``/noise``).
    """
    return await _run(reader, local_key, expected_peer, True, timeout, preamble)


async def secure_inbound(
    reader: BufferedReader,
    local_key: PrivateKey,
    *,
    timeout: float = 10.0,
) -> NoiseSession:
    """Run the XX handshake as responder (the peer dialled us); any identity is accepted."""
    return await _run(reader, local_key, None, False, timeout)
