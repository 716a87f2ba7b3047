"""Where and when a session's wants go (pure and time-driven, like the core's machines).

A session starts knowing no peers. Wanted CIDs are broadcast as want-have to
every connected bitswap peer and, if no block came after
``provider_search_delay``, a provider search runs through the DHT. A peer that
answers HAVE (or sends a block, or is found as a provider) joins the session;
from then on each wanted CID goes as want-block to one session peer (one that
said HAVE first, else the least busy) and as want-have to the others, so that
a DONT_HAVE or a timeout can move the want on without another round trip.

Time: a want-block unanswered for ``want_timeout`` counts as a failure of that
peer for that CID (an unresponsive peer must not stall the session), and the
CID moves to another peer; wants with nobody to ask are broadcast again every
``rebroadcast_interval``. :meth:`next_due` is the one timer the driver arms.

Inputs: :meth:`want`, :meth:`cancel`, :meth:`on_block`, :meth:`on_have`,
:meth:`on_dont_have`, :meth:`add_peer`, :meth:`remove_peer` (all with ``now``).
Output: :meth:`poll` returns the actions to perform, in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import assert_never

from zikade_py.p2p.peer_id import PeerID


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timing of a session; defaults follow boxo's session (want timeout, search delay)."""

    want_timeout: float = 5.0
    """A want-block unanswered this long moves to another peer."""
    provider_search_delay: float = 1.0
    """Search the DHT for providers when no block came this long after a want."""
    rebroadcast_interval: float = 5.0
    """Broadcast want-haves again for wants nobody is working on."""
    want_have_peers: int = 8
    """Session peers that get a want-have beside the one asked for the block."""

    def validate(self) -> None:
        """Refuse non-positive timings."""
        if min(self.want_timeout, self.provider_search_delay, self.rebroadcast_interval) <= 0:
            raise ValueError("session timings must be positive")


