"""The sans-IO Noise framework against published vectors and its own failure rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zikade_py.p2p.noise_protocol import (
    MAX_NONCE,
    PROTOCOL_NAME,
    CipherState,
    HandshakeState,
    MalformedMessageError,
    NoiseDecryptError,
    NoiseUsageError,
    NonceExhaustedError,
    public_bytes,
)

VECTORS_FILE = Path(__file__).parent / "vectors" / "noise_xx_25519_chachapoly_sha256.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def _key(hex_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


def _pair(**kw: Any) -> tuple[HandshakeState, HandshakeState]:
    init = HandshakeState(True, X25519PrivateKey.generate(), **kw)
    resp = HandshakeState(False, X25519PrivateKey.generate(), **kw)
    return init, resp


def _handshake() -> tuple[HandshakeState, HandshakeState]:
    init, resp = _pair()
    resp.read_message(init.write_message(b""))
    init.read_message(resp.write_message(b"two"))
    resp.read_message(init.write_message(b"three"))
    return init, resp


def test_vectors_present() -> None:
    assert len(VECTORS) >= 2
    assert all(v["protocol_name"] == PROTOCOL_NAME.decode() for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["source"].split()[0])
def test_published_vector(vector: dict[str, Any]) -> None:
    init = HandshakeState(
        True,
        _key(vector["init_static"]),
        prologue=bytes.fromhex(vector["init_prologue"]),
        ephemeral=_key(vector["init_ephemeral"]),
    )
    resp = HandshakeState(
        False,
        _key(vector["resp_static"]),
        prologue=bytes.fromhex(vector["resp_prologue"]),
        ephemeral=_key(vector["resp_ephemeral"]),
    )
    messages = vector["messages"]
    assert len(messages) > 3
    ciphers: dict[bool, tuple[CipherState, CipherState]] = {}
    for i, msg in enumerate(messages):
        payload = bytes.fromhex(msg["payload"])
        expected = bytes.fromhex(msg["ciphertext"])
        from_initiator = i % 2 == 0
        sender, receiver = (init, resp) if from_initiator else (resp, init)
        if i < 3:
            assert sender.write_message(payload) == expected
            assert receiver.read_message(expected) == payload
            if i == 2:
                ciphers = {True: init.split(), False: resp.split()}
        else:
            send, _ = ciphers[from_initiator]
            _, recv = ciphers[not from_initiator]
            assert send.encrypt_with_ad(b"", payload) == expected
            assert recv.decrypt_with_ad(b"", expected) == payload
    assert init.remote_static == public_bytes(_key(vector["resp_static"]))
    assert resp.remote_static == public_bytes(_key(vector["init_static"]))
    assert init.handshake_hash == resp.handshake_hash
    if "handshake_hash" in vector:
        assert init.handshake_hash.hex() == vector["handshake_hash"]


def test_xx_message_sizes_match_libp2p() -> None:
    # WIRE.md §4: 32 / 32+48+payload+16 / 48+payload+16
    init, resp = _pair()
    m1 = init.write_message(b"")
    assert len(m1) == 32
    resp.read_message(m1)
    m2 = resp.write_message(b"x" * 104)
    assert len(m2) == 200
    assert init.read_message(m2) == b"x" * 104
    m3 = init.write_message(b"y" * 104)
    assert len(m3) == 168
    assert resp.read_message(m3) == b"y" * 104
    assert init.complete and resp.complete


def test_split_pairs_directions() -> None:
    init, resp = _handshake()
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"ping")) == b"ping"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"pong")) == b"pong"
    assert i_send.nonce == 1 and r_recv.nonce == 1


def test_prologue_mismatch_fails() -> None:
    init = HandshakeState(True, X25519PrivateKey.generate(), prologue=b"a")
    resp = HandshakeState(False, X25519PrivateKey.generate(), prologue=b"")
    resp.read_message(init.write_message(b""))
    with pytest.raises(NoiseDecryptError):
        init.read_message(resp.write_message(b""))


def test_out_of_turn_is_local_misuse() -> None:
    init, resp = _pair()
    with pytest.raises(NoiseUsageError):
        resp.write_message(b"")
    with pytest.raises(NoiseUsageError):
        init.read_message(b"\x00" * 32)
    with pytest.raises(NoiseUsageError):
        init.split()


def test_tampered_handshake_message_fails_and_poisons_state() -> None:
    init, resp = _pair()
    resp.read_message(init.write_message(b""))
    m2 = bytearray(resp.write_message(b"payload"))
    m2[40] ^= 0x01  # inside the encrypted static key
    with pytest.raises(NoiseDecryptError):
        init.read_message(bytes(m2))
    with pytest.raises(NoiseUsageError):
        init.write_message(b"")


@pytest.mark.parametrize("size", [0, 31, 32, 79])
def test_short_message2_is_rejected(size: int) -> None:
    init, resp = _pair()
    resp.read_message(init.write_message(b""))
    with pytest.raises((MalformedMessageError, NoiseDecryptError)):
        init.read_message(b"\x09" * size)


def test_short_message1_is_rejected() -> None:
    _, resp = _pair()
    with pytest.raises(MalformedMessageError):
        resp.read_message(b"\x01" * 31)


def test_low_order_ephemeral_is_rejected() -> None:
    _, resp = _pair()
    resp.read_message(b"\x00" * 32)  # only hashed so far
    with pytest.raises(MalformedMessageError):
        resp.write_message(b"")  # ee with the all-zero point


def test_oversized_message_is_rejected() -> None:
    _, resp = _pair()
    with pytest.raises(MalformedMessageError):
        resp.read_message(b"\x05" * 65536)
    init, _ = _pair()
    init.write_message(b"")
    init2, resp2 = _pair()
    resp2.read_message(init2.write_message(b""))
    with pytest.raises(NoiseUsageError):
        resp2.write_message(b"z" * 65535)


def test_cipher_state_without_key_is_identity() -> None:
    cs = CipherState()
    assert not cs.has_key
    assert cs.encrypt_with_ad(b"ad", b"text") == b"text"
    assert cs.decrypt_with_ad(b"ad", b"text") == b"text"


def test_decrypt_failure_does_not_advance_nonce() -> None:
    a, b = CipherState(b"k" * 32), CipherState(b"k" * 32)
    ct = a.encrypt_with_ad(b"", b"hello")
    with pytest.raises(NoiseDecryptError):
        b.decrypt_with_ad(b"", ct[:-1] + bytes([ct[-1] ^ 1]))
    with pytest.raises(NoiseDecryptError):
        b.decrypt_with_ad(b"", b"short")
    assert b.nonce == 0
    assert b.decrypt_with_ad(b"", ct) == b"hello"
    with pytest.raises(NoiseDecryptError):  # replay
        b.decrypt_with_ad(b"", ct)


def test_nonce_is_little_endian_counter() -> None:
    a, b = CipherState(b"\x07" * 32), CipherState(b"\x07" * 32)
    a.set_nonce(0x0102030405)
    b.set_nonce(0x0102030405)
    assert b.decrypt_with_ad(b"", a.encrypt_with_ad(b"", b"x")) == b"x"
    raw = ChaCha20Poly1305(b"\x07" * 32).encrypt(
        b"\x00" * 4 + (0x0102030406).to_bytes(8, "little"), b"y", b""
    )
    assert a.encrypt_with_ad(b"", b"y") == raw


def test_nonce_exhaustion() -> None:
    a = CipherState(b"k" * 32)
    a.set_nonce(MAX_NONCE - 1)
    a.encrypt_with_ad(b"", b"last")
    with pytest.raises(NonceExhaustedError):
        a.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NonceExhaustedError):
        a.decrypt_with_ad(b"", b"\x00" * 16)
