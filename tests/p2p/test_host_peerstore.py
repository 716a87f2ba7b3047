"""The host's peerstore: address TTLs with explicit time, protocols, identify info."""

from __future__ import annotations

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import MAX_ADDRS_PER_PEER, PeerStore


def peer(seed: int) -> PeerID:
    return PeerID.from_public_key(PrivateKey.from_seed(bytes([seed]) * 32).public_key)


A = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
B = Multiaddr.parse("/ip6/::1/tcp/4001")


def test_addresses_expire_and_keep_the_later_expiry() -> None:
    ps = PeerStore(clock=lambda: 0.0)
    p = peer(1)
    ps.add_addrs(p, [A], ttl=10, now=0)
    ps.add_addrs(p, [B], ttl=100, now=0)
    ps.add_addrs(p, [A], ttl=5, now=0)  # a shorter ttl does not shorten
    assert ps.addrs(p, now=0) == [B, A]  # most durable first
    assert ps.addrs(p, now=10) == [B]
    assert ps.addrs(p, now=100) == []
    ps.set_addrs_ttl(p, 20, now=50)
    assert set(ps.addrs(p, now=69)) == {A, B}
    assert ps.addrs(p, now=70) == []


def test_p2p_suffixes_are_stripped_and_foreign_ones_ignored() -> None:
    ps = PeerStore()
    p, q = peer(1), peer(2)
    ps.add_addrs(p, [A.with_peer_id(p), B.with_peer_id(q)], ttl=60, now=0)
    assert ps.addrs(p, now=0) == [A]


def test_address_count_is_capped() -> None:
    ps = PeerStore()
    p = peer(1)
    addrs = [Multiaddr.parse(f"/ip4/10.0.{i // 256}.{i % 256}/tcp/1") for i in range(200)]
    ps.add_addrs(p, addrs, ttl=60, now=0)
    assert len(ps.addrs(p, now=0)) == MAX_ADDRS_PER_PEER


def test_protocols_and_identify_info() -> None:
    ps = PeerStore()
    p = peer(1)
    assert ps.protocols(p) == () and ps.agent(p) == "" and ps.public_key(p) is None
    ps.set_protocols(p, ["/a", "/b", "/a"])
    assert ps.protocols(p) == ("/a", "/b")
    assert ps.supports(p, "/b") and not ps.supports(p, "/c")
    assert ps.first_supported(p, ["/c", "/b", "/a"]) == "/b"
    key = PrivateKey.from_seed(bytes([1]) * 32).public_key
    ps.set_identify_info(p, agent="go-libp2p", protocol_version="ipfs/0.1.0", public_key=key)
    assert ps.agent(p) == "go-libp2p" and ps.protocol_version(p) == "ipfs/0.1.0"
    assert ps.public_key(p) == key


def test_prune_forgets_peers_without_live_addresses_unless_kept() -> None:
    ps = PeerStore()
    p, q, r = peer(1), peer(2), peer(3)
    for x in (p, q, r):
        ps.add_addrs(x, [A], ttl=10, now=0)
    ps.add_addrs(r, [B], ttl=100, now=0)
    assert ps.prune(now=50, keep=[q]) == 1
    assert p not in ps and q in ps and r in ps
    assert ps.addrs(r, now=50) == [B]
    assert len(ps) == 2
