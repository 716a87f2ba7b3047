"""Address hygiene of kad messages: what we take from a peer and what we give it.

go's WAN DHT keeps only public addresses (``dual``: ``AddressFilter(IsPublicAddr)``);
here the rule is the host's scope rule (:mod:`zikade_py.p2p.addrscope`): from a
peer that reached us on a public address we keep only public addresses, from a
LAN peer private and public ones, from a loopback peer anything; and a peer is
given only addresses that reach at least as far as itself. So a public peer can
neither plant a loopback or private address in our address book (we would dial
inside our own network) nor learn one from us.

Every peer entry is also normalized: ``/p2p/<its id>`` suffixes are stripped,
addresses naming another peer dropped, duplicates removed (py-libp2p sends
suffixed addresses; the same address then came back twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Final

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.pb import dht_pb2
from zikade_py.p2p.addrscope import AddressPolicy, Scope, normalize_addrs
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

REQUESTER_SCOPE: Final[ContextVar[Scope]] = ContextVar(
    "kad_requester_scope", default=Scope.LOOPBACK
)
"""The scope of the peer whose request is being handled (set per inbound kad stream; the
default, loopback, filters nothing: direct calls in tests and the fuzzer)."""


def clean_entries(
    entries: Iterable[dht_pb2.Message.Peer], scope: Scope, policy: AddressPolicy
) -> None:
    """Normalize the addresses of each entry and keep those usable from ``scope``, in place."""
    for entry in entries:
        try:
            owner: PeerID | None = PeerID.from_bytes(entry.id)
        except (InvalidPeerIDError, ValueError):
            owner = None  # the entry is skipped later anyway
        addrs = policy.keep(normalize_addrs(decode_addrs(list(entry.addrs)), owner), scope)
        del entry.addrs[:]
        entry.addrs.extend(a.to_bytes() for a in addrs)


def clean_response(
    msg: dht_pb2.Message, remote: Multiaddr | None, policy: AddressPolicy
) -> dht_pb2.Message:
    """``msg`` from a peer that reached us from ``remote``, its closer and provider entries
    cleaned (in place; returned for convenience)."""
    scope = policy.peer_scope(remote)
    if scope is Scope.LOOPBACK:
        return msg  # everything is usable; PeerInfo.from_pb normalizes each entry anyway
    clean_entries(msg.closerPeers, scope, policy)
    clean_entries(msg.providerPeers, scope, policy)
    return msg


def for_scope(info: PeerInfo, scope: Scope, policy: AddressPolicy) -> PeerInfo:
    """``info`` with only the addresses a peer of ``scope`` can use."""
    kept = policy.keep(normalize_addrs(info.addrs, info.peer_id), scope)
    return info if tuple(kept) == info.addrs else PeerInfo(info.peer_id, tuple(kept))


def for_destination(
    msg: dht_pb2.Message, remote: Multiaddr | None, policy: AddressPolicy
) -> dht_pb2.Message:
    """A copy of our ADD_PROVIDER for a peer reached at ``remote``: its provider entry keeps
    only the addresses that peer can use (a public peer gets no loopback or private ones)."""
    out = dht_pb2.Message()
    out.CopyFrom(msg)
    clean_entries(out.providerPeers, policy.peer_scope(remote), policy)
    return out
