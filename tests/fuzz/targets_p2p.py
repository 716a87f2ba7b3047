"""Fuzz targets of the libp2p host's decoders: mss, Noise, yamux, identify, multiaddr,
peer ids and keys (see ``targets.py`` for the rules every target follows)."""

from __future__ import annotations

import asyncio
from typing import Any

from dht.test_messages_fuzz import (
    peer_bytes,
    proto_noise,
)
from hypothesis import strategies as st
from p2p.mss_pipe import feed
from p2p.test_mss_fuzz import HEADER, _chunk, _hostile
from p2p.test_multiaddr import _component
from p2p.test_noise_fuzz import KEY, PEER_KEY, ScriptedStream, _drain, _sessions, chunk_sizes
from p2p.test_yamux_fuzz import _handle, check_written, frames, ping_syns

from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.crypto import InvalidKeyError, PrivateKey, PublicKey
from zikade_py.p2p.identify import IdentifyError, decode_identify, read_identify
from zikade_py.p2p.io import BufferedReader, IncompleteReadError, length_prefixed
from zikade_py.p2p.mss import (
    NegotiationError,
    handle_negotiation,
    lazy_proposal,
    select_protocol,
    select_protocol_lazy,
)
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr, decode_addrs
from zikade_py.p2p.noise import (
    NoiseHandshakeError,
    NoiseHandshakeTimeoutError,
    NoiseSession,
    frame,
    secure_inbound,
    secure_outbound,
    verify_handshake_payload,
)
from zikade_py.p2p.pb.identify_pb2 import Identify
from zikade_py.p2p.pb.noise_pb2 import NoiseExtensions, NoiseHandshakePayload
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.pump import NoisePump
from zikade_py.p2p.yamux import YAMUX_PROTOCOL_ID, YamuxError, YamuxSession, YamuxStream
from zikade_py.p2p.yamux import SessionClosedError as YamuxSessionClosedError

from .cases import ID_TEXT, KEY_BYTES, MA_WORDS, PEER, cases, dispatch
from .engine import Crash, Hang, Target

HANDSHAKE_TIMEOUT = 20.0
"""Noise's own handshake bound (wall time): below the engine's wall bound of 30 s, so a
stuck handshake shows as Noise's timeout; far above what any input needs."""


# --- multistream-select ----------------------------------------------------------------------

_mss_input = st.tuples(st.one_of(_hostile, st.binary(max_size=200)), _chunk)


async def _mss_responder(data: bytes, chunk: int) -> None:
    await handle_negotiation(feed(data, chunk), lambda p: p == "/noise")


async def _mss_accept_all(data: bytes, chunk: int) -> None:
    await handle_negotiation(feed(HEADER + data, chunk), lambda p: True)


async def _mss_initiator(data: bytes, chunk: int) -> None:
    await select_protocol(feed(data, chunk), ["/tls/1.0.0", "/noise"])


async def _mss_lazy(data: bytes, chunk: int) -> None:
    reader = await select_protocol_lazy(feed(data, chunk), "/noise", b"payload")
    await reader.read_some()


MSS = Target(
    "mss",
    "multistream-select: responder (one protocol / any protocol), initiator, lazy initiator",
    cases(responder=_mss_input, accept_all=_mss_input, initiator=_mss_input, lazy=_mss_input),
    dispatch(
        {
            "responder": _mss_responder,
            "accept_all": _mss_accept_all,
            "initiator": _mss_initiator,
            "lazy": _mss_lazy,
        }
    ),
    (NegotiationError,),
)


# --- noise handshake -------------------------------------------------------------------------


async def _handshake(run: Any) -> None:
    try:
        await run
    except NoiseHandshakeTimeoutError as exc:  # every input ends in EOF: waiting is a hang
        raise Hang(str(exc)) from None


def _noise_inbound(data: bytes, sizes: list[int]) -> Any:
    reader = BufferedReader(ScriptedStream(data, sizes))
    return _handshake(secure_inbound(reader, KEY, timeout=HANDSHAKE_TIMEOUT))


def _noise_outbound(data: bytes, sizes: list[int]) -> Any:
    reader = BufferedReader(ScriptedStream(data, sizes))
    return _handshake(secure_outbound(reader, KEY, None, timeout=HANDSHAKE_TIMEOUT))


