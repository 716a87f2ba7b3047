"""The persistent peer address book in the SQLite datastore (:mod:`.sqlite`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from zikade_py.dht.stores.sqlite_threads import SharedDb, log_failure
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID


class SqlitePeerStore:
    """The persistent address book; see :class:`~.base.PeerStore`."""

    __slots__ = ("_db",)

    def __init__(self, db: SharedDb) -> None:
        self._db = db

    @staticmethod
    def _add_op(
        peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float
    ) -> Callable[[sqlite3.Connection], None] | None:
        rows = [(peer.multihash, a.to_bytes(), now + ttl) for a in addrs]
        if not rows:
            return None

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO peer_addrs (peer, addr, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (peer, addr) DO UPDATE SET"
                " expires = max(expires, excluded.expires)",
                rows,
            )

        return op

    def add_addrs(
        self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float
    ) -> None:
        """Extend each address's expiry to ``now + ttl``."""
        op = self._add_op(peer, addrs, ttl, now)
        if op is not None:
            self._db.writer.call(op)

    def save_later(self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float) -> None:
        """:meth:`add_addrs` queued on the writer; a failure is logged."""
        op = self._add_op(peer, addrs, ttl, now)
        if op is not None:
            self._db.writer.submit(op).add_done_callback(log_failure)

    def addrs(self, peer: PeerID, now: float) -> list[Multiaddr]:
        """Unexpired addresses, longest-lived first."""
        rows = self._db.reader.execute(
            "SELECT addr FROM peer_addrs WHERE peer = ? AND expires > ?"
            " ORDER BY expires DESC, addr",
            (peer.multihash, now),
        ).fetchall()
        return decode_addrs([bytes(r[0]) for r in rows])

    def peers(self, now: float | None = None) -> list[PeerID]:
        """Peers with an (unexpired) address, sorted by id bytes; bad stored ids skipped."""
        if now is None:
            rows = self._db.reader.execute(
                "SELECT DISTINCT peer FROM peer_addrs ORDER BY peer"
            ).fetchall()
        else:
            rows = self._db.reader.execute(
                "SELECT DISTINCT peer FROM peer_addrs WHERE expires > ? ORDER BY peer", (now,)
            ).fetchall()
        out: list[PeerID] = []
        for (raw,) in rows:
            try:
                out.append(PeerID.from_bytes(bytes(raw)))
            except InvalidPeerIDError:
                continue
        return out

    async def entries_async(self, now: float) -> list[tuple[PeerID, list[Multiaddr]]]:
        """Every peer with its unexpired addresses (one query on the read thread),
        sorted by id bytes, each peer's longest-lived address first."""

        def op(conn: sqlite3.Connection) -> list[tuple[bytes, bytes]]:
            rows: list[tuple[bytes, bytes]] = conn.execute(
                "SELECT peer, addr FROM peer_addrs WHERE expires > ?"
                " ORDER BY peer, expires DESC, addr",
                (now,),
            ).fetchall()
            return rows

        grouped: dict[bytes, list[bytes]] = {}
        for peer, addr in await self._db.reads.call_async(op):
            grouped.setdefault(bytes(peer), []).append(bytes(addr))
        out: list[tuple[PeerID, list[Multiaddr]]] = []
        for raw, addrs in grouped.items():
            try:
                out.append((PeerID.from_bytes(raw), decode_addrs(addrs)))
            except InvalidPeerIDError:
                continue
        return out

    @staticmethod
    def _remove_op(peer: PeerID) -> Callable[[sqlite3.Connection], bool]:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM peer_addrs WHERE peer = ?", (peer.multihash,))
            return cur.rowcount > 0

        return op

    def remove(self, peer: PeerID) -> bool:
        """Forget ``peer``."""
        return self._db.writer.call(self._remove_op(peer))

    def forget_later(self, peer: PeerID) -> None:
        """:meth:`remove` queued on the writer; a failure is logged."""
        self._db.writer.submit(self._remove_op(peer)).add_done_callback(log_failure)

    def gc(self, now: float) -> int:
        """Delete expired addresses."""

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM peer_addrs WHERE expires <= ?", (now,)).rowcount

        return self._db.writer.call(op)
