"""The Noise protocol framework (rev 34), sans-IO, for ``Noise_XX_25519_ChaChaPoly_SHA256`` only.

libp2p secures every TCP connection with exactly this one Noise protocol (WIRE.md §4), so
this module implements the framework's three objects (§5 of the Noise spec) for it and
nothing else: :class:`CipherState`, :class:`SymmetricState` and an XX-only
:class:`HandshakeState`. It does no I/O; :mod:`zikade_py.p2p.noise` adds the libp2p
payload, the framing and asyncio.

Errors come in two kinds: :class:`NoiseProtocolError` (the bytes a peer sent are not valid
for this handshake/transport: fail the connection) and :class:`NoiseUsageError` (our own code
called things in the wrong order: a bug here, not the peer's fault).
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
DHLEN: Final = 32
HASHLEN: Final = 32
TAGLEN: Final = 16
MAX_MESSAGE_LEN: Final = 65535
MAX_NONCE: Final = 2**64 - 1  # reserved by the spec; reaching it ends the CipherState

# XX: -> e / <- e, ee, s, es / -> s, se  (Noise spec §7.5)
_XX_PATTERN: Final = (("e",), ("e", "ee", "s", "es"), ("s", "se"))


class NoiseProtocolError(Exception):
    """A peer's message cannot be processed: it broke the Noise protocol."""


class NoiseDecryptError(NoiseProtocolError):
    """AEAD authentication failed: the ciphertext was tampered with or keyed differently."""


class MalformedMessageError(NoiseProtocolError):
    """A message is too short, too long, or carries an unusable public key."""


class NonceExhaustedError(NoiseProtocolError):
    """A CipherState used all 2^64-1 nonces; the session must end (libp2p never rekeys)."""


class NoiseUsageError(RuntimeError):
    """Local misuse: a message written or read out of turn, or a state used after failing."""


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    # Noise's HKDF(ck, ikm, 2) is RFC 5869 HKDF-SHA256 with salt=ck and empty info.
    out = HKDF(algorithm=hashes.SHA256(), length=2 * HASHLEN, salt=chaining_key, info=b"").derive(
        input_key_material
    )
    return out[:HASHLEN], out[HASHLEN:]


def _nonce(n: int) -> bytes:
    # ChaChaPoly nonce: 32 zero bits followed by the little-endian 64-bit counter (spec §12.3).
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte RFC 7748 encoding of ``key``'s public half (what libp2p signs)."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # low-order point: the shared secret would be all zeros
        raise MalformedMessageError(f"unusable X25519 public key: {exc}") from None