def _noise_state(stage: int, message: bytes) -> None:
    """Garbage as message 1, 2 or 3 of a real XX handshake (the decryption path)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    init = proto.HandshakeState(True, X25519PrivateKey.generate())
    resp = proto.HandshakeState(False, X25519PrivateKey.generate())
    target = resp
    if stage > 0:
        resp.read_message(init.write_message(b""))
        target = init
        if stage == 2:
            init.read_message(resp.write_message(b""))
            init.write_message(b"")
            target = resp
    target.read_message(message)
    if stage == 0:
        target.write_message(b"")


def _noise_payload(payload: bytes) -> None:
    verify_handshake_payload(payload, bytes(32))


_structured_payload = st.builds(
    lambda key, sig, muxers: NoiseHandshakePayload(
        identity_key=key, identity_sig=sig, extensions=NoiseExtensions(stream_muxers=muxers)
    ).SerializeToString(),
    KEY_BYTES,
    st.binary(max_size=80),
    st.lists(st.text(max_size=20), max_size=3),
)

NOISE_HANDSHAKE = Target(
    "noise_handshake",
    "Noise XX: responder and initiator over hostile streams (raw and well framed), "
    "garbage handshake messages at each stage, handshake payloads",
    cases(
        inbound=st.tuples(st.binary(max_size=600), chunk_sizes),
        outbound=st.tuples(st.binary(max_size=600), chunk_sizes),
        inbound_framed=st.tuples(
            st.tuples(st.binary(min_size=32, max_size=80), st.binary(max_size=400)).map(
                lambda t: frame(t[0]) + frame(t[1])
            ),
            st.just([65536]),
        ),
        outbound_framed=st.tuples(st.binary(max_size=400).map(frame), st.just([65536])),
        state=st.tuples(st.integers(0, 2), st.binary(max_size=300)),
        payload=st.one_of(st.binary(max_size=400), proto_noise, _structured_payload),
    ),
    dispatch(
        {
            "inbound": _noise_inbound,
            "outbound": _noise_outbound,
            "inbound_framed": _noise_inbound,
            "outbound_framed": _noise_outbound,
            "state": _noise_state,
            "payload": _noise_payload,
        }
    ),
    (NoiseHandshakeError, IncompleteReadError, proto.NoiseProtocolError),
)


# --- noise transport -------------------------------------------------------------------------


def _noise_session(data: bytes, sizes: list[int]) -> Any:
    _, recv = _sessions()
    reader = BufferedReader(ScriptedStream(data, sizes))
    session = NoiseSession(reader, proto.CipherState(bytes(32)), recv, PEER_KEY.public_key, b"")
    return _drain(session)


def _wire_frames(messages: list[bytes], flips: list[tuple[int, int]]) -> tuple[bytes, Any]:
    """Real transport frames of ``messages`` with bits flipped; and the receiving cipher."""
    send, recv = _sessions()
    wire = bytearray(b"".join(frame(send.encrypt_with_ad(b"", msg)) for msg in messages))
    for at, bit in flips:
        if wire:
            wire[at % len(wire)] ^= 1 << bit
    return bytes(wire), recv


def _noise_session_frames(
    messages: list[bytes], flips: list[tuple[int, int]], sizes: list[int]
) -> Any:
    wire, recv = _wire_frames(messages, flips)
    reader = BufferedReader(ScriptedStream(wire, sizes))
    session = NoiseSession(reader, proto.CipherState(bytes(32)), recv, PEER_KEY.public_key, b"")
    return _drain(session)


class _SessionStub:
    """What the pump sees of a yamux session: bytes in, EOF in."""

    def __init__(self) -> None:
        self.fed = bytearray()
        self.eof: str | None = None

    @property
    def is_closed(self) -> bool:
        return self.eof is not None

    def feed(self, data: bytes) -> None:
        self.fed += data

    def feed_eof(self, reason: str = "") -> None:
        self.eof = reason


_PUMP_EXPECT = lazy_proposal(YAMUX_PROTOCOL_ID)


def _noise_pump(
    messages: list[bytes], flips: list[tuple[int, int]], split: int, expect: bool
) -> None:
    """The host's receive path: transport callbacks → ``NoisePump.data_received``."""
    wire, recv = _wire_frames(messages, flips)
    stub = _SessionStub()
    pump = NoisePump(asyncio.Protocol(), _NoiseRecv(recv), stub, _PUMP_EXPECT if expect else b"")  # type: ignore[arg-type]
    for i in range(0, len(wire), split):
        pump.data_received(wire[i : i + split])
    pump.eof_received()
    if not flips and stub.eof in (None, "") and not expect:
        plain = b"".join(messages)
        if bytes(stub.fed) != plain:
            raise Crash("the pump lost or reordered plaintext")


