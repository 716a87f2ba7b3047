"""Our outgoing want lists, per peer, reference-counted per session (pure, no I/O).

A CID stays wanted from a peer while any session wants it from that peer; the
CANCEL goes out when the last one lets go. Sessions are fire-and-forget: they
call :meth:`WantManager.want` / :meth:`broadcast` / :meth:`cancel`, and the
driver drains what must be sent with :meth:`poll` (one incremental want-list
message per peer). A peer that connects gets the broadcast wants as a *full*
want list; a peer that leaves is forgotten. Want types only ever go up: a
want-block from one session upgrades another session's want-have, never the
other way round.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from zikade_py.bitswap.wire import Message, WantEntry, WantType
from zikade_py.p2p.peer_id import PeerID

SessionId = int
"""Sessions are named by a small integer (0 is never used)."""


@dataclass(slots=True)
class _Want:
    sessions: dict[SessionId, WantType]
    priority: int

    @property
    def want_type(self) -> WantType:
        return (
            WantType.BLOCK
            if any(t is WantType.BLOCK for t in self.sessions.values())
            else WantType.HAVE
        )


class WantManager:
    """See the module docstring."""

    __slots__ = ("_broadcast", "_connected", "_full", "_pending", "_priority", "_wants")

    def __init__(self) -> None:
        self._wants: dict[PeerID, dict[bytes, _Want]] = {}
        self._broadcast: dict[bytes, set[SessionId]] = {}
        self._connected: set[PeerID] = set()
        self._pending: dict[PeerID, dict[bytes, WantEntry]] = {}
        self._full: set[PeerID] = set()
        self._priority = itertools.count(2**31 - 1, -1)

    # -- peers ------------------------------------------------------------------------------

    def connected(self, peer: PeerID) -> None:
        """A bitswap peer is available: it gets the broadcast wants (as a full list)."""
        if peer in self._connected:
            return
        self._connected.add(peer)
        if self._broadcast:
            for cid, sessions in self._broadcast.items():
                self._add(peer, cid, dict.fromkeys(sessions, WantType.HAVE))
            self._full.add(peer)

    def disconnected(self, peer: PeerID) -> None:
        """Forget everything wanted from ``peer`` (nothing is sent to it any more)."""
        self._connected.discard(peer)
        self._wants.pop(peer, None)
        self._pending.pop(peer, None)
        self._full.discard(peer)

    @property
    def peers(self) -> set[PeerID]:
        """Connected bitswap peers."""
        return set(self._connected)

    # -- wants ------------------------------------------------------------------------------

    def want(
        self, session: SessionId, peer: PeerID, cids: Iterable[bytes], want_type: WantType
    ) -> None:
        """``session`` wants ``cids`` from ``peer``."""
        for cid in cids:
            self._add(peer, cid, {session: want_type})

    def broadcast(self, session: SessionId, cids: Iterable[bytes]) -> None:
        """Ask every connected peer whether it has ``cids`` (want-have)."""
        for cid in cids:
            self._broadcast.setdefault(cid, set()).add(session)
            for peer in self._connected:
                self._add(peer, cid, {session: WantType.HAVE})

    def cancel(self, session: SessionId, cids: Iterable[bytes]) -> None:
        """``session`` no longer wants ``cids``: CANCEL where no other session wants them."""
        for cid in cids:
            subs = self._broadcast.get(cid)
            if subs is not None:
                subs.discard(session)
                if not subs:
                    del self._broadcast[cid]
            for peer, wants in list(self._wants.items()):
                want = wants.get(cid)
                if want is None or session not in want.sessions:
                    continue
                before = want.want_type
                del want.sessions[session]
                if not want.sessions:
                    del wants[cid]
                    if not wants:
                        del self._wants[peer]
                    self._queue(peer, WantEntry(cid, before, cancel=True))
                elif want.want_type is not before:
                    # cannot downgrade on the wire: the peer keeps the want-block
                    pass

    def _add(self, peer: PeerID, cid: bytes, sessions: dict[SessionId, WantType]) -> None:
        wants = self._wants.setdefault(peer, {})
        want = wants.get(cid)
        if want is None:
            want = wants[cid] = _Want({}, next(self._priority))
            before: WantType | None = None
        else:
            before = want.want_type
        for sid, wt in sessions.items():
            if want.sessions.get(sid) is not WantType.BLOCK:
                want.sessions[sid] = wt
        if want.want_type is not before:
            self._queue(peer, WantEntry(cid, want.want_type, want.priority,
                                        send_dont_have=True))

    def _queue(self, peer: PeerID, entry: WantEntry) -> None:
        if peer in self._connected or entry.cancel:
            self._pending.setdefault(peer, {})[entry.cid] = entry

    # -- views and output -------------------------------------------------------------------

    def wanted_from(self, peer: PeerID) -> dict[bytes, WantType]:
        """What we want from ``peer`` now."""
        return {cid: w.want_type for cid, w in self._wants.get(peer, {}).items()}

    def peers_with_wants(self) -> set[PeerID]:
        """Peers holding some want of ours (their connections are held)."""
        return set(self._wants)

    def is_wanted(self, cid: bytes) -> bool:
        """Whether any session wants ``cid`` from anyone (else a received block is unsolicited)."""
        return cid in self._broadcast or any(cid in w for w in self._wants.values())

    def poll(self) -> list[tuple[PeerID, Message]]:
        """Messages to send now: one per peer with changes (full for newly connected peers)."""
        out: list[tuple[PeerID, Message]] = []
        for peer, entries in self._pending.items():
            if peer in self._full:
                full = tuple(
                    WantEntry(cid, w.want_type, w.priority, send_dont_have=True)
                    for cid, w in self._wants.get(peer, {}).items()
                )
                out.append((peer, Message(wants=full, full=True)))
            else:
                out.append((peer, Message(wants=tuple(entries.values()))))
        self._pending.clear()
        self._full.clear()
        return out

    @property
    def total_wants(self) -> int:
        """Distinct CIDs wanted, over all peers and broadcasts (``bitswap stat``)."""
        cids: set[bytes] = set(self._broadcast)
        for wants in self._wants.values():
            cids.update(wants)
        return len(cids)


__all__ = ["SessionId", "WantManager"]
