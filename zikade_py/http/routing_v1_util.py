"""The pure parts of the Delegated Routing V1 server: ids, content negotiation, filters.

Kept apart from the aiohttp handlers in :mod:`.routing_v1` so each rule of the spec
(HTTP-ROUTING-V1.md) can be read and tested on its own: which path strings are
valid ids, when a client asked for NDJSON, and the IPIP-484 ``filter-addrs`` /
``filter-protocols`` semantics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from multiformats import CID

from zikade_py.dht.messages import PeerInfo
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.peer_id import LIBP2P_KEY_CODEC, InvalidPeerIDError, PeerID

__all__ = [
    "MEDIA_IPNS_RECORD",
    "MEDIA_JSON",
    "MEDIA_NDJSON",
    "BadIdError",
    "FilterError",
    "RecordFilter",
    "accepts_exactly",
    "parse_cid",
    "parse_key",
    "parse_peer_id",
    "peer_record",
    "sort_by_distance",
    "wants_ndjson",
]

MEDIA_JSON: Final = "application/json"
"""The default response type of the JSON endpoints."""

MEDIA_NDJSON: Final = "application/x-ndjson"
"""The streaming response type, only when the client asks for it."""

MEDIA_IPNS_RECORD: Final = "application/vnd.ipfs.ipns-record"
"""The verifiable IPNS record type (GET response, PUT request body)."""

MAX_ID_LENGTH: Final = 512
"""Longer path ids are refused before decoding (bounds the decoder's work)."""

MAX_PROTOCOL_NAME: Final = 63
"""Transfer protocol names in ``filter-protocols`` are at most 63 characters (IPIP-484)."""

MAX_FILTER_TERMS: Final = 64
"""More comma-separated terms than this in one filter are refused."""

UNKNOWN: Final = "unknown"
"""The filter term that keeps records whose addresses / protocols are unknown."""


class BadIdError(ValueError):
    """A CID, peer id or IPNS name in the path that cannot be decoded (HTTP 400)."""


class FilterError(ValueError):
    """A ``filter-addrs`` / ``filter-protocols`` value outside the spec's rules (HTTP 422)."""


# ---------------------------------------------------------------------------------------------
# Ids


def parse_cid(text: str) -> CID:
    """Decode a CID (v0 or v1, any multibase); :class:`BadIdError` otherwise."""
    if not text or len(text) > MAX_ID_LENGTH:
        raise BadIdError("not a CID")
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadIdError(f"invalid CID {text[:80]!r}: {exc}") from None
    if not cid.digest:
        raise BadIdError("CID without a multihash")
    return cid


def parse_peer_id(text: str) -> PeerID:
    """A peer id as base58btc multihash or CIDv1 ``libp2p-key``; :class:`BadIdError` otherwise."""
    if not text or len(text) > MAX_ID_LENGTH:
        raise BadIdError("not a peer id")
    try:
        return PeerID.from_string(text)
    except InvalidPeerIDError as exc:
        raise BadIdError(f"invalid peer id {text[:80]!r}: {exc}") from None


def parse_key(text: str) -> bytes:
    """The multihash named by a closest-peers ``{key}``: a peer id, or any CID's multihash.

    A ``libp2p-key`` CID and a base58 peer id give the peer's multihash; another CID
    (e.g. a multihash wrapped in a ``raw`` CIDv1) gives its own multihash.
    """
    try:
        return parse_peer_id(text).multihash
    except BadIdError:
        pass
    cid = parse_cid(text)
    mh = bytes(cid.digest)
    if cid.codec.code == LIBP2P_KEY_CODEC:
        try:
            PeerID.from_bytes(mh)
        except InvalidPeerIDError as exc:
            raise BadIdError(f"libp2p-key CID does not hold a peer id: {exc}") from None
    return mh


# ---------------------------------------------------------------------------------------------
# Content negotiation


def _media_ranges(header: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        out.append((media, q))
    return out


def _quality(ranges: Sequence[tuple[str, float]], media: str, *, wildcards: bool) -> float:
    """The q a client gives ``media``: the most specific matching range wins."""
    kind = media.split("/", 1)[0]
    best: tuple[int, float] | None = None
    for rng, q in ranges:
        if rng == media:
            specificity = 2
        elif wildcards and rng == f"{kind}/*":
            specificity = 1
        elif wildcards and rng == "*/*":
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return 0.0 if best is None else best[1]


def wants_ndjson(accept: str | None) -> bool:
    """Whether to stream: the client named ``application/x-ndjson`` explicitly (no
    wildcard counts, the spec says the server MUST NOT stream otherwise) with a q
    not below what it gives ``application/json``."""
    if not accept:
        return False
    ranges = _media_ranges(accept)
    nd = _quality(ranges, MEDIA_NDJSON, wildcards=False)
    return nd > 0 and nd >= _quality(ranges, MEDIA_JSON, wildcards=True)


def accepts_exactly(accept: str | None, media: str) -> bool:
    """Whether ``Accept`` names ``media`` itself with q > 0 (IPNS: 406 otherwise)."""
    return bool(accept) and _quality(_media_ranges(accept or ""), media, wildcards=False) > 0


# ---------------------------------------------------------------------------------------------
# Records and IPIP-484 filters


def peer_record(info: PeerInfo, protocols: Iterable[str] = ()) -> dict[str, Any]:
    """The ``peer`` schema record of ``info``: ID as base58btc (what every client parses)."""
    record: dict[str, Any] = {
        "Schema": "peer",
        "ID": info.peer_id.to_base58(),
        "Addrs": [str(addr) for addr in info.addrs],
    }
    protocols = list(protocols)
    if protocols:
        record["Protocols"] = protocols
    return record


def _protocol_names(addr: str) -> set[str]:
    try:
        return {name.lower() for name in Multiaddr.parse(addr).protocols()}
    except (InvalidMultiaddrError, ValueError):
        # a protocol we cannot parse: every segment, values included, is a candidate name
        return {part.lower() for part in addr.split("/") if part}


def _terms(value: str | None, *, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    terms = tuple(t.strip().lower() for t in value.split(",") if t.strip())
    if len(terms) > MAX_FILTER_TERMS:
        raise FilterError(f"{name}: more than {MAX_FILTER_TERMS} terms")
    return terms


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The ``filter-addrs`` and ``filter-protocols`` of one request (IPIP-484).

    Addresses: a term ``x`` keeps addresses that use protocol ``x``; ``!x`` drops
    those that do; an address must pass every negative term and, if there are
    positive terms, at least one of them. A record left without addresses is
    omitted, unless it had none to begin with and ``unknown`` was given. Protocols:
    a record passes if one of its protocols is named (``unknown`` matches a record
    without protocols) and is returned unchanged.
    """

    addr_terms: tuple[str, ...] = ()
    protocol_terms: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, filter_addrs: str | None, filter_protocols: str | None) -> RecordFilter:
        """Parse the two query parameters; :class:`FilterError` for names the spec forbids."""
        addrs = _terms(filter_addrs, name="filter-addrs")
        for term in addrs:
            bare = term.removeprefix("!")
            if not bare or not bare.replace("-", "").replace("_", "").isalnum():
                raise FilterError(f"filter-addrs: {term[:80]!r} is not a protocol name")
        protocols = _terms(filter_protocols, name="filter-protocols")
        for term in protocols:
            if len(term) > MAX_PROTOCOL_NAME:
                raise FilterError(f"filter-protocols: names are at most {MAX_PROTOCOL_NAME} chars")
        return cls(addrs, protocols)

    def _addr_passes(self, addr: str) -> bool:
        names = _protocol_names(addr)
        positive = [t for t in self.addr_terms if not t.startswith("!") and t != UNKNOWN]
        negative = [t[1:] for t in self.addr_terms if t.startswith("!")]
        if any(n in names for n in negative):
            return False
        return not positive or any(p in names for p in positive)

    def apply(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """``record`` filtered (a copy when addresses were dropped), or None to omit it."""
        if self.protocol_terms:
            protocols = [str(p).lower() for p in record.get("Protocols") or ()]
            if not protocols:
                if UNKNOWN not in self.protocol_terms:
                    return None
            elif not any(p in self.protocol_terms for p in protocols):
                return None
        if self.addr_terms:
            addrs = list(record.get("Addrs") or ())
            if not addrs:
                return record if UNKNOWN in self.addr_terms else None
            kept = [a for a in addrs if self._addr_passes(str(a))]
            if not kept:
                return None
            if len(kept) != len(addrs):
                record = {**record, "Addrs": kept}
        return record


def sort_by_distance(key: bytes, peers: Iterable[PeerInfo]) -> list[PeerInfo]:
    """``peers`` by XOR distance between SHA-256 Kademlia ids, closest first (Amino)."""
    target = int.from_bytes(hashlib.sha256(key).digest())

    def distance(info: PeerInfo) -> int:
        return int.from_bytes(hashlib.sha256(info.peer_id.multihash).digest()) ^ target

    return sorted(peers, key=distance)
