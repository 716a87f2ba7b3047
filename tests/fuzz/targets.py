"""Every decoder a remote peer or HTTP client can reach, as fuzz targets for ``scripts/fuzz``.

Each target feeds one decoder the inputs of its existing fuzz tests (the strategies and
scripted streams are imported from those tests, not copied) through the same entry the
node uses, and names the decoder's documented error types: raising one of those is the
decoder refusing bad input; any other exception is a crash (see ``engine.py``).

Targets that drive a layer which swallows unexpected errors (yamux ``feed()`` ends the
session, the kad server counts ``internal_errors``) raise :class:`Crash` when they see
one, so a bug hidden behind a generic close still counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

import cbor2
from dht.test_handlers_fuzz import any_request, make_server, raw_bodies
from dht.test_messages_fuzz import (
    KEY as IPNS_KEY_PAIR,
)
from dht.test_messages_fuzz import (
    NAME_KEY,
    NOW,
    ipns_fields,
    peer_bytes,
    proto_noise,
)
from hypothesis import strategies as st
from p2p.mss_pipe import feed
from p2p.test_mss_fuzz import HEADER, _chunk, _hostile
from p2p.test_multiaddr import _component
from p2p.test_noise_fuzz import KEY, PEER_KEY, ScriptedStream, _drain, _sessions, chunk_sizes
from p2p.test_yamux_fuzz import _handle, check_written, frames, ping_syns

from zikade_py.dht import messages as m
from zikade_py.dht.pb import dht_pb2, ipns_pb2
from zikade_py.dht.protocol import KadRequestError
from zikade_py.dht.records import (
    InvalidRecordError,
    IpnsValidator,
    PublicKeyValidator,
    amino_validator,
)
from zikade_py.dht.records.ipns import SIGNATURE_V2_PREFIX, parse_rfc3339_ns
from zikade_py.http.routing_v1_util import (
    MEDIA_IPNS_RECORD,
    BadIdError,
    FilterError,
    RecordFilter,
    accepts_exactly,
    parse_cid,
    parse_key,
    parse_peer_id,
    wants_ndjson,
)
from zikade_py.p2p import noise_protocol as proto
from zikade_py.p2p.crypto import InvalidKeyError, KeyType, PrivateKey, PublicKey
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

from .engine import Crash, Hang, Target

HANDSHAKE_TIMEOUT = 4.0
"""Noise's own handshake bound; below the engine's, so a stuck handshake shows as ours."""


def _cases(**modes: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """``(mode, input)`` pairs: one target, several entry points of the same decoder."""
    return st.one_of(*(s.map(functools.partial(_tagged, name)) for name, s in modes.items()))


def _tagged(name: str, value: Any) -> tuple[str, Any]:
    return name, value


def _dispatch(handlers: dict[str, Callable[..., Any]]) -> Callable[[tuple[str, Any]], Any]:
    def run(case: tuple[str, Any]) -> Any:
        mode, value = case
        return handlers[mode](*value) if isinstance(value, tuple) else handlers[mode](value)

    return run


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
    _cases(responder=_mss_input, accept_all=_mss_input, initiator=_mss_input, lazy=_mss_input),
    _dispatch(
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


_key_bytes = st.one_of(
    st.binary(max_size=80),
    st.just(KEY.public_key.to_protobuf()),
    st.tuples(st.sampled_from(list(KeyType)), st.binary(max_size=120)).map(
        lambda t: bytes((0x08, t[0], 0x12, len(t[1]))) + t[1]
    ),
)
_structured_payload = st.builds(
    lambda key, sig, muxers: NoiseHandshakePayload(
        identity_key=key, identity_sig=sig, extensions=NoiseExtensions(stream_muxers=muxers)
    ).SerializeToString(),
    _key_bytes,
    st.binary(max_size=80),
    st.lists(st.text(max_size=20), max_size=3),
)

NOISE_HANDSHAKE = Target(
    "noise_handshake",
    "Noise XX: responder and initiator over hostile streams (raw and well framed), "
    "garbage handshake messages at each stage, handshake payloads",
    _cases(
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
    _dispatch(
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
    _cases(
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
    _dispatch(
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

PEER = PeerID.from_public_key(KEY.public_key)
_identify_msg = st.builds(
    lambda key, addrs, observed, protocols, pv, av: Identify(
        publicKey=key,
        listenAddrs=addrs,
        observedAddr=observed,
        protocols=protocols,
        protocolVersion=pv,
        agentVersion=av,
    ).SerializeToString(),
    _key_bytes,
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
    _cases(
        decode=_identify_body,
        read=st.tuples(
            st.one_of(
                st.lists(_identify_body.map(length_prefixed), max_size=12).map(b"".join),
                st.binary(max_size=300),
            ),
            chunk_sizes,
        ),
    ),
    _dispatch({"decode": decode_identify, "read": _identify_read}),
    (IdentifyError,),
)


# --- kad messages ----------------------------------------------------------------------------


def _kad_decode(data: bytes) -> None:
    msg = m.decode_message(data)
    m.closer_peers(msg)
    m.provider_peers(msg)
    with contextlib.suppress(m.MessageError):
        m.message_type(msg)


def _kad_bounded(data: bytes, max_closer: int, max_providers: int) -> None:
    msg = m.decode_bounded(data, max_closer, max_providers)
    if len(msg.closerPeers) > max_closer or len(msg.providerPeers) > max_providers:
        raise Crash("decode_bounded kept more entries than its caps")
    m.closer_peers(msg)
    m.provider_peers(msg)


def _kad_peer(pid: bytes, addrs: list[bytes], conn: int) -> None:
    pb = dht_pb2.Message.Peer(id=pid, addrs=addrs, connection=conn)  # type: ignore[arg-type]
    info = m.PeerInfo.from_pb(pb)
    if m.PeerInfo.from_pb(info.to_pb()) != info:
        raise Crash("PeerInfo does not round-trip")


async def _kad_read(data: bytes, max_size: int, bounded: bool, sizes: list[int]) -> None:
    reader = BufferedReader(ScriptedStream(data, sizes))
    caps: dict[str, int] = {"max_closer": 3, "max_providers": 2} if bounded else {}
    for _ in range(len(data) + 1):
        if await m.read_message(reader, max_size, **caps) is None:
            return
    raise Crash("read_message consumed no bytes yet did not end")


_kad_body = st.one_of(st.binary(max_size=512), proto_noise, raw_bodies)

KAD_MESSAGES = Target(
    "kad_messages",
    "kad messages (dht/messages.py): bodies, bodies with capped peer lists, peer entries, "
    "length-prefixed streams",
    _cases(
        decode=_kad_body,
        bounded=st.tuples(_kad_body, st.integers(0, 5), st.integers(0, 5)),
        peer=st.tuples(peer_bytes, st.lists(st.binary(max_size=40), max_size=6), st.integers(0, 3)),
        read=st.tuples(
            st.one_of(
                st.binary(max_size=128),
                st.lists(_kad_body.map(length_prefixed), max_size=4).map(b"".join),
            ),
            st.integers(1, 600),
            st.booleans(),
            chunk_sizes,
        ),
    ),
    _dispatch(
        {"decode": _kad_decode, "bounded": _kad_bounded, "peer": _kad_peer, "read": _kad_read}
    ),
    (m.MessageError,),
)


def _kad_request_bytes(body: bytes) -> None:
    server, *_ = make_server()
    try:
        server.dispatch_bytes(PeerID.from_bytes(_REMOTE), body)
    finally:
        if server.stats.internal_errors:
            raise Crash("the kad server hit an internal error")


def _kad_request_batch(batch: list[dht_pb2.Message]) -> None:
    server, *_ = make_server()
    for request in batch:
        with contextlib.suppress(KadRequestError):
            server.dispatch(PeerID.from_bytes(_REMOTE), request)
    if server.stats.internal_errors:
        raise Crash("the kad server hit an internal error")


_REMOTE = PeerID.from_public_key(PrivateKey.from_seed(b"\x02" * 32).public_key).multihash

KAD_REQUESTS = Target(
    "kad_requests",
    "inbound kad requests through KadServer.dispatch (decoding, validation, stores)",
    _cases(
        body=raw_bodies, batch=st.lists(any_request, min_size=1, max_size=6).map(lambda b: (b,))
    ),
    _dispatch({"body": _kad_request_bytes, "batch": _kad_request_batch}),
    (KadRequestError,),
)


# --- records ---------------------------------------------------------------------------------

_VALIDATORS = (amino_validator(clock=lambda: NOW), PublicKeyValidator(), IpnsValidator())


def _records_validate(key: bytes, value: bytes) -> None:
    for validator in _VALIDATORS:
        for k in (key, b"/pk/" + key, b"/ipns/" + key, NAME_KEY):
            with contextlib.suppress(InvalidRecordError):
                validator.validate(k, value)
            with contextlib.suppress(InvalidRecordError):
                validator.select(k, [value, key])


def _records_signed(fields: dict[str, object], v1: bool, junk: bytes, pubkey: bytes | None) -> None:
    data = cbor2.dumps(fields, canonical=True)
    entry = ipns_pb2.IpnsEntry(
        data=data, signatureV2=IPNS_KEY_PAIR.sign(SIGNATURE_V2_PREFIX + data)
    )
    if v1:
        entry.value = junk
    if pubkey is not None:
        entry.pubKey = pubkey
    validator = IpnsValidator(clock=lambda: NOW)
    with contextlib.suppress(InvalidRecordError):
        validator.validate(NAME_KEY, entry.SerializeToString())
    validator.select(NAME_KEY, [entry.SerializeToString(), junk])


_ipns_entry = st.builds(
    lambda value, sig1, vt, validity, seq, ttl, pub, sig2, data: ipns_pb2.IpnsEntry(
        value=value,
        signatureV1=sig1,
        validityType=vt,
        validity=validity,
        sequence=seq,
        ttl=ttl,
        pubKey=pub,
        signatureV2=sig2,
        data=data,
    ).SerializeToString(),
    st.binary(max_size=40),
    st.binary(max_size=70),
    st.integers(0, 1),
    st.binary(max_size=40),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    _key_bytes,
    st.binary(max_size=70),
    st.one_of(st.binary(max_size=60), ipns_fields.map(lambda f: cbor2.dumps(f, canonical=True))),
)

RECORDS = Target(
    "records",
    "/pk/ and /ipns/ records: validate and select on arbitrary keys and values, correctly "
    "signed IPNS data of any shape, RFC 3339 validity",
    _cases(
        validate=st.tuples(
            st.binary(max_size=80), st.one_of(st.binary(max_size=200), _ipns_entry, _key_bytes)
        ),
        signed=st.tuples(ipns_fields, st.booleans(), st.binary(max_size=8), st.none() | _key_bytes),
        rfc3339=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)).map(
            lambda t: (t,)
        ),
    ),
    _dispatch(
        {"validate": _records_validate, "signed": _records_signed, "rfc3339": parse_rfc3339_ns}
    ),
    (InvalidRecordError,),
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


_ma_words = st.sampled_from(
    [
        "ip4",
        "ip6",
        "tcp",
        "udp",
        "dns",
        "dns4",
        "dns6",
        "dnsaddr",
        "p2p",
        "ipfs",
        "quic-v1",
        "webtransport",
        "certhash",
        "p2p-circuit",
        "ws",
        "wss",
        "127.0.0.1",
        "::1",
        "4001",
        "0",
    ]
)
MULTIADDR = Target(
    "multiaddr",
    "multiaddr: binary form (raw and structured components), text form, address lists",
    _cases(
        bytes=st.one_of(
            st.binary(max_size=120), st.lists(_component, min_size=1, max_size=5).map(b"".join)
        ),
        text=st.lists(st.one_of(_ma_words, st.text(max_size=12)), max_size=6).map(
            lambda parts: "/" + "/".join(parts)
        )
        | st.text(max_size=60),
        list=st.lists(st.one_of(st.binary(max_size=30), _component), max_size=8).map(
            lambda raw: (raw,)
        ),
    ),
    _dispatch({"bytes": _multiaddr_bytes, "text": _multiaddr_text, "list": _multiaddr_list}),
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


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_id_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=_B58, max_size=60),
    st.builds(
        lambda p, s: p + s,
        st.sampled_from(["1", "Qm", "12D3KooW", "b", "B", "k", "K", "z", "f", "m", "u", "bafz"]),
        st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz=", max_size=70),
    ),
)

PEER_ID = Target(
    "peer_id",
    "peer ids (bytes and text: base58, CIDv1 in any multibase) and keys (public and "
    "private protobuf, signatures)",
    _cases(
        bytes=st.one_of(st.binary(max_size=80), peer_bytes),
        text=_id_text,
        public_key=st.tuples(
            st.one_of(st.binary(max_size=200), _key_bytes), st.binary(max_size=300)
        ),
        private_key=st.binary(max_size=150),
    ),
    _dispatch(
        {
            "bytes": _peer_bytes,
            "text": _peer_text,
            "public_key": _public_key,
            "private_key": _private_key,
        }
    ),
    (InvalidPeerIDError, InvalidKeyError),
)


# --- routing v1 HTTP inputs ------------------------------------------------------------------

_VALID_IDS = [
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    PEER.to_base58(),
    PEER.to_cid_string("base32"),
    PEER.to_cid_string("base36"),
]


@st.composite
def _mangled_id(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_VALID_IDS))
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 3))
    return text[:at] + draw(st.text(alphabet=_B58 + "=-_/%", max_size=3)) + text[at + cut :]


_path_ids = st.one_of(_id_text, _mangled_id())


def _routing_path(text: str) -> None:
    for parse in (parse_cid, parse_peer_id, parse_key):
        with contextlib.suppress(BadIdError):
            parse(text)


_filter_terms = st.lists(
    st.one_of(
        st.sampled_from(
            ["tcp", "!ip6", "quic-v1", "webtransport", "unknown", "!", "", " ", "ip4/x"]
        ),
        st.text(max_size=12),
    ),
    max_size=8,
).map(",".join)
_record = st.fixed_dictionaries(
    {"Schema": st.just("peer"), "ID": st.just("x")},
    optional={
        "Addrs": st.lists(
            st.one_of(st.text(max_size=30), _ma_words.map(lambda w: f"/{w}/")), max_size=4
        ),
        "Protocols": st.lists(st.text(max_size=20), max_size=3) | st.none(),
    },
)


def _routing_filter(addrs: str | None, protocols: str | None, record: dict[str, Any]) -> None:
    RecordFilter.from_query(addrs, protocols).apply(record)


_media = st.one_of(
    st.sampled_from(
        ["application/json", "application/x-ndjson", MEDIA_IPNS_RECORD, "*/*", "application/*"]
    ),
    st.text(max_size=20),
)
_accept = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.lists(
        st.tuples(_media, st.one_of(st.just(""), st.text(max_size=8).map(lambda q: f";q={q}"))),
        max_size=4,
    ).map(lambda parts: ", ".join(media + q for media, q in parts)),
)


def _routing_accept(accept: str | None) -> None:
    wants_ndjson(accept)
    accepts_exactly(accept, MEDIA_IPNS_RECORD)


ROUTING_V1 = Target(
    "routing_v1",
    "Delegated Routing V1 request inputs: {cid} / {peer-id} / {key} / IPNS {name} path "
    "segments, filter-addrs and filter-protocols query values, Accept headers",
    _cases(
        path=_path_ids,
        filter=st.tuples(st.none() | _filter_terms, st.none() | _filter_terms, _record),
        accept=_accept,
    ),
    _dispatch({"path": _routing_path, "filter": _routing_filter, "accept": _routing_accept}),
    (BadIdError, FilterError),
)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        MSS,
        NOISE_HANDSHAKE,
        NOISE_TRANSPORT,
        YAMUX,
        IDENTIFY,
        KAD_MESSAGES,
        KAD_REQUESTS,
        RECORDS,
        MULTIADDR,
        PEER_ID,
        ROUTING_V1,
    )
}
"""Every decoder, in the order ``scripts/fuzz`` runs them."""
