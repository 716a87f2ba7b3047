"""Multiaddrs: WIRE.md §2 vectors both ways, helpers, bad input, fuzz."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import (
    PROTOCOLS_BY_CODE,
    InvalidMultiaddrError,
    Multiaddr,
    decode_addrs,
)
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
PEER_HEX = "0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"

VECTORS = [
    ("/ip4/192.0.2.42/tcp/443", "04c000022a0601bb"),  # multiaddr test/multiaddr.feature
    (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", "047f000001060fa1a50326" + PEER_HEX),
    ("/ip6/::1/tcp/4001", "29" + "00" * 15 + "01" + "060fa1"),
    ("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb"),
    ("/dns/example.com/tcp/1", "350b6578616d706c652e636f6d060001"),
    ("/dns6/a.b/tcp/65535", "3603612e62".replace("36", "37", 1) + "06ffff"),
    ("/dnsaddr/bootstrap.libp2p.io", "3813626f6f7473747261702e6c69627032702e696f"),
    ("/ip4/1.2.3.4/udp/4001/quic-v1", "040102030491020fa1cd03"),
    ("/ip4/1.2.3.4/tcp/1/ws", "0401020304060001dd03"),
    (f"/p2p/{PEER}/p2p-circuit", "a50326" + PEER_HEX + "a202"),
]


@pytest.mark.parametrize(("text", "hexed"), VECTORS)
def test_vectors_text_to_bytes(text: str, hexed: str) -> None:
    assert Multiaddr.parse(text).to_bytes().hex() == hexed


@pytest.mark.parametrize(("text", "hexed"), VECTORS)
def test_vectors_bytes_to_text(text: str, hexed: str) -> None:
    addr = Multiaddr.from_bytes(bytes.fromhex(hexed))
    assert str(addr) == text
    assert addr == Multiaddr.parse(text)
    assert hash(addr) == hash(Multiaddr.parse(text))


def test_p2p_aliases_and_cid_form() -> None:
    cid = PeerID.from_string(PEER).to_cid_string()
    for text in (f"/ipfs/{PEER}", f"/p2p/{cid}", f"/p2p/{PEER}/"):
        addr = Multiaddr.parse(text)
        assert str(addr) == f"/p2p/{PEER}"


def test_certhash_roundtrip() -> None:
    text = (
        "/ip4/1.2.3.4/udp/4001/quic-v1/webtransport"
        "/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ"
    )
    addr = Multiaddr.parse(text)
    assert str(addr) == text
    assert Multiaddr.from_bytes(addr.to_bytes()) == addr
    assert addr.tcp_endpoint() is None


def test_peer_id_helpers() -> None:
    peer = PeerID.from_string(PEER)
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    base = Multiaddr.parse("/ip4/10.0.0.1/tcp/4001")
    full = base.with_peer_id(peer)
    assert str(full) == f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"
    assert full.peer_id() == peer
    assert base.peer_id() is None
    assert full.without_peer_id() == base
    assert base.without_peer_id() is base
    assert full.with_peer_id(other).peer_id() == other  # replaces, never stacks
    assert full.with_peer_id(other).without_peer_id() == base
    relayed = Multiaddr.parse(f"/ip4/1.1.1.1/tcp/1/p2p/{PEER}/p2p-circuit/p2p/{other}")
    assert relayed.peer_id() == other


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("/ip4/127.0.0.1/tcp/4001", ("127.0.0.1", 4001)),
        (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", ("127.0.0.1", 4001)),
        ("/ip6/::1/tcp/0", ("::1", 0)),
        ("/dns4/example.com/tcp/443", ("example.com", 443)),
        ("/dns6/example.com/tcp/443", ("example.com", 443)),
        ("/dns/example.com/tcp/443", ("example.com", 443)),
        ("/dnsaddr/bootstrap.libp2p.io", None),
        ("/ip4/127.0.0.1/udp/4001/quic-v1", None),
        ("/ip4/127.0.0.1/tcp/4001/ws", None),
        ("/ip4/127.0.0.1/tcp/4001/tls/ws", None),
        (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/p2p-circuit", None),
        ("/ip4/127.0.0.1", None),
        (f"/p2p/{PEER}", None),
    ],
)
def test_tcp_endpoint(text: str, endpoint: tuple[str, int] | None) -> None:
    assert Multiaddr.parse(text).tcp_endpoint() == endpoint


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("/ip4/127.0.0.1/tcp/1", True),
        ("/ip4/127.8.9.10/tcp/1", True),
        ("/ip6/::1/tcp/1", True),
        ("/ip6/::ffff:127.0.0.1/tcp/1", True),
        ("/dns4/localhost/tcp/1", True),
        ("/ip4/192.168.1.1/tcp/1", False),
        ("/ip4/0.0.0.0/tcp/1", False),
        ("/ip6/2001:db8::1/tcp/1", False),
        ("/dns4/example.com/tcp/1", False),
        (f"/p2p/{PEER}", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert Multiaddr.parse(text).is_loopback() is loopback


def test_unspecified_and_from_tcp() -> None:
    assert Multiaddr.parse("/ip4/0.0.0.0/tcp/1").is_unspecified()
    assert Multiaddr.parse("/ip6/::/tcp/1").is_unspecified()
    assert not Multiaddr.parse("/ip4/127.0.0.1/tcp/1").is_unspecified()
    assert str(Multiaddr.from_tcp("127.0.0.1", 4001)) == "/ip4/127.0.0.1/tcp/4001"
    assert str(Multiaddr.from_tcp("::1", 4001)) == "/ip6/::1/tcp/4001"
    assert str(Multiaddr.from_tcp("node.example", 1)) == "/dns/node.example/tcp/1"
    with pytest.raises(InvalidMultiaddrError):
        Multiaddr.from_tcp("127.0.0.1", 70000)


def test_immutable_and_equality() -> None:
    a = Multiaddr.parse("/ip4/1.2.3.4/tcp/5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.components = ()  # type: ignore[misc]
    assert a != Multiaddr.parse("/ip4/1.2.3.4/tcp/6")
    assert {a, Multiaddr.from_bytes(a.to_bytes())} == {a}
    assert a.protocols() == ("ip4", "tcp")
    assert str(a.encapsulate(Multiaddr.parse("/ws"))) == "/ip4/1.2.3.4/tcp/5/ws"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "ip4/1.2.3.4",
        "/ip4",
        "/ip4/1.2.3",
        "/ip4/01.2.3.4",
        "/ip4/1.2.3.4/tcp/65536",
        "/ip4/1.2.3.4/tcp/+1",
        "/ip4/1.2.3.4/tcp/ 1",
        "/ip4/1.2.3.4/tcp/١",  # non-ASCII digit
        "/ip6/fe80::1%eth0/tcp/1",
        "/ip6/1.2.3.4",
        "/dns4//tcp/1",
        "/foo/bar",
        "/p2p/notapeerid",
        "/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "/unix/tmp/socket",  # not supported: the whole address is invalid
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidMultiaddrError):
        Multiaddr.parse(text)


@pytest.mark.parametrize(
    "hexed",
    [
        "",
        "04c00002",  # truncated ip4
        "04c000022a06",  # truncated port
        "8004c000022a",  # non-minimal code varint
        "ffffffffffffffffffff",  # overlong varint
        "9003",  # unknown code 400 (unix)
        "3600",  # empty dns name
        "36032f612f",  # '/' inside a name
        "3602ff00",  # name not UTF-8
        "350b6578616d706c65",  # length beyond the data
        "a50303120102",  # /p2p/ with a bad multihash
        "a503211220" + "00" * 31,  # /p2p/ whose multihash length disagrees
    ],
)
def test_from_bytes_rejects(hexed: str) -> None:
    with pytest.raises(InvalidMultiaddrError):
        Multiaddr.from_bytes(bytes.fromhex(hexed))


def test_decode_addrs_drops_bad_ones_individually() -> None:
    good = [Multiaddr.parse(t) for t, _ in VECTORS[:3]]
    raw = [
        good[0].to_bytes(),
        b"\xff\xff",
        good[1].to_bytes(),
        b"",
        b"\x04\x01",
        good[2].to_bytes(),
    ]
    assert decode_addrs(raw) == good
    assert decode_addrs([]) == []


# --- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_from_bytes(data: bytes) -> None:
    try:
        addr = Multiaddr.from_bytes(data)
    except InvalidMultiaddrError:
        return
    assert addr.to_bytes() == data
    assert Multiaddr.parse(str(addr)) == addr


_component = st.one_of(
    st.sampled_from(sorted(PROTOCOLS_BY_CODE)).flatmap(
        lambda code: st.binary(max_size=40).map(
            lambda value: (
                encode_uvarint(code)
                + (encode_uvarint(len(value)) if PROTOCOLS_BY_CODE[code].size < 0 else b"")
                + value[
                    : PROTOCOLS_BY_CODE[code].size if PROTOCOLS_BY_CODE[code].size >= 0 else None
                ]
            )
        )
    ),
    st.binary(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_component, min_size=1, max_size=5).map(b"".join))
def test_fuzz_from_bytes_structured(data: bytes) -> None:
    # Known codes with random values reach the value checks, not just the varint ones.
    try:
        addr = Multiaddr.from_bytes(data)
    except InvalidMultiaddrError:
        return
    assert Multiaddr.parse(str(addr)).to_bytes() == addr.to_bytes()
    addr.tcp_endpoint()
    addr.is_loopback()
    addr.peer_id()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["ip4", "ip6", "tcp", "dns4", "p2p", "ipfs", "quic-v1", "certhash"]),
            st.text(max_size=12),
        ),
        max_size=6,
    ).map(lambda parts: "/" + "/".join(parts))
)
def test_fuzz_parse(text: str) -> None:
    try:
        addr = Multiaddr.parse(text)
    except InvalidMultiaddrError:
        return
    assert Multiaddr.from_bytes(addr.to_bytes()) == addr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=8))
def test_fuzz_decode_addrs(raw: list[bytes]) -> None:
    assert len(decode_addrs(raw)) <= len(raw)