class CipherState:
    """A key and a nonce counter: encrypts one direction of a session (Noise spec §5.1)."""

    __slots__ = ("_aead", "_n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self._n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """Use ``key`` from now on and reset the nonce to zero."""
        if len(key) != 32:
            raise NoiseUsageError("a ChaChaPoly key is 32 bytes")
        self._aead = ChaCha20Poly1305(key)
        self._n = 0

    @property
    def has_key(self) -> bool:
        """Whether a key is set (before one is, encryption is the identity)."""
        return self._aead is not None

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption uses."""
        return self._n

    def set_nonce(self, nonce: int) -> None:
        """Jump the counter (the spec's SetNonce; used by tests of nonce exhaustion)."""
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseUsageError("nonce out of range")
        self._n = nonce

    def _check_nonce(self) -> None:
        if self._n >= MAX_NONCE:
            raise NonceExhaustedError("nonce space exhausted")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        """``plaintext`` sealed with the next nonce (returned unchanged if there is no key);
        a memoryview is sealed without being copied first."""
        if self._aead is None:
            return bytes(plaintext)
        self._check_nonce()
        out = self._aead.encrypt(_nonce(self._n), plaintext, ad)
        self._n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """Open ``ciphertext``; the nonce advances only if it authenticates."""
        if self._aead is None:
            return bytes(ciphertext)
        self._check_nonce()
        if len(ciphertext) < TAGLEN:
            raise NoiseDecryptError(f"ciphertext of {len(ciphertext)} bytes has no room for a tag")
        try:
            out = self._aead.decrypt(_nonce(self._n), ciphertext, ad)
        except InvalidTag:
            raise NoiseDecryptError(f"authentication failed at nonce {self._n}") from None
        self._n += 1
        return out


class SymmetricState:
    """The chaining key and handshake hash every handshake message mixes into (spec §5.2)."""

    __slots__ = ("_ck", "_h", "cipher")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        if len(protocol_name) <= HASHLEN:
            self._h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self._h = _sha256(protocol_name)
        self._ck = self._h
        self.cipher = CipherState()

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after the handshake, a unique ID of the session (channel binding)."""
        return self._h

    def mix_key(self, input_key_material: bytes) -> None:
        """Fold a DH result into the chaining key and rekey the handshake cipher."""
        self._ck, temp_k = _hkdf2(self._ck, input_key_material)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        """``h = SHA256(h || data)``."""
        self._h = _sha256(self._h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with ``h`` as associated data, then hash the ciphertext into ``h``."""
        ciphertext = self.cipher.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with ``h`` as associated data, then hash the ciphertext into ``h``."""
        plaintext = self.cipher.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """The two transport CipherStates: initiator→responder first, then the reverse."""
        k1, k2 = _hkdf2(self._ck, b"")
        return CipherState(k1), CipherState(k2)


class HandshakeState:
    """One side of an XX handshake (spec §5.3), with optionally injected keys.

    ``static`` is this side's long-lived (in libp2p: per-connection) X25519 key;
    ``ephemeral`` is normally generated, and only injected by test vectors. Call
    :meth:`write_message` and :meth:`read_message` alternately, starting with a write for
    the initiator; after the third message :attr:`complete` is true and :meth:`split` gives
    the transport ciphers. Any :class:`NoiseProtocolError` leaves the state unusable.
    """

    __slots__ = (
        "_e",
        "_failed",
        "_index",
        "_initiator",
        "_re",
        "_rs",
        "_s",
        "_ss",
    )

    def __init__(
        self,
        initiator: bool,
        static: X25519PrivateKey,
        *,
        prologue: bytes = b"",
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        self._initiator = initiator
        self._s = static
        self._e = ephemeral
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._ss = SymmetricState(PROTOCOL_NAME)
        self._ss.mix_hash(prologue)
        self._index = 0
        self._failed = False

    @property
    def initiator(self) -> bool:
        """Whether this side sends the first message."""
        return self._initiator

    @property
    def complete(self) -> bool:
        """Whether all three XX messages have been processed."""
        return self._index == len(_XX_PATTERN)

    @property
    def remote_static(self) -> bytes | None:
        """The peer's 32-byte static public key, once its ``s`` token has been read."""
        return self._rs

    @property
    def local_static(self) -> bytes:
        """Our 32-byte static public key."""
        return public_bytes(self._s)

    @property
    def handshake_hash(self) -> bytes:
        """The handshake hash ``h`` (final once :attr:`complete`)."""
        return self._ss.handshake_hash

    def _expect_turn(self, writing: bool) -> None:
        if self._failed:
            raise NoiseUsageError("handshake already failed")
        if self.complete:
            raise NoiseUsageError("handshake already complete")
        initiator_turn = self._index % 2 == 0
        if (initiator_turn == self._initiator) != writing:
            raise NoiseUsageError("it is the peer's turn" if writing else "it is our turn")

    def _dh_token(self, token: str) -> bytes:
        e, s, re, rs = self._e, self._s, self._re, self._rs
        # which local key meets which remote key depends on the role (spec §7.3)
        if token == "ee":
            local, remote = e, re
        elif token == "ss":
            local, remote = s, rs
        elif (token == "es") == self._initiator:
            local, remote = e, rs
        else:
            local, remote = s, re
        if local is None or remote is None:
            raise NoiseUsageError(f"token {token} before its keys exist")
        return _dh(local, remote)

    def write_message(self, payload: bytes) -> bytes:
        """The next handshake message, carrying ``payload`` (encrypted once a key exists)."""
        self._expect_turn(writing=True)
        out = bytearray()
        for token in _XX_PATTERN[self._index]:
            if token == "e":
                if self._e is None:
                    self._e = X25519PrivateKey.generate()
                e_pub = public_bytes(self._e)
                out += e_pub
                self._ss.mix_hash(e_pub)
            elif token == "s":
                out += self._ss.encrypt_and_hash(public_bytes(self._s))
            else:
                self._ss.mix_key(self._dh_token(token))
        out += self._ss.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            self._failed = True
            raise NoiseUsageError(f"handshake message of {len(out)} bytes is too long")
        self._index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message and return its decrypted payload."""
        self._expect_turn(writing=False)
        if len(message) > MAX_MESSAGE_LEN:
            self._failed = True
            raise MalformedMessageError(f"handshake message of {len(message)} bytes is too long")
        try:
            payload = self._read_tokens(memoryview(message))
        except NoiseProtocolError:
            self._failed = True
            raise
        self._index += 1
        return payload

    def _read_tokens(self, msg: memoryview) -> bytes:
        pos = 0
        for token in _XX_PATTERN[self._index]:
            if token in ("e", "s"):
                size = DHLEN + (TAGLEN if token == "s" and self._ss.cipher.has_key else 0)
                if len(msg) - pos < size:
                    raise MalformedMessageError(f"message too short for its {token} key")
                chunk = bytes(msg[pos : pos + size])
                pos += size
                if token == "e":
                    self._re = chunk
                    self._ss.mix_hash(chunk)
                else:
                    self._rs = self._ss.decrypt_and_hash(chunk)
            else:
                self._ss.mix_key(self._dh_token(token))
        return self._ss.decrypt_and_hash(bytes(msg[pos:]))

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` transport ciphers for this side (initiator sends with the first)."""
        if not self.complete or self._failed:
            raise NoiseUsageError("split before the handshake completed")
        c1, c2 = self._ss.split()
        return (c1, c2) if self._initiator else (c2, c1)
