"""Address hygiene on the p2p side: scopes and their loopback stand-ins, go's observed-address
rule, what is announced to whom, and /p2p normalization."""

from __future__ import annotations

from contextlib import AsyncExitStack

from zikade_py.p2p.addrscope import AddressPolicy, Scope, normalize_addrs
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.identify import filter_listen_addrs
from zikade_py.p2p.localaddrs import LocalAddrs, dial_source
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.observed import ObservedAddrs, observer_group
from zikade_py.p2p.peer_id import PeerID

from .test_autonat import PUBLIC_LOOPBACK, start_host, wait_for

M = Multiaddr.parse
STAND_INS = AddressPolicy(public_nets=("127.0.1.0/24",), private_nets=("127.0.2.0/24",))


def test_default_policy_never_makes_loopback_public() -> None:
    p = AddressPolicy()
    assert p.scope(M("/ip4/127.0.1.5/tcp/1")) is Scope.LOOPBACK
    assert p.scope(M("/ip4/192.168.1.5/tcp/1")) is Scope.PRIVATE
    assert p.scope(M("/ip4/10.0.0.1/tcp/1")) is Scope.PRIVATE
    assert p.scope(M("/ip4/100.64.0.1/tcp/1")) is Scope.PRIVATE
    assert p.scope(M("/ip6/fe80::1/tcp/1")) is Scope.PRIVATE
    assert p.scope(M("/ip4/8.8.8.8/tcp/1")) is Scope.PUBLIC
    assert p.scope(M("/dns4/example.com/tcp/1")) is None


def test_stand_ins_are_explicit() -> None:
    assert STAND_INS.scope(M("/ip4/127.0.1.5/tcp/1")) is Scope.PUBLIC
    assert STAND_INS.scope(M("/ip4/127.0.2.5/tcp/1")) is Scope.PRIVATE
    assert STAND_INS.scope(M("/ip4/127.0.0.1/tcp/1")) is Scope.LOOPBACK
    whole = AddressPolicy(public_nets=("127.0.0.0/8",))
    assert whole.scope(M("/ip4/127.0.0.1/tcp/1")) is Scope.PUBLIC


def test_nothing_narrower_than_the_peer() -> None:
    addrs = [M("/ip4/127.0.0.1/tcp/1"), M("/ip4/127.0.2.1/tcp/1"), M("/ip4/127.0.1.1/tcp/1")]
    assert STAND_INS.keep(addrs, Scope.PUBLIC) == addrs[2:]
    assert STAND_INS.keep(addrs, Scope.PRIVATE) == addrs[1:]
    assert STAND_INS.keep(addrs, Scope.LOOPBACK) == addrs
    # identify's filter: from a public peer, only its public addresses are kept (go WAN)
    assert filter_listen_addrs(addrs, M("/ip4/127.0.1.9/tcp/5"), STAND_INS) == addrs[2:]
    assert filter_listen_addrs(addrs, M("/ip4/127.0.2.9/tcp/5"), STAND_INS) == addrs[1:]


def test_normalize_strips_own_suffix_drops_other_peers_and_duplicates() -> None:
    me = PeerID.from_public_key(PrivateKey.generate().public_key)
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    a = M("/ip4/127.0.0.1/tcp/4001")
    b = M("/ip4/127.0.0.1/tcp/4002")
    got = normalize_addrs([a.with_peer_id(me), a, b.with_peer_id(other), b], me)
    assert got == [a, b]


def test_observed_address_needs_four_distinct_observers() -> None:
    listen = M("/ip4/127.0.1.1/tcp/4001")
    seen = ObservedAddrs(lambda: [listen], STAND_INS)
    external = M("/ip4/127.0.1.200/tcp/4001")
    # the same observer on three connections still counts once
    for conn in range(3):
        assert seen.record(conn, listen, M("/ip4/127.0.1.50/tcp/999"), external)
    assert seen.addrs() == []
    for n, conn in enumerate(range(10, 13)):
        seen.record(conn, listen, M(f"/ip4/127.0.1.{60 + n}/tcp/999"), external)
    assert seen.addrs() == [external]
    seen.remove(10)  # a connection closes: its observation goes
    assert seen.addrs() == []
    assert seen.observers(external) == 3


