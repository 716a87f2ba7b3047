"""Arbitrary bytes from peers raise only the declared errors (MessageError, InvalidRecordError)."""

from __future__ import annotations

import contextlib
import datetime

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zikade_py.dht import messages as m
from zikade_py.dht.pb import dht_pb2, ipns_pb2
from zikade_py.dht.records import (
    InvalidRecordError,
    IpnsValidator,
    PublicKeyValidator,
    amino_validator,
    ipns_key,
)
from zikade_py.dht.records.ipns import SIGNATURE_V2_PREFIX, parse_rfc3339_ns
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import BufferedReader
from zikade_py.p2p.peer_id import PeerID

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
KEY = PrivateKey.from_seed(bytes(range(32)))
NAME_KEY = ipns_key(PeerID.from_public_key(KEY.public_key))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# Protobuf-shaped noise: valid tags with random payloads reach deeper than random bytes.
field = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(0, 2**64 - 1)).map(
        lambda t: _varint(t[0] << 3) + _varint(t[1])
    ),
    st.tuples(st.integers(1, 12), st.binary(max_size=64)).map(
        lambda t: _varint(t[0] << 3 | 2) + _varint(len(t[1])) + t[1]
    ),
    st.binary(max_size=8),
)
proto_noise = st.lists(field, max_size=12).map(b"".join)
peer_bytes = st.one_of(
    st.binary(max_size=48),
    st.binary(min_size=32, max_size=32).map(lambda d: b"\x12\x20" + d),
    st.binary(min_size=36, max_size=36).map(lambda d: b"\x00\x24" + d),
)


@FUZZ
@given(st.one_of(st.binary(max_size=512), proto_noise))
def test_decode_message(data: bytes) -> None:
    try:
        msg = m.decode_message(data)
    except m.MessageError:
        return
    # whatever decoded must be safe to inspect
    m.closer_peers(msg)
    m.provider_peers(msg)
    with contextlib.suppress(m.MessageError):
        m.message_type(msg)


@FUZZ
@given(peer_bytes, st.lists(st.binary(max_size=40), max_size=6), st.integers(0, 3))
def test_peer_info_from_pb(pid: bytes, addrs: list[bytes], conn: int) -> None:
    pb = dht_pb2.Message.Peer(id=pid, addrs=addrs, connection=conn)  # type: ignore[arg-type]
    try:
        info = m.PeerInfo.from_pb(pb)
    except m.MessageError:
        return
    assert len(info.addrs) <= len(addrs)
    assert m.PeerInfo.from_pb(info.to_pb()) == info


@FUZZ
@given(st.binary(max_size=64), st.integers(1, 64))
async def test_read_message(data: bytes, max_size: int) -> None:
    class Once:
        def __init__(self) -> None:
            self.data = data

        async def read(self, max_bytes: int = 65536) -> bytes:
            out, self.data = self.data, b""
            return out

        async def write(self, chunk: bytes) -> None:
            pass

        async def close(self) -> None:
            pass

    reader = BufferedReader(Once())
    for _ in range(len(data) + 1):
        try:
            if await m.read_message(reader, max_size) is None:
                return
        except m.MessageError:
            return


@FUZZ
@given(st.binary(max_size=80), st.binary(max_size=200))
def test_validators_on_arbitrary_bytes(key: bytes, value: bytes) -> None:
    validators = (amino_validator(clock=lambda: NOW), PublicKeyValidator(), IpnsValidator())
    for validator in validators:
        for k in (key, b"/pk/" + key, b"/ipns/" + key, NAME_KEY):
            with contextlib.suppress(InvalidRecordError):
                validator.validate(k, value)
            with contextlib.suppress(InvalidRecordError):
                validator.select(k, [value, key])


cbor_leaf = st.one_of(
    st.integers(-(2**70), 2**70), st.binary(max_size=40), st.text(max_size=20), st.none(),
    st.booleans(), st.floats(allow_nan=True),
)
cbor_value = st.recursive(
    cbor_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ipns_fields = st.dictionaries(
    st.sampled_from(["TTL", "Value", "Sequence", "Validity", "ValidityType", "_x"]),
    cbor_value | st.sampled_from([b"2099-01-01T00:00:00Z", 0, 1]),
)


@FUZZ
@given(ipns_fields, st.booleans(), st.binary(max_size=8))
def test_ipns_validator_on_signed_garbage(fields: dict[str, object], v1: bool, junk: bytes) -> None:
    # Correctly signed CBOR of arbitrary shape: everything past the signature check is exercised.
    data = cbor2.dumps(fields, canonical=True)
    entry = ipns_pb2.IpnsEntry(data=data, signatureV2=KEY.sign(SIGNATURE_V2_PREFIX + data))
    if v1:
        entry.value = junk
    validator = IpnsValidator(clock=lambda: NOW)
    with contextlib.suppress(InvalidRecordError):
        validator.validate(NAME_KEY, entry.SerializeToString())
    validator.select(NAME_KEY, [entry.SerializeToString(), junk])


@FUZZ
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_rfc3339_parser(text: bytes) -> None:
    with contextlib.suppress(InvalidRecordError):
        parse_rfc3339_ns(text)
