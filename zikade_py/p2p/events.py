"""Notifications the host publishes about its peers (through NonBlockingQueue subscriptions).

The DHT listens to these to learn which connected peers speak ``/ipfs/kad/1.0.0``
(WIRE.md §6: peers are judged by identify's protocol list, not by who opens a
kad stream), and to notice when a peer goes away.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID


class Direction(Enum):
    """Who opened a connection; it fixes the Noise, mss and yamux roles (WIRE.md §3.3)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A new connection to ``peer`` finished its upgrade (Noise + yamux)."""

    peer: PeerID
    addr: Multiaddr | None
    """The peer's address as the socket reports it (None if the socket did not say)."""
    direction: Direction


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """The last connection to ``peer`` closed."""

    peer: PeerID


@dataclass(frozen=True, slots=True)
class PeerIdentified:
    """Identify with ``peer`` completed: what it speaks, where it listens, what it runs."""

    peer: PeerID
    protocols: tuple[str, ...]
    listen_addrs: tuple[Multiaddr, ...]
    agent: str


@dataclass(frozen=True, slots=True)
class ProtocolsUpdated:
    """``peer`` pushed a new identify (``/ipfs/id/push/1.0.0``) with this protocol list."""

    peer: PeerID
    protocols: tuple[str, ...]


HostEvent = PeerConnected | PeerDisconnected | PeerIdentified | ProtocolsUpdated
"""Everything :meth:`Host.events` subscriptions receive."""
