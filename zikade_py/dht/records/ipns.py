"""``/ipns/<peer id>`` records: signed, expiring, versioned pointers (IPNS V2).

Verification follows ipfs/specs ``ipns-record.md`` "Record Verification" and boxo
``ipns/validation.go`` step by step (WIRE.md §8.9): size ≤ 10 KiB, signatureV2
and data present, public key from ``pubKey`` (which must hash to the name) or
inlined in an identity-multihash name, signatureV2 over ``"ipns-signature:" ‖
data``, V1 fields (when present) equal to the signed CBOR ones, and an EOL in
the future. Selection is boxo's ``compare``: a V2 record beats a V1-only one,
then the higher Sequence, then the later Validity, then the bytewise larger
serialization.

:func:`make_ipns_record` creates V1+V2 records as Kubo publishes them, for tests
and the CLI.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from google.protobuf.message import DecodeError

from zikade_py.dht.pb import ipns_pb2
from zikade_py.dht.records.validator import InvalidRecordError, split_key
from zikade_py.p2p.crypto import InvalidKeyError, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

IPNS_NAMESPACE: Final = "ipns"
"""The namespace of IPNS records."""

MAX_RECORD_SIZE: Final = 10 * 1024
"""Largest serialized IpnsEntry accepted (spec "Record Size Limit", boxo ``MaxRecordSize``)."""

SIGNATURE_V2_PREFIX: Final = b"ipns-signature:"
"""Prepended to the CBOR ``data`` before signing (signatureV2)."""

DEFAULT_TTL_NS: Final = 300 * 1_000_000_000
"""The spec's suggested TTL hint: 5 minutes, in nanoseconds."""

_MAX_UINT64: Final = 2**64 - 1

_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def ipns_key(peer_id: PeerID) -> bytes:
    """The routing key ``/ipns/<binary peer id>`` of an IPNS name."""
    return b"/ipns/" + peer_id.multihash


# --------------------------------------------------------------------------------------------
# Time stamps


