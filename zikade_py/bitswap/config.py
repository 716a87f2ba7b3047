"""The exchange's configuration, its counters, and how it learns of providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from zikade_py.bitswap.session_logic import SessionConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

ProviderFinder = Callable[[bytes], AsyncIterator[tuple[PeerID, Sequence[Multiaddr]]]]
"""Providers of a CID (binary) as (peer, addresses): the node's DHT ``find_providers``."""


@dataclass(frozen=True, slots=True)
class BitswapConfig:
    """Limits and timing of the exchange."""

    session: SessionConfig = field(default_factory=SessionConfig)
    """Timing of every session."""
    send_timeout: float = 10.0
    """Opening a stream and writing one message to a peer."""
    max_providers: int = 10
    """Providers one search adds to a session."""
    provider_timeout: float = 30.0
    """How long one provider search may run."""
    max_queued_bytes: int = 8 * 1024 * 1024
    """Blocks queued for one peer before the engine serves others first (a slow reader
    must not make us read its whole want list into memory)."""
    max_wants_per_call: int = 32
    """Blocks one ``get_blocks`` call has wanted and not yet handed to its reader; the
    next is wanted as the reader takes one (bounds memory: 32 × 256 KiB = 8 MiB)."""


@dataclass(frozen=True, slots=True)
class BitswapStat:
    """``zikade bitswap stat``: wants, peers, blocks and bytes."""

    wants: int
    peers: int
    sessions: int
    blocks_received: int
    bytes_received: int
    blocks_sent: int
    bytes_sent: int
    duplicate_blocks: int
    unwanted_blocks: int
    invalid_messages: int
    haves_sent: int
    dont_haves_sent: int
    haves_received: int
    dont_haves_received: int


__all__ = ["BitswapConfig", "BitswapStat", "ProviderFinder"]