@dataclass(frozen=True, slots=True)
class SendWantBlock:
    """Ask ``peer`` for the blocks."""

    peer: PeerID
    cids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SendWantHave:
    """Ask ``peer`` whether it has the blocks."""

    peer: PeerID
    cids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Ask every connected bitswap peer whether it has the blocks."""

    cids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CancelWants:
    """The session no longer wants these (received, or given up)."""

    cids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FindProviders:
    """Look up providers of ``cid`` in the DHT and add them to the session."""

    cid: bytes


SessionAction = SendWantBlock | SendWantHave | Broadcast | CancelWants | FindProviders
"""What :meth:`SessionLogic.poll` asks the driver to do."""


@dataclass(slots=True)
class _Wanted:
    since: float
    asked: PeerID | None = None
    asked_at: float = 0.0
    haves: set[PeerID] = field(default_factory=set)
    failed: set[PeerID] = field(default_factory=set)
    """Peers that said DONT_HAVE or timed out for this CID."""


class SessionLogic:
    """One session's want/peer decisions (see the module docstring)."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.config.validate()
        self._wanted: dict[bytes, _Wanted] = {}
        self._peers: dict[PeerID, int] = {}  # peer -> want-blocks in flight
        self._actions: list[SessionAction] = []
        self._next_broadcast: float | None = None
        self._next_search: float | None = None
        self._last_block: float | None = None

    # -- inputs -----------------------------------------------------------------------------

    def want(self, cids: Iterable[bytes], now: float) -> None:
        """A GetBlocks call wants ``cids`` (already wanted ones are ignored)."""
        new = [c for c in cids if c not in self._wanted]
        for cid in new:
            self._wanted[cid] = _Wanted(since=now)
        if not new:
            return
        if self._peers:
            self._assign(new, now)
            have_peers = list(self._peers)[: self.config.want_have_peers]
            for peer in have_peers:
                rest = tuple(c for c in new if self._wanted[c].asked != peer)
                if rest:
                    self._actions.append(SendWantHave(peer, rest))
        else:
            self._actions.append(Broadcast(tuple(new)))
            self._next_broadcast = now + self.config.rebroadcast_interval
        if self._next_search is None:
            self._next_search = now + self.config.provider_search_delay

    def cancel(self, cids: Iterable[bytes], now: float) -> None:
        """Nobody wants ``cids`` any more."""
        gone = []
        for cid in cids:
            w = self._wanted.pop(cid, None)
            if w is not None:
                gone.append(cid)
                self._release(w)
        if gone:
            self._actions.append(CancelWants(tuple(gone)))

    def on_block(self, peer: PeerID | None, cid: bytes, now: float) -> None:
        """A wanted block arrived (``peer=None``: from the local store or another session)."""
        self._last_block = now
        if peer is not None:
            self.add_peer(peer, now)
        if cid in self._wanted:
            self.cancel([cid], now)

    def on_have(self, peer: PeerID, cid: bytes, now: float) -> None:
        """``peer`` has ``cid``: it joins the session; ask it for the block if nobody is."""
        self.add_peer(peer, now)
        w = self._wanted.get(cid)
        if w is None:
            return
        w.haves.add(peer)
        if w.asked is None:
            self._ask(cid, w, peer, now)

    def on_dont_have(self, peer: PeerID, cid: bytes, now: float) -> None:
        """``peer`` lacks ``cid``: move the want on if it was asked for the block."""
        w = self._wanted.get(cid)
        if w is None:
            return
        w.failed.add(peer)
        w.haves.discard(peer)
        if w.asked == peer:
            self._release(w)
            self._assign([cid], now)

    def add_peer(self, peer: PeerID, now: float) -> None:
        """A peer joins the session (HAVE, block, or found as a provider)."""
        if peer in self._peers:
            return
        self._peers[peer] = 0
        idle = [c for c, w in self._wanted.items() if w.asked is None and peer not in w.failed]
        if idle:
            self._assign(idle, now)
            rest = tuple(c for c in idle if self._wanted[c].asked != peer)
            if rest:
                self._actions.append(SendWantHave(peer, rest))

    def remove_peer(self, peer: PeerID, now: float) -> None:
        """``peer`` went away: its in-flight wants move on."""
        if self._peers.pop(peer, None) is None:
            return
        moved = []
        for cid, w in self._wanted.items():
            w.haves.discard(peer)
            if w.asked == peer:
                w.asked = None
                moved.append(cid)
        if moved:
            self._assign(moved, now)

    def advance(self, now: float) -> None:
        """Apply timeouts and schedules that are due at ``now``."""
        for cid, w in list(self._wanted.items()):
            if w.asked is not None and now >= w.asked_at + self.config.want_timeout:
                w.failed.add(w.asked)
                self._release(w)
                self._assign([cid], now)
        idle = tuple(c for c, w in self._wanted.items() if w.asked is None)
        if idle and self._next_broadcast is not None and now >= self._next_broadcast:
            self._actions.append(Broadcast(idle))
            self._next_broadcast = now + self.config.rebroadcast_interval
        elif not idle:
            self._next_broadcast = None
        if self._wanted and self._next_search is not None and now >= self._next_search:
            oldest = min(self._wanted, key=lambda c: self._wanted[c].since)
            if self._last_block is None or now - self._last_block >= (
                self.config.provider_search_delay
            ):
                self._actions.append(FindProviders(oldest))
            self._next_search = now + self.config.rebroadcast_interval
        if not self._wanted:
            self._next_search = None

    # -- decisions --------------------------------------------------------------------------

    def _assign(self, cids: Iterable[bytes], now: float) -> None:
        by_peer: dict[PeerID, list[bytes]] = {}
        unassigned = False
        for cid in cids:
            w = self._wanted[cid]
            candidates = [p for p in w.haves if p in self._peers and p not in w.failed] or [
                p for p in self._peers if p not in w.failed
            ]
            if not candidates:
                unassigned = True
                continue
            peer = min(candidates, key=lambda p: self._peers[p])
            w.asked, w.asked_at = peer, now
            self._peers[peer] += 1
            by_peer.setdefault(peer, []).append(cid)
        for peer, group in by_peer.items():
            self._actions.append(SendWantBlock(peer, tuple(group)))
        if unassigned and self._next_broadcast is None:
            self._next_broadcast = now + self.config.rebroadcast_interval

    def _ask(self, cid: bytes, w: _Wanted, peer: PeerID, now: float) -> None:
        w.asked, w.asked_at = peer, now
        self._peers[peer] = self._peers.get(peer, 0) + 1
        self._actions.append(SendWantBlock(peer, (cid,)))

    def _release(self, w: _Wanted) -> None:
        if w.asked is not None and w.asked in self._peers:
            self._peers[w.asked] = max(self._peers[w.asked] - 1, 0)
        w.asked = None

    # -- outputs ----------------------------------------------------------------------------

    def poll(self) -> list[SessionAction]:
        """Actions decided since the last poll, in order."""
        out, self._actions = self._actions, []
        return out

    def next_due(self) -> float | None:
        """When :meth:`advance` must run next (``None``: only inputs matter)."""
        times = [w.asked_at + self.config.want_timeout
                 for w in self._wanted.values() if w.asked is not None]
        if self._wanted:
            if self._next_broadcast is not None:
                times.append(self._next_broadcast)
            if self._next_search is not None:
                times.append(self._next_search)
        return min(times) if times else None

    # -- views ------------------------------------------------------------------------------

    @property
    def wanted(self) -> set[bytes]:
        """CIDs still wanted."""
        return set(self._wanted)

    @property
    def peers(self) -> set[PeerID]:
        """Peers of the session."""
        return set(self._peers)

    def asked(self, cid: bytes) -> PeerID | None:
        """Who was asked for ``cid``'s block (tests)."""
        w = self._wanted.get(cid)
        return w.asked if w is not None else None


def describe(action: SessionAction) -> str:
    """A one-line description (debug logs)."""
    match action:
        case SendWantBlock(peer, cids):
            return f"want-block {len(cids)} -> {peer}"
        case SendWantHave(peer, cids):
            return f"want-have {len(cids)} -> {peer}"
        case Broadcast(cids):
            return f"broadcast want-have {len(cids)}"
        case CancelWants(cids):
            return f"cancel {len(cids)}"
        case FindProviders(cid):
            return f"find providers of {cid.hex()[:16]}"
        case _:
            assert_never(action)


__all__ = [
    "Broadcast",
    "CancelWants",
    "FindProviders",
    "SendWantBlock",
    "SendWantHave",
    "SessionAction",
    "SessionConfig",
    "SessionLogic",
    "describe",
]
