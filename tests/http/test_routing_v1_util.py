"""The pure rules of the Delegated Routing V1 server: ids, Accept negotiation, IPIP-484 filters."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID

from zikade_py.dht.messages import PeerInfo
from zikade_py.http.routing_v1_util import (
    MEDIA_IPNS_RECORD,
    BadIdError,
    FilterError,
    RecordFilter,
    accepts_exactly,
    parse_cid,
    parse_key,
    parse_peer_id,
    peer_record,
    sort_by_distance,
    wants_ndjson,
)
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def _peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


def test_parse_cid_accepts_v0_and_v1() -> None:
    assert parse_cid(CID_V1).version == 1
    assert parse_cid(CID_V0).version == 0


@pytest.mark.parametrize("text", ["", "xyz", "bafyfoo", "Qm123", "b" + "a" * 600, "!!!"])
def test_parse_cid_refuses_garbage(text: str) -> None:
    with pytest.raises(BadIdError):
        parse_cid(text)


def test_parse_peer_id_base58_and_cid_forms() -> None:
    pid = _peer()
    assert parse_peer_id(pid.to_base58()) == pid
    assert parse_peer_id(pid.to_cid_string("base32")) == pid
    assert parse_peer_id(pid.to_cid_string("base36")) == pid
    with pytest.raises(BadIdError):
        parse_peer_id(CID_V1)  # a dag-pb CID is not a peer id
    with pytest.raises(BadIdError):
        parse_peer_id("12D3KooWnotapeer")


def test_parse_key_peer_ids_and_cids_give_their_multihash() -> None:
    pid = _peer()
    assert parse_key(pid.to_base58()) == pid.multihash
    assert parse_key(pid.to_cid_string()) == pid.multihash
    assert parse_key(CID_V1) == bytes(CID.decode(CID_V1).digest)
    raw = CID("base32", 1, "raw", b"\x12\x20" + hashlib.sha256(b"x").digest())
    assert parse_key(str(raw)) == b"\x12\x20" + hashlib.sha256(b"x").digest()
    with pytest.raises(BadIdError):
        parse_key("not-a-key")


@given(st.text(max_size=80))
def test_parsers_raise_only_bad_id(text: str) -> None:
    for parse in (parse_cid, parse_peer_id, parse_key):
        with contextlib.suppress(BadIdError):
            parse(text)


@pytest.mark.parametrize(
    ("accept", "ndjson"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("application/*", False),
        ("application/x-ndjson", True),
        ("application/x-ndjson, application/json;q=0.8", True),  # the Helia client
        ("application/json, application/x-ndjson;q=0.5", False),
        ("application/x-ndjson;q=0", False),
        ("APPLICATION/X-NDJSON", True),
        ("text/html, */*;q=0.1, application/x-ndjson;q=0.2", True),
        ("application/x-ndjson;q=bogus, application/json", False),
    ],
)
def test_wants_ndjson(accept: str | None, ndjson: bool) -> None:
    assert wants_ndjson(accept) is ndjson


def test_accepts_exactly_needs_the_named_type() -> None:
    assert accepts_exactly(MEDIA_IPNS_RECORD, MEDIA_IPNS_RECORD)
    assert accepts_exactly(f"text/plain, {MEDIA_IPNS_RECORD};q=0.5", MEDIA_IPNS_RECORD)
    assert not accepts_exactly("*/*", MEDIA_IPNS_RECORD)
    assert not accepts_exactly(None, MEDIA_IPNS_RECORD)
    assert not accepts_exactly(f"{MEDIA_IPNS_RECORD};q=0", MEDIA_IPNS_RECORD)


def test_peer_record_schema() -> None:
    pid = _peer()
    info = PeerInfo(pid, (Multiaddr.parse("/ip4/127.0.0.1/tcp/4001"),))
    assert peer_record(info) == {
        "Schema": "peer",
        "ID": pid.to_base58(),
        "Addrs": ["/ip4/127.0.0.1/tcp/4001"],
    }
    assert peer_record(info, ["/ipfs/kad/1.0.0"])["Protocols"] == ["/ipfs/kad/1.0.0"]


def _rec(addrs: list[str], protocols: list[str] | None = None) -> dict[str, object]:
    rec: dict[str, object] = {"Schema": "peer", "ID": "x", "Addrs": addrs}
    if protocols is not None:
        rec["Protocols"] = protocols
    return rec


TCP4 = "/ip4/1.2.3.4/tcp/4001"
TCP6 = "/ip6/::1/tcp/4001"
QUIC = "/ip4/1.2.3.4/udp/4001/quic-v1"
WT = "/ip4/1.2.3.4/udp/4001/quic-v1/webtransport"


@pytest.mark.parametrize(
    ("filter_addrs", "addrs", "kept"),
    [
        (None, [TCP4, QUIC], [TCP4, QUIC]),
        ("tcp", [TCP4, QUIC], [TCP4]),
        ("TCP", [TCP4, QUIC], [TCP4]),
        ("!ip6", [TCP4, TCP6], [TCP4]),
        ("!ip6,!quic-v1", [TCP4, TCP6, QUIC], [TCP4]),
        ("webtransport,!ip6", [TCP4, WT], [WT]),
        ("quic-v1,!webtransport", [QUIC, WT, TCP4], [QUIC]),
        ("tcp%2Cquic-v1".replace("%2C", ","), [TCP4, QUIC, WT], [TCP4, QUIC, WT]),
        ("webrtc-direct", [TCP4], None),
        ("tcp", [], None),
        ("unknown", [], []),
        ("tcp,unknown", [], []),
        ("unknown,tcp", [TCP4, QUIC], [TCP4]),
    ],
)
def test_filter_addrs(filter_addrs: str | None, addrs: list[str], kept: list[str] | None) -> None:
    out = RecordFilter.from_query(filter_addrs, None).apply(_rec(addrs))
    if kept is None:
        assert out is None
    else:
        assert out is not None and out["Addrs"] == kept


@pytest.mark.parametrize(
    ("filter_protocols", "protocols", "passes"),
    [
        (None, None, True),
        ("transport-bitswap", None, False),
        ("unknown", None, True),
        ("unknown", [], True),
        ("transport-bitswap", ["transport-bitswap", "x"], True),
        ("TRANSPORT-BITSWAP", ["transport-bitswap"], True),
        ("transport-ipfs-gateway-http", ["transport-bitswap"], False),
        ("unknown,transport-bitswap", ["other"], False),
    ],
)
def test_filter_protocols(
    filter_protocols: str | None, protocols: list[str] | None, passes: bool
) -> None:
    rec = _rec([TCP4], protocols)
    out = RecordFilter.from_query(None, filter_protocols).apply(rec)
    assert (out is not None) is passes
    if out is not None:
        assert out == rec  # returned unchanged, all protocols kept


@pytest.mark.parametrize(
    ("filter_addrs", "filter_protocols"),
    [("tcp,ip4/x", None), ("!", None), (None, "p" * 64), (",".join(["tcp"] * 65), None)],
)
def test_bad_filters_are_422_material(
    filter_addrs: str | None, filter_protocols: str | None
) -> None:
    with pytest.raises(FilterError):
        RecordFilter.from_query(filter_addrs, filter_protocols)


def test_sort_by_distance_matches_xor_of_sha256() -> None:
    key = b"\x12\x20" + hashlib.sha256(b"target").digest()
    peers = [PeerInfo(_peer()) for _ in range(30)]
    ordered = sort_by_distance(key, peers)
    target = int.from_bytes(hashlib.sha256(key).digest())
    dists = [int.from_bytes(hashlib.sha256(p.peer_id.multihash).digest()) ^ target for p in ordered]
    assert dists == sorted(dists)
    assert {p.peer_id for p in ordered} == {p.peer_id for p in peers}
