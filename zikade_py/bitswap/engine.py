"""The serving side: each peer's want list and what to answer (pure, no I/O).

The engine keeps every peer's want list (at most ``max_entries`` entries a peer;
a full list replaces the old one, cancels remove entries) and decides answers
from what the blockstore holds (``size_of``, which never waits):

* want-block and we have it: the block (the entry is removed once planned);
* want-have and we have it: HAVE (entry removed);
* we lack it: DONT_HAVE if the peer asked for one, and the entry stays, so the
  block goes out if it arrives later (:meth:`block_added` re-checks).

Work is planned per peer, round-robin, at most ``max_bytes_per_task`` of blocks
per task, so one peer's big want list does not starve the others. The
:class:`Ledger` counts bytes and blocks sent and received per peer, and orders
each round: peers are served by their debt ratio (bytes we sent them over bytes
they sent us, the old boxo ledger's score), lowest first, so a peer that gives
as much as it takes is served before one that only takes; new peers (ratio 0)
come first. The exchange limits what stays queued per peer (``skip``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from zikade_py.bitswap.wire import MAX_WANTLIST_ENTRIES, Message, WantEntry, WantType
from zikade_py.blocks.cid import multihash_of
from zikade_py.p2p.peer_id import PeerID


@dataclass(slots=True)
class LedgerEntry:
    """What went between us and one peer."""

    bytes_sent: int = 0
    bytes_received: int = 0
    blocks_sent: int = 0
    blocks_received: int = 0


@dataclass(slots=True)
class Ledger:
    """Per-peer traffic, plus totals kept after peers leave (``bitswap stat``)."""

    peers: dict[PeerID, LedgerEntry] = field(default_factory=dict)
    total: LedgerEntry = field(default_factory=LedgerEntry)
    duplicate_blocks: int = 0
    unwanted_blocks: int = 0
    invalid_messages: int = 0
    haves_sent: int = 0
    dont_haves_sent: int = 0
    haves_received: int = 0
    dont_haves_received: int = 0

    def sent(self, peer: PeerID, blocks: int, nbytes: int) -> None:
        """Record blocks sent to ``peer``."""
        for e in (self.peers.setdefault(peer, LedgerEntry()), self.total):
            e.blocks_sent += blocks
            e.bytes_sent += nbytes

    def received(self, peer: PeerID, blocks: int, nbytes: int) -> None:
        """Record blocks received from ``peer``."""
        for e in (self.peers.setdefault(peer, LedgerEntry()), self.total):
            e.blocks_received += blocks
            e.bytes_received += nbytes

    def debt_ratio(self, peer: PeerID) -> float:
        """Bytes sent to ``peer`` over bytes received from it (+1): the serving order."""
        e = self.peers.get(peer)
        return 0.0 if e is None else e.bytes_sent / (e.bytes_received + 1)

    def forget(self, peer: PeerID) -> None:
        """Drop the peer's entry (the totals stay)."""
        self.peers.pop(peer, None)


@dataclass(frozen=True, slots=True)
class Task:
    """Answer ``peer``: send these blocks (read them from the store), HAVEs and DONT_HAVEs."""

    peer: PeerID
    blocks: tuple[bytes, ...]
    haves: tuple[bytes, ...]
    dont_haves: tuple[bytes, ...]


