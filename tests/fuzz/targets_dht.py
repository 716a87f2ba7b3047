"""Fuzz targets of the DHT's decoders: kad messages, inbound kad requests, /pk/ and
/ipns/ records (see ``targets.py`` for the rules every target follows)."""

from __future__ import annotations

import contextlib

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
from p2p.test_noise_fuzz import ScriptedStream, chunk_sizes

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
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import BufferedReader, length_prefixed
from zikade_py.p2p.peer_id import PeerID

from .cases import KEY_BYTES, cases, dispatch
from .engine import Crash, Target

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
    cases(
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
    dispatch(
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
    cases(body=raw_bodies, batch=st.lists(any_request, min_size=1, max_size=6).map(lambda b: (b,))),
    dispatch({"body": _kad_request_bytes, "batch": _kad_request_batch}),
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
    KEY_BYTES,
    st.binary(max_size=70),
    st.one_of(st.binary(max_size=60), ipns_fields.map(lambda f: cbor2.dumps(f, canonical=True))),
)

RECORDS = Target(
    "records",
    "/pk/ and /ipns/ records: validate and select on arbitrary keys and values, correctly "
    "signed IPNS data of any shape, RFC 3339 validity",
    cases(
        validate=st.tuples(
            st.binary(max_size=80), st.one_of(st.binary(max_size=200), _ipns_entry, KEY_BYTES)
        ),
        signed=st.tuples(ipns_fields, st.booleans(), st.binary(max_size=8), st.none() | KEY_BYTES),
        rfc3339=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)).map(
            lambda t: (t,)
        ),
    ),
    dispatch(
        {"validate": _records_validate, "signed": _records_signed, "rfc3339": parse_rfc3339_ns}
    ),
    (InvalidRecordError,),
)