def parse_rfc3339_ns(text: bytes) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time stamp (as go ``time.RFC3339Nano``)."""
    m = _RFC3339.match(text)
    if m is None:
        raise InvalidRecordError(f"validity {text[:64]!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    try:
        offset = datetime.timedelta(0)
        if zone not in (b"Z", b"z"):
            sign = -1 if zone[0:1] == b"-" else 1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("bad zone offset")
            offset = sign * datetime.timedelta(hours=hours, minutes=minutes)
        stamp = datetime.datetime(
            year, month, day, hour, minute, second, tzinfo=datetime.timezone(offset)
        )
    except ValueError as exc:
        raise InvalidRecordError(f"validity {text[:64]!r}: {exc}") from None
    nanos = int(frac[1:].ljust(9, b"0")) if frac else 0
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    delta = stamp - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + nanos


def format_rfc3339_ns(when: datetime.datetime, nanos: int | None = None) -> bytes:
    """``when`` in UTC as go ``time.RFC3339Nano`` (fraction without trailing zeros).

    ``nanos`` overrides the sub-second part (datetime only holds microseconds).
    """
    if when.tzinfo is None:
        raise ValueError("IPNS validity needs a timezone-aware datetime")
    utc = when.astimezone(datetime.UTC)
    frac = utc.microsecond * 1000 if nanos is None else nanos
    if not 0 <= frac < 1_000_000_000:
        raise ValueError("nanoseconds out of range")
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return (text + "Z").encode("ascii")


def _datetime_to_ns(when: datetime.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("use a timezone-aware datetime")
    delta = when - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True, slots=True)
class IpnsRecord:
    """The fields of a parsed (not yet verified) IPNS record, taken from the signed CBOR."""

    entry: ipns_pb2.IpnsEntry
    fields: dict[str, Any]
    value: bytes
    validity: bytes
    validity_ns: int
    sequence: int
    ttl_ns: int | None

    @property
    def has_v2(self) -> bool:
        """Whether the record carries a signatureV2 (boxo compare's first criterion)."""
        return self.entry.HasField("signatureV2")


def _cbor_int(fields: dict[str, Any], name: str, required: bool) -> int | None:
    raw = fields.get(name)
    if raw is None:
        if required:
            raise InvalidRecordError(f"IPNS data lacks {name}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidRecordError(f"IPNS data {name} is not an integer")
    return raw


def _cbor_bytes(fields: dict[str, Any], name: str) -> bytes:
    raw = fields.get(name)
    if not isinstance(raw, bytes):
        raise InvalidRecordError(f"IPNS data {name} is missing or not bytes")
    return raw


def _decode_cbor_map(data: bytes) -> dict[str, Any]:
    try:
        decoded = cbor2.loads(data)
    # cbor2 raises assorted exception types on hostile input; any of them means "not CBOR".
    except Exception as exc:
        raise InvalidRecordError(f"IPNS data is not CBOR: {type(exc).__name__}") from None
    if not isinstance(decoded, dict) or not all(isinstance(k, str) for k in decoded):
        raise InvalidRecordError("IPNS data is not a map with string keys")
    return decoded


def parse_ipns_record(data: bytes) -> IpnsRecord:
    """Parse an IpnsEntry and its CBOR ``data`` without checking the signature or expiry.

    Raises :class:`InvalidRecordError` for anything that boxo ``UnmarshalRecord``
    and the field accessors would refuse. ``Sequence`` is required (the spec says
    MUST; boxo's ``Validate`` skips it but its ``Select`` fails without one), while
    ``TTL`` and ``Value`` may be absent, as in boxo.
    """
    if len(data) > MAX_RECORD_SIZE:
        raise InvalidRecordError(f"IPNS record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
    entry = ipns_pb2.IpnsEntry()
    try:
        entry.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise InvalidRecordError(f"IPNS record is not an IpnsEntry: {exc}") from None
    if not entry.data:
        raise InvalidRecordError("IPNS record has no data (a V1-only record)")
    fields = _decode_cbor_map(entry.data)
    validity_type = _cbor_int(fields, "ValidityType", required=True)
    if validity_type != 0:
        raise InvalidRecordError(f"unrecognized IPNS validity type {validity_type}")
    validity = _cbor_bytes(fields, "Validity")
    sequence = _cbor_int(fields, "Sequence", required=True)
    assert sequence is not None
    if not 0 <= sequence <= _MAX_UINT64:
        raise InvalidRecordError("IPNS sequence out of range")
    ttl = _cbor_int(fields, "TTL", required=False)
    value = fields.get("Value", b"")
    if not isinstance(value, bytes):
        raise InvalidRecordError("IPNS data Value is not bytes")
    return IpnsRecord(
        entry=entry,
        fields=fields,
        value=value,
        validity=validity,
        validity_ns=parse_rfc3339_ns(validity),
        sequence=sequence,
        ttl_ns=ttl,
    )


def _check_v1_fields(record: IpnsRecord) -> None:
    """V1 copies must equal the signed CBOR values (spec step 7; boxo validateCborDataMatches)."""
    entry, fields = record.entry, record.fields
    checks = (
        ("Value", entry.value, fields.get("Value")),
        ("Validity", entry.validity, fields.get("Validity")),
        ("ValidityType", int(entry.validityType), fields.get("ValidityType")),
        ("Sequence", entry.sequence, fields.get("Sequence")),
        ("TTL", entry.ttl, fields.get("TTL")),
    )
    for name, v1, v2 in checks:
        if v2 is None or type(v1) is not type(v2) or v1 != v2:
            raise InvalidRecordError(f"IPNS field {name} differs between protobuf and CBOR")


def _public_key_for(record: IpnsRecord, name: PeerID) -> PublicKey:
    """The key from ``pubKey`` (must hash to ``name``) or inlined in ``name`` (spec step 3)."""
    if record.entry.pubKey:
        try:
            key = PublicKey.from_protobuf(record.entry.pubKey)
        except InvalidKeyError as exc:
            raise InvalidRecordError(f"IPNS pubKey is not a public key: {exc}") from None
        if PeerID.from_public_key(key) != name:
            raise InvalidRecordError("IPNS pubKey does not match the name")
        return key
    try:
        inlined = name.extract_public_key()
    except InvalidKeyError as exc:
        raise InvalidRecordError(f"IPNS name inlines a bad key: {exc}") from None
    if inlined is None:
        raise InvalidRecordError("IPNS record has no pubKey and the name does not inline one")
    return inlined


def verify_ipns_record(name: PeerID, data: bytes, now: datetime.datetime) -> IpnsRecord:
    """Fully verify ``data`` as the IPNS record of ``name`` at time ``now``; return it parsed."""
    record = parse_ipns_record(data)
    if not record.entry.signatureV2:
        raise InvalidRecordError("IPNS record has no signatureV2")
    key = _public_key_for(record, name)
    if not key.verify(SIGNATURE_V2_PREFIX + record.entry.data, record.entry.signatureV2):
        raise InvalidRecordError("IPNS signatureV2 is invalid")
    if record.entry.signatureV1 or record.entry.value:
        _check_v1_fields(record)
    if _datetime_to_ns(now) > record.validity_ns:
        raise InvalidRecordError("IPNS record has expired")
    if record.ttl_ns is not None and record.ttl_ns < 0:
        raise InvalidRecordError("IPNS record has a negative TTL")
    return record


def name_from_key(key: bytes) -> PeerID:
    """The IPNS name (peer id) of a routing key ``/ipns/<binary peer id>``."""
    namespace, rest = split_key(key)
    if namespace != IPNS_NAMESPACE:
        raise InvalidRecordError(f"namespace {namespace!r} is not 'ipns'")
    try:
        return PeerID.from_bytes(rest)
    except InvalidPeerIDError as exc:
        raise InvalidRecordError(f"/ipns/ key is not a peer id: {exc}") from None


# --------------------------------------------------------------------------------------------
# Validator


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class IpnsValidator:
    """The ``/ipns/`` validator of the Amino DHT (boxo ``ipns.Validator`` without a key book).

    ``clock`` supplies "now" for the expiry check; tests pass a fixed one, or
    give ``now`` to :meth:`validate` directly.
    """

    __slots__ = ("_clock",)

    def __init__(self, clock: Callable[[], datetime.datetime] = _utcnow) -> None:
        self._clock = clock

    def validate(
        self, key: bytes, value: bytes, now: datetime.datetime | None = None
    ) -> None:
        """Raise :class:`InvalidRecordError` unless ``value`` is a live record for ``key``."""
        verify_ipns_record(name_from_key(key), value, self._clock() if now is None else now)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """Index of the best record (boxo ``selectRecord``); unparseable values rank last."""
        if not values:
            raise InvalidRecordError("no values to select from")
        parsed: list[IpnsRecord | None] = []
        for raw in values:
            try:
                parsed.append(parse_ipns_record(raw))
            except InvalidRecordError:
                parsed.append(None)
        best = 0
        for j in range(1, len(values)):
            order = _compare(parsed[best], parsed[j])
            if order == 0:
                order = (values[best] > values[j]) - (values[best] < values[j])
            if order < 0:
                best = j
        return best


def _compare(a: IpnsRecord | None, b: IpnsRecord | None) -> int:
    """boxo ``compare``: -1 if ``a`` is older than ``b``, 1 if newer, 0 if unordered."""
    if a is None or b is None:
        return (a is not None) - (b is not None)
    if a.has_v2 != b.has_v2:
        return 1 if a.has_v2 else -1
    if a.sequence != b.sequence:
        return 1 if a.sequence > b.sequence else -1
    if a.validity_ns != b.validity_ns:
        return 1 if a.validity_ns > b.validity_ns else -1
    return 0


# --------------------------------------------------------------------------------------------
# Creation


def make_ipns_record(
    private_key: PrivateKey,
    value: bytes,
    sequence: int,
    validity: datetime.datetime,
    ttl_ns: int = DEFAULT_TTL_NS,
    *,
    v1_compatible: bool = True,
    embed_public_key: bool | None = None,
) -> bytes:
    """A signed IpnsEntry as Kubo/boxo ``NewRecord`` emits it (V1+V2 by default).

    ``value`` is the content path (``b"/ipfs/<cid>"``); ``validity`` the EOL.
    The public key is embedded only when the name cannot inline it, unless
    ``embed_public_key`` says otherwise.
    """
    if not 0 <= sequence <= _MAX_UINT64:
        raise ValueError("sequence must fit in a uint64")
    ttl_ns = max(0, ttl_ns)
    validity_text = format_rfc3339_ns(validity)
    data = cbor2.dumps(
        {
            "TTL": ttl_ns,
            "Value": bytes(value),
            "Sequence": sequence,
            "Validity": validity_text,
            "ValidityType": 0,
        },
        canonical=True,
    )
    entry = ipns_pb2.IpnsEntry(
        data=data, signatureV2=private_key.sign(SIGNATURE_V2_PREFIX + data)
    )
    if v1_compatible:
        entry.value = bytes(value)
        entry.validityType = ipns_pb2.IpnsEntry.EOL
        entry.validity = validity_text
        entry.sequence = sequence
        entry.ttl = ttl_ns
        # V1 signs value ‖ validity ‖ the enum's *name*: go fmt.Append uses its String().
        entry.signatureV1 = private_key.sign(bytes(value) + validity_text + b"EOL")
    public = private_key.public_key
    if embed_public_key is None:
        embed_public_key = PeerID.from_public_key(public).extract_public_key() is None
    if embed_public_key:
        entry.pubKey = public.to_protobuf()
    out = entry.SerializeToString()
    if len(out) > MAX_RECORD_SIZE:
        raise ValueError(f"IPNS record of {len(out)} bytes exceeds {MAX_RECORD_SIZE}")
    return out