class Engine:
    """See the module docstring."""

    def __init__(
        self,
        size_of: Callable[[bytes], int | None],
        *,
        max_entries: int = MAX_WANTLIST_ENTRIES,
        max_bytes_per_task: int = 1024 * 1024,
    ) -> None:
        self._size_of = size_of
        self.max_entries = max_entries
        self.max_bytes_per_task = max_bytes_per_task
        self._wants: dict[PeerID, dict[bytes, WantEntry]] = {}
        self._dirty: dict[PeerID, dict[bytes, None]] = {}
        self._by_mh: dict[bytes, set[PeerID]] = {}
        self._answered_dont_have: set[tuple[PeerID, bytes]] = set()
        self.ledger = Ledger()

    # -- inputs -----------------------------------------------------------------------------

    def receive(self, peer: PeerID, msg: Message) -> int:
        """Apply ``msg``'s want list; returns entries refused for being over the limit."""
        wants = self._wants.setdefault(peer, {})
        if msg.full:
            for cid in list(wants):
                self._drop(peer, cid)
        refused = 0
        for entry in msg.wants:
            if entry.cancel:
                self._drop(peer, entry.cid)
                continue
            if entry.cid not in wants and len(wants) >= self.max_entries:
                refused += 1
                continue
            wants[entry.cid] = entry
            self._by_mh.setdefault(multihash_of(entry.cid), set()).add(peer)
            self._dirty.setdefault(peer, {})[entry.cid] = None
        if not wants:
            self._wants.pop(peer, None)
        return refused

    def block_added(self, cid: bytes) -> None:
        """A block arrived in the store: peers waiting for it get it (or a HAVE)."""
        for peer in self._by_mh.get(multihash_of(cid), ()):
            for wanted in self._wants.get(peer, {}):
                if multihash_of(wanted) == multihash_of(cid):
                    self._dirty.setdefault(peer, {})[wanted] = None

    def peer_gone(self, peer: PeerID) -> None:
        """Forget the peer's want list and ledger (its connection closed)."""
        for cid in list(self._wants.get(peer, {})):
            self._drop(peer, cid)
        self._wants.pop(peer, None)
        self._dirty.pop(peer, None)
        self.ledger.forget(peer)

    def _drop(self, peer: PeerID, cid: bytes) -> None:
        wants = self._wants.get(peer)
        if wants is not None and wants.pop(cid, None) is not None:
            mh = multihash_of(cid)
            peers = self._by_mh.get(mh)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._by_mh[mh]
        self._answered_dont_have.discard((peer, cid))
        dirty = self._dirty.get(peer)
        if dirty is not None:
            dirty.pop(cid, None)

    # -- output -----------------------------------------------------------------------------

    def poll(self, skip: Collection[PeerID] = ()) -> list[Task]:
        """One task per peer with something to answer, each under the byte budget;
        call again while it returns tasks. Peers in ``skip`` (still sending) wait."""
        tasks = []
        for peer in sorted(self._dirty, key=self.ledger.debt_ratio):  # stable: ties keep order
            if peer in skip:
                continue
            dirty = self._dirty[peer]
            wants = self._wants.get(peer, {})
            blocks: list[bytes] = []
            haves: list[bytes] = []
            dont: list[bytes] = []
            budget = self.max_bytes_per_task
            for cid in list(dirty):
                entry = wants.get(cid)
                if entry is None:
                    del dirty[cid]
                    continue
                size = self._size_of(cid)
                if size is None:
                    del dirty[cid]
                    if entry.send_dont_have and (peer, cid) not in self._answered_dont_have:
                        self._answered_dont_have.add((peer, cid))
                        dont.append(cid)
                    continue
                if entry.want_type is WantType.BLOCK:
                    if blocks and size > budget:
                        break  # the rest waits for the next task
                    budget -= size
                    blocks.append(cid)
                else:
                    haves.append(cid)
                del dirty[cid]
                self._drop(peer, cid)
            if not dirty:
                self._dirty.pop(peer, None)
            if blocks or haves or dont:
                tasks.append(Task(peer, tuple(blocks), tuple(haves), tuple(dont)))
        return tasks

    # -- views ------------------------------------------------------------------------------

    def wantlist(self, peer: PeerID) -> dict[bytes, WantEntry]:
        """What ``peer`` wants from us now."""
        return dict(self._wants.get(peer, {}))

    @property
    def peers(self) -> set[PeerID]:
        """Peers with a want list here."""
        return set(self._wants)

    @property
    def pending(self) -> bool:
        """Whether :meth:`poll` has work."""
        return bool(self._dirty)

    def pending_except(self, skip: Collection[PeerID]) -> bool:
        """Whether :meth:`poll` has work for a peer not in ``skip``."""
        return any(peer not in skip for peer in self._dirty)


__all__ = ["Engine", "Ledger", "LedgerEntry", "Task"]