class _NoiseRecv:
    """The one thing the pump takes from a NoiseSession: its receiving cipher."""

    def __init__(self, recv: proto.CipherState) -> None:
        self.recv_cipher = recv


NOISE_TRANSPORT = Target(
    "noise_transport",
    "Noise transport frames: NoiseSession.read over random and bit-flipped frames, and the "
    "host's NoisePump (data_received) with and without the pending yamux echo",
    cases(
        session=st.tuples(st.binary(max_size=2000), chunk_sizes),
        session_frames=st.tuples(
            st.lists(st.binary(max_size=300), min_size=1, max_size=5),
            st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), max_size=2),
            chunk_sizes,
        ),
        pump=st.tuples(
            st.lists(
                st.one_of(st.binary(max_size=300), st.sampled_from([_PUMP_EXPECT, b""])),
                min_size=1,
                max_size=5,
            ),
            st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), max_size=2),
            st.integers(1, 400),
            st.booleans(),
        ),
    ),
    dispatch(
        {"session": _noise_session, "session_frames": _noise_session_frames, "pump": _noise_pump}
    ),
    (NoiseHandshakeError, IncompleteReadError),
)


# --- yamux through feed() --------------------------------------------------------------------


class _Sink:
    """The connection under a pushed-to session: records writes, reads are never made."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        raise AssertionError("a feed() session never reads its connection")

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        self.written += data

    async def close(self) -> None:
        self.closed = True


async def _yamux_feed(chunks: list[bytes], is_client: bool, eof: bool) -> None:
    from zikade_py.p2p.host import HostConfig

    conn = _Sink()
    config = HostConfig(keepalive_interval=None).yamux_config()
    session = YamuxSession(conn, is_client=is_client, config=config)
    await session.start(read_loop=False)
    handlers: list[asyncio.Task[None]] = []

    async def acceptor() -> None:
        while True:
            try:
                stream: YamuxStream = await session.accept_stream()
            except YamuxSessionClosedError:
                return
            handlers.append(asyncio.create_task(_handle(stream)))

    accept_task = asyncio.create_task(acceptor())
    for chunk in chunks:
        session.feed(chunk)
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    if eof:
        session.feed_eof()
    else:
        await session.close()
    await session.wait_closed()
    await accept_task
    await asyncio.gather(*handlers)
    reason = session.close_reason
    if reason is not None and (
        not isinstance(reason, YamuxError) or "dispatch failed" in str(reason)
    ):
        raise Crash(f"session ended by an unexpected error: {reason!r}")
    check_written(bytes(conn.written), ping_syns(b"".join(chunks)))


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


YAMUX = Target(
    "yamux",
    "yamux session through feed() (the host's push path): arbitrary bytes and mostly "
    "well-formed frame sequences, streams accepted and answered, then EOF or close",
    st.one_of(
        st.tuples(st.lists(st.binary(max_size=64), max_size=8), st.booleans(), st.booleans()),
        st.tuples(
            st.builds(_split, st.lists(frames(), max_size=20).map(b"".join), st.integers(1, 40)),
            st.booleans(),
            st.booleans(),
        ),
    ),
    lambda case: _yamux_feed(*case),
    (),
)


# --- identify --------------------------------------------------------------------------------


_identify_msg = st.builds(
    lambda key, addrs, observed, protocols, pv, av: Identify(
        publicKey=key,
        listenAddrs=addrs,
        observedAddr=observed,
        protocols=protocols,
        protocolVersion=pv,
        agentVersion=av,
    ).SerializeToString(),
    KEY_BYTES,
    st.lists(st.lists(_component, min_size=1, max_size=3).map(b"".join), max_size=4),
    st.binary(max_size=30),
    st.lists(st.text(max_size=30), max_size=4),
    st.text(max_size=20),
    st.text(max_size=20),
)
_identify_body = st.one_of(st.binary(max_size=600), proto_noise, _identify_msg)


async def _identify_read(wire: bytes, sizes: list[int]) -> None:
    await read_identify(BufferedReader(ScriptedStream(wire, sizes)), PEER)


IDENTIFY = Target(
    "identify",
    "identify: one message body, and length-prefixed message sequences read to EOF",
    cases(
        decode=_identify_body,
        read=st.tuples(
            st.one_of(
                st.lists(_identify_body.map(length_prefixed), max_size=12).map(b"".join),
                st.binary(max_size=300),
            ),
            chunk_sizes,
        ),
    ),
    dispatch({"decode": decode_identify, "read": _identify_read}),
    (IdentifyError,),
)


# --- multiaddr -------------------------------------------------------------------------------


def _multiaddr_bytes(data: bytes) -> None:
    addr = Multiaddr.from_bytes(data)
    if Multiaddr.parse(str(addr)).to_bytes() != addr.to_bytes():
        raise Crash("a decoded multiaddr does not round-trip through text")
    addr.tcp_endpoint()
    addr.is_loopback()
    addr.is_unspecified()
    addr.ip_address()
    addr.without_peer_id()
    addr.peer_id()


def _multiaddr_text(text: str) -> None:
    addr = Multiaddr.parse(text)
    if Multiaddr.from_bytes(addr.to_bytes()) != addr:
        raise Crash("a parsed multiaddr does not round-trip through bytes")


def _multiaddr_list(raw: list[bytes]) -> None:
    if len(decode_addrs(raw)) > len(raw):
        raise Crash("decode_addrs returned more addresses than it was given")


MULTIADDR = Target(
    "multiaddr",
    "multiaddr: binary form (raw and structured components), text form, address lists",
    cases(
        bytes=st.one_of(
            st.binary(max_size=120), st.lists(_component, min_size=1, max_size=5).map(b"".join)
        ),
        text=st.lists(st.one_of(MA_WORDS, st.text(max_size=12)), max_size=6).map(
            lambda parts: "/" + "/".join(parts)
        )
        | st.text(max_size=60),
        list=st.lists(st.one_of(st.binary(max_size=30), _component), max_size=8).map(
            lambda raw: (raw,)
        ),
    ),
    dispatch({"bytes": _multiaddr_bytes, "text": _multiaddr_text, "list": _multiaddr_list}),
    (InvalidMultiaddrError,),
)


# --- peer ids and keys -----------------------------------------------------------------------


def _peer_bytes(data: bytes) -> None:
    peer = PeerID.from_bytes(data)
    if PeerID.from_string(str(peer)) != peer or PeerID.from_string(peer.to_cid_string()) != peer:
        raise Crash("a decoded peer id does not round-trip through text")
    peer.extract_public_key()
    peer.has_valid_inline_key()


def _peer_text(text: str) -> None:
    peer = PeerID.from_string(text)
    if PeerID.from_bytes(peer.multihash) != peer:
        raise Crash("a parsed peer id does not round-trip through bytes")


def _public_key(data: bytes, signature: bytes) -> None:
    key = PublicKey.from_protobuf(data)
    if PublicKey.from_protobuf(key.to_protobuf()) != key:
        raise Crash("a decoded public key does not round-trip")
    if key.verify(b"m", signature) not in (True, False):
        raise Crash("verify returned a non-bool")
    PeerID.from_public_key(key)


def _private_key(data: bytes) -> None:
    key = PrivateKey.from_protobuf(data)
    PrivateKey.from_protobuf(key.to_protobuf())


PEER_ID = Target(
    "peer_id",
    "peer ids (bytes and text: base58, CIDv1 in any multibase) and keys (public and "
    "private protobuf, signatures)",
    cases(
        bytes=st.one_of(st.binary(max_size=80), peer_bytes),
        text=ID_TEXT,
        public_key=st.tuples(
            st.one_of(st.binary(max_size=200), KEY_BYTES), st.binary(max_size=300)
        ),
        private_key=st.binary(max_size=150),
    ),
    dispatch(
        {
            "bytes": _peer_bytes,
            "text": _peer_text,
            "public_key": _public_key,
            "private_key": _private_key,
        }
    ),
    (InvalidPeerIDError, InvalidKeyError),
)
