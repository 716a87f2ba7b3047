"""``/ipns/`` records: the ipfs/specs test vectors, records we create, tampering and selection."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from zikade_py.dht.pb import ipns_pb2
from zikade_py.dht.records import (
    InvalidRecordError,
    IpnsValidator,
    amino_validator,
    ipns_key,
    make_ipns_record,
)
from zikade_py.dht.records.ipns import (
    MAX_RECORD_SIZE,
    SIGNATURE_V2_PREFIX,
    format_rfc3339_ns,
    parse_ipns_record,
    parse_rfc3339_ns,
)
from zikade_py.p2p.crypto import KeyType, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import PeerID

VECTORS = Path(__file__).parent / "vectors"
UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + datetime.timedelta(hours=24)
KEY = PrivateKey.from_seed(bytes(range(32)))
NAME = PeerID.from_public_key(KEY.public_key)
OTHER = PrivateKey.from_seed(bytes(32))
VALUE = b"/ipfs/bafkqaddwgevxmmraojswg33smq"


def fixed(now: datetime.datetime) -> IpnsValidator:
    return IpnsValidator(clock=lambda: now)


def vector(suffix: str) -> tuple[bytes, bytes]:
    """(routing key, record bytes) of the vector file ending in ``_<suffix>.ipns-record``."""
    (path,) = VECTORS.glob(f"*_{suffix}.ipns-record")
    name = PeerID.from_string(path.name.split("_")[0])
    return ipns_key(name), path.read_bytes()


# ------------------------------------------------------------------------------------- vectors

VALID_VECTORS = {
    "v1-v2": b"/ipfs/bafkqaddwgevxmmraojswg33smq",
    "v1-v2-broken-signature-v1": b"/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi",
    "v2": None,
}
INVALID_VECTORS = ["v1", "v1-v2-broken-v1-value", "v1-v2-broken-signature-v2"]


def test_all_six_vectors_are_present() -> None:
    assert len(list(VECTORS.glob("*.ipns-record"))) == 6


@pytest.mark.parametrize("suffix", sorted(VALID_VECTORS))
def test_valid_vectors(suffix: str) -> None:
    key, data = vector(suffix)
    fixed(NOW).validate(key, data)
    amino_validator(clock=lambda: NOW).validate(key, data)
    expected = VALID_VECTORS[suffix]
    if expected is not None:
        assert parse_ipns_record(data).value == expected


@pytest.mark.parametrize("suffix", INVALID_VECTORS)
def test_invalid_vectors(suffix: str) -> None:
    key, data = vector(suffix)
    with pytest.raises(InvalidRecordError):
        fixed(NOW).validate(key, data)


def test_vectors_expire_after_their_eol() -> None:
    key, data = vector("v2")
    eol = datetime.datetime(2123, 8, 14, 12, 17, 3, 694052, tzinfo=UTC)
    fixed(eol).validate(key, data)  # EOL itself is still valid (go: now.After(eol) fails)
    with pytest.raises(InvalidRecordError, match="expired"):
        fixed(eol + datetime.timedelta(microseconds=1)).validate(key, data)


def test_vector_under_another_name_is_rejected() -> None:
    _, data = vector("v2")
    other_key, _ = vector("v1-v2")
    with pytest.raises(InvalidRecordError):
        fixed(NOW).validate(other_key, data)


# ------------------------------------------------------------------------------------- created


def test_created_record_is_v1_v2_like_kubo() -> None:
    data = make_ipns_record(KEY, VALUE, 7, LATER, ttl_ns=300_000_000_000)
    fixed(NOW).validate(ipns_key(NAME), data)
    entry = ipns_pb2.IpnsEntry.FromString(data)
    # DAG-CBOR map, keys sorted by length then bytes
    assert list(cbor2.loads(entry.data)) == ["TTL", "Value", "Sequence", "Validity", "ValidityType"]
    assert entry.data.startswith(b"\xa5\x63TTL")
    assert KEY.public_key.verify(SIGNATURE_V2_PREFIX + entry.data, entry.signatureV2)
    # V1 compatibility fields as boxo NewRecord writes them; the V1 signature covers the name "EOL"
    assert entry.value == VALUE and entry.sequence == 7 and entry.ttl == 300_000_000_000
    assert entry.validity == b"2026-01-02T00:00:00Z"
    assert KEY.public_key.verify(VALUE + entry.validity + b"EOL", entry.signatureV1)
    assert not entry.HasField("pubKey")  # Ed25519 keys are inlined in the name
    parsed = parse_ipns_record(data)
    assert (parsed.value, parsed.sequence, parsed.ttl_ns) == (VALUE, 7, 300_000_000_000)


def test_created_v2_only_and_embedded_key_records() -> None:
    v2 = make_ipns_record(KEY, VALUE, 1, LATER, v1_compatible=False)
    entry = ipns_pb2.IpnsEntry.FromString(v2)
    assert [f.name for f, _ in entry.ListFields()] == ["signatureV2", "data"]
    fixed(NOW).validate(ipns_key(NAME), v2)
    embedded = make_ipns_record(KEY, VALUE, 1, LATER, embed_public_key=True)
    assert ipns_pb2.IpnsEntry.FromString(embedded).pubKey == KEY.public_key.to_protobuf()
    fixed(NOW).validate(ipns_key(NAME), embedded)


def test_created_record_keeps_nanosecond_validity() -> None:
    when = datetime.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    data = make_ipns_record(KEY, VALUE, 1, when)
    assert parse_ipns_record(data).validity == b"2030-05-06T07:08:09.123456Z"
    assert parse_ipns_record(data).validity_ns == parse_rfc3339_ns(b"2030-05-06T07:08:09.123456Z")


def test_created_record_expires() -> None:
    data = make_ipns_record(KEY, VALUE, 1, LATER)
    with pytest.raises(InvalidRecordError, match="expired"):
        fixed(LATER + datetime.timedelta(seconds=1)).validate(ipns_key(NAME), data)
    with pytest.raises(InvalidRecordError, match="expired"):
        IpnsValidator().validate(ipns_key(NAME), data, now=LATER + datetime.timedelta(days=1))


def test_make_ipns_record_misuse() -> None:
    with pytest.raises(ValueError):
        make_ipns_record(KEY, VALUE, 1, datetime.datetime(2030, 1, 1))  # naive datetime
    with pytest.raises(ValueError):
        make_ipns_record(KEY, VALUE, -1, LATER)
    with pytest.raises(ValueError):
        make_ipns_record(KEY, b"x" * MAX_RECORD_SIZE, 1, LATER)


# ------------------------------------------------------------------------------------ tampered


def _resign(entry: ipns_pb2.IpnsEntry, fields: dict[str, Any], key: PrivateKey = KEY) -> bytes:
    entry.data = cbor2.dumps(fields, canonical=True)
    entry.signatureV2 = key.sign(SIGNATURE_V2_PREFIX + entry.data)
    return entry.SerializeToString()


def _fields(validity: bytes = b"2026-01-02T00:00:00Z", **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "TTL": 0, "Value": VALUE, "Sequence": 1, "Validity": validity, "ValidityType": 0,
    }
    fields.update(extra)
    return {k: v for k, v in fields.items() if v is not None}


def test_tampered_data_fails_the_signature() -> None:
    original = make_ipns_record(KEY, VALUE, 1, LATER, v1_compatible=False)
    entry = ipns_pb2.IpnsEntry.FromString(original)
    entry.data = entry.data.replace(b"bafk", b"bafy")
    with pytest.raises(InvalidRecordError, match="signatureV2"):
        fixed(NOW).validate(ipns_key(NAME), entry.SerializeToString())


def test_record_signed_by_another_key_is_rejected() -> None:
    data = make_ipns_record(OTHER, VALUE, 1, LATER)
    with pytest.raises(InvalidRecordError, match="signatureV2"):
        fixed(NOW).validate(ipns_key(NAME), data)
    # and embedding the signer's key does not help: it must hash to the name
    data = make_ipns_record(OTHER, VALUE, 1, LATER, embed_public_key=True)
    with pytest.raises(InvalidRecordError, match="does not match"):
        fixed(NOW).validate(ipns_key(NAME), data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("value", b"/ipfs/other"), ("sequence", 2), ("ttl", 5), ("validity", b"2099-01-01T00:00:00Z")],
)
def test_v1_fields_must_match_cbor(field: str, value: object) -> None:
    entry = ipns_pb2.IpnsEntry.FromString(make_ipns_record(KEY, VALUE, 1, LATER))
    setattr(entry, field, value)
    with pytest.raises(InvalidRecordError, match="differs"):
        fixed(NOW).validate(ipns_key(NAME), entry.SerializeToString())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (_fields(ValidityType=1), "validity type"),
        (_fields(ValidityType=None), "ValidityType"),
        (_fields(Validity=None), "Validity"),
        (_fields(validity=b"tomorrow"), "RFC 3339"),
        (_fields(validity=b"2026-13-02T00:00:00Z"), "validity"),
        (_fields(Sequence=None), "Sequence"),
        (_fields(Sequence=-1), "sequence"),
        (_fields(Sequence="1"), "Sequence"),
        (_fields(TTL=-5), "TTL"),
        (_fields(Value="text"), "Value"),
    ],
)
def test_bad_signed_fields(fields: dict[str, Any], message: str) -> None:
    data = _resign(ipns_pb2.IpnsEntry(), fields)
    with pytest.raises(InvalidRecordError, match=message):
        fixed(NOW).validate(ipns_key(NAME), data)


def test_extra_cbor_fields_are_ignored() -> None:
    data = _resign(ipns_pb2.IpnsEntry(), _fields(_custom=b"meta", TTL=None))
    fixed(NOW).validate(ipns_key(NAME), data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xff",
        ipns_pb2.IpnsEntry(data=b"\xa0").SerializeToString(),  # no signatureV2
        ipns_pb2.IpnsEntry(signatureV2=b"x").SerializeToString(),  # no data
        ipns_pb2.IpnsEntry(signatureV2=b"x", data=b"\x81\x01").SerializeToString(),  # a list
        ipns_pb2.IpnsEntry(signatureV2=b"x", data=b"\xa1\x01\x01").SerializeToString(),  # int keys
        ipns_pb2.IpnsEntry(signatureV2=b"x", data=b"\xbf").SerializeToString(),  # truncated
    ],
)
def test_malformed_entries(data: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        fixed(NOW).validate(ipns_key(NAME), data)


def test_size_limit_is_checked_first() -> None:
    big = make_ipns_record(KEY, VALUE, 1, LATER)
    entry = ipns_pb2.IpnsEntry.FromString(big)
    entry.pubKey = b"\x00" * (MAX_RECORD_SIZE - len(big))
    assert len(entry.SerializeToString()) > MAX_RECORD_SIZE
    with pytest.raises(InvalidRecordError, match="exceeds"):
        fixed(NOW).validate(ipns_key(NAME), entry.SerializeToString())


@pytest.mark.parametrize("key", [b"/ipns/", b"/ipns/garbage", b"/pk/" + NAME.multihash, b"ipns"])
def test_bad_routing_keys(key: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        fixed(NOW).validate(key, make_ipns_record(KEY, VALUE, 1, LATER))


def test_rsa_name_needs_the_embedded_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = PublicKey(KeyType.RSA, der)
    name = PeerID.from_public_key(public)
    fields = _fields()
    data_bytes = cbor2.dumps(fields, canonical=True)
    signature = private.sign(SIGNATURE_V2_PREFIX + data_bytes, padding.PKCS1v15(), hashes.SHA256())
    entry = ipns_pb2.IpnsEntry(data=data_bytes, signatureV2=signature)
    with pytest.raises(InvalidRecordError, match="no pubKey"):
        fixed(NOW).validate(ipns_key(name), entry.SerializeToString())
    entry.pubKey = public.to_protobuf()
    fixed(NOW).validate(ipns_key(name), entry.SerializeToString())
    entry.pubKey = b"\x08\x00\x12\x03abc"
    with pytest.raises(InvalidRecordError, match="not a public key"):
        fixed(NOW).validate(ipns_key(name), entry.SerializeToString())


# ------------------------------------------------------------------------------------ selection


def _select(values: list[bytes]) -> int:
    return IpnsValidator().select(ipns_key(NAME), values)


def test_select_prefers_higher_sequence_then_later_validity() -> None:
    low = make_ipns_record(KEY, VALUE, 1, LATER + datetime.timedelta(days=1))
    high = make_ipns_record(KEY, VALUE, 2, LATER)
    assert _select([low, high]) == 1 and _select([high, low]) == 0
    early = make_ipns_record(KEY, b"/ipfs/a", 2, LATER)
    late = make_ipns_record(KEY, b"/ipfs/a", 2, LATER + datetime.timedelta(seconds=1))
    assert _select([late, early]) == 0 and _select([early, late]) == 1
    assert _select([low, early, late, high]) == 2


def test_select_breaks_ties_bytewise() -> None:
    a = make_ipns_record(KEY, b"/ipfs/a", 3, LATER)
    b = make_ipns_record(KEY, b"/ipfs/b", 3, LATER)
    bigger = max(a, b)
    assert [a, b][_select([a, b])] == bigger
    assert [b, a][_select([b, a])] == bigger
    assert _select([a, a]) == 0


def test_select_prefers_v2_over_no_v2() -> None:
    v2 = make_ipns_record(KEY, VALUE, 1, LATER)
    entry = ipns_pb2.IpnsEntry.FromString(make_ipns_record(KEY, VALUE, 9, LATER))
    entry.ClearField("signatureV2")  # parseable, higher sequence, but no V2 signature
    no_v2 = entry.SerializeToString()
    assert _select([no_v2, v2]) == 1 and _select([v2, no_v2]) == 0


def test_select_ranks_unparseable_last_and_needs_values() -> None:
    good = make_ipns_record(KEY, VALUE, 1, LATER)
    assert _select([b"junk", good, b"\xff"]) == 1
    with pytest.raises(InvalidRecordError):
        _select([])
    assert amino_validator().select(ipns_key(NAME), [good, b"junk"]) == 0


# ---------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        (b"1970-01-01T00:00:00Z", 0),
        (b"1970-01-01T00:00:00.000000001Z", 1),
        (b"1970-01-01T01:00:00+01:00", 0),
        (b"1969-12-31T23:00:00.5-01:00", 500_000_000),
        (b"2123-08-14T12:17:03.694052Z", 4_847_689_023_694_052_000),
    ],
)
def test_parse_rfc3339(text: bytes, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [b"", b"2026-01-01", b"2026-01-01T00:00:00", b"2026-01-01T00:00:00.Z",
     b"2026-01-01T00:00:00.1234567890Z", b"2026-02-30T00:00:00Z", b"2026-01-01T24:00:00Z",
     b"2026-01-01T00:00:00+24:00", b"\xff"],
)
def test_parse_rfc3339_rejects(text: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        parse_rfc3339_ns(text)


def test_format_rfc3339_trims_like_go() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert format_rfc3339_ns(when) == b"2024-01-02T03:04:05.5Z"
    assert format_rfc3339_ns(when, nanos=123) == b"2024-01-02T03:04:05.000000123Z"
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    eastern = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=plus_two)
    assert format_rfc3339_ns(eastern) == b"2024-01-02T01:04:05Z"