def test_observations_that_do_not_count() -> None:
    listen = M("/ip4/127.0.1.1/tcp/4001")
    seen = ObservedAddrs(lambda: [listen], STAND_INS)
    remote = M("/ip4/127.0.1.50/tcp/999")
    # an outbound connection's ephemeral local port says nothing
    assert not seen.record(1, M("/ip4/127.0.1.1/tcp/40000"), remote, M("/ip4/127.0.1.9/tcp/5"))
    # a loopback observation: we know our loopback addresses
    assert not seen.record(2, listen, remote, M("/ip4/127.0.0.1/tcp/4001"))
    assert not seen.record(3, listen, remote, M("/ip6/::1/tcp/4001"))
    assert observer_group(M("/ip6/2001:db8:1:2ff:3::1/tcp/1")) == "2001:db8:1:200::"


def test_announce_by_scope_and_confirmation() -> None:
    listen = [M("/ip4/127.0.0.1/tcp/1"), M("/ip4/127.0.2.1/tcp/1"), M("/ip4/127.0.1.1/tcp/1")]
    local = LocalAddrs(lambda: listen, STAND_INS)
    public_peer = M("/ip4/127.0.1.9/tcp/5")
    assert local.announce(public_peer) == listen[2:]
    assert local.announce(M("/ip4/127.0.2.9/tcp/5")) == listen[1:]
    assert local.announce(M("/ip4/127.0.0.1/tcp/5")) == listen
    local.require_confirmation = True  # auto mode
    assert local.announce(public_peer) == []
    assert local.announce(M("/ip4/127.0.2.9/tcp/5")) == [listen[1]]
    assert local.public_candidates() == [listen[2]]
    assert local.confirm(listen[2]) and not local.confirm(listen[2])
    assert local.announce(public_peer) == listen[2:]
    local.unconfirm_all()
    assert local.announce(public_peer) == []


def test_dial_source_only_for_loopback_stand_ins() -> None:
    assert dial_source([M("/ip4/127.0.1.4/tcp/1")], "127.0.0.1") == ("127.0.1.4", 0)
    assert dial_source([M("/ip4/127.0.0.1/tcp/1")], "127.0.0.1") is None
    assert dial_source([M("/ip4/127.0.1.4/tcp/1"), M("/ip4/127.0.1.5/tcp/1")], "127.0.0.1") is None
    assert dial_source([M("/ip4/127.0.1.4/tcp/1")], "example.com") is None
    assert dial_source([], "127.0.0.1") is None


async def test_four_peers_observing_us_confirm_our_address() -> None:
    """Through real identify exchanges: our address counts as confirmed (announced to public
    peers in auto mode) once 4 peers on distinct IPs reported it, not after 3."""
    async with AsyncExitStack() as stack:
        host = await start_host(stack, policy=PUBLIC_LOOPBACK)
        local = host.identify.addresses
        local.require_confirmation = True
        me = host.listen_addrs[0]
        public_peer = M("/ip4/127.0.1.9/tcp/5")
        assert local.announce(public_peer) == []
        peers = [await start_host(stack, policy=PUBLIC_LOOPBACK) for _ in range(4)]
        for n, peer in enumerate(peers, start=1):
            await peer.connect(host.peer_id, host.listen_addrs)  # we identify it at once
            await wait_for(lambda n=n: local.observed.observers(me) == n)  # type: ignore[misc]
            if n < 4:
                assert local.announce(public_peer) == []
        assert local.observed.addrs() == [me]
        assert local.announce(public_peer) == [me]
        await peers[0].close()  # an observer leaves: below the threshold again
        await wait_for(lambda: local.announce(public_peer) == [])
