"""Provider records and our own provided keys in the SQLite datastore (:mod:`.sqlite`).

Announced addresses are kept with the record as one BLOB of length-prefixed
multiaddrs; they are returned only while younger than the address TTL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import PROVIDER_ADDR_TTL, PROVIDER_VALIDITY, REPUBLISH_INTERVAL
from zikade_py.dht.stores.limits import (
    Accounting,
    StoreFullError,
    StoreLimits,
    Usage,
    provider_size,
)
from zikade_py.dht.stores.sqlite_gc import delete_expired
from zikade_py.dht.stores.sqlite_threads import SharedDb
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError, decode_uvarint


def pack_addrs(addrs: Iterable[Multiaddr]) -> bytes:
    """A provider's addresses as one BLOB column (length-prefixed, as on the wire)."""
    return b"".join(length_prefixed(a.to_bytes()) for a in addrs)


def unpack_addrs(blob: bytes) -> tuple[Multiaddr, ...]:
    """The addresses of a :func:`pack_addrs` BLOB; a damaged tail is dropped, not raised."""
    raw: list[bytes] = []
    pos = 0
    try:
        while pos < len(blob):
            size, pos = decode_uvarint(blob, pos)
            raw.append(blob[pos : pos + size])
            pos += size
    except VarintError:
        pass  # a damaged tail loses those addresses, not the record
    return tuple(decode_addrs(raw))


class SqliteProviderStore:
    """Provider records and our own provided keys; see :class:`~.base.ProviderStore`."""

    __slots__ = ("_acct", "_addr_ttl", "_db", "_limits", "_validity")

    def __init__(
        self,
        db: SharedDb,
        validity: float = PROVIDER_VALIDITY,
        addr_ttl: float = PROVIDER_ADDR_TTL,
        limits: StoreLimits | None = None,
    ) -> None:
        self._db = db
        self._validity = validity
        self._addr_ttl = addr_ttl
        self._limits = limits or StoreLimits()
        self._acct = Accounting(
            self._limits.max_providers_per_peer,
            self._limits.max_providers,
            self._limits.max_provider_bytes,
        )

    def _load_usage(self, conn: sqlite3.Connection) -> None:
        """Writer thread, at open: usage per provider from the table (one scan)."""
        for peer, count, size in conn.execute(
            "SELECT peer, count(*), sum(length(key) + length(peer) + length(addrs))"
            " FROM providers GROUP BY peer"
        ):
            self._acct.charge(bytes(peer), int(count), int(size))

    def _add_op(
        self, key: bytes, provider: PeerInfo, now: float, limited: bool
    ) -> Callable[[sqlite3.Connection], None]:
        key = bytes(key)
        pid = provider.peer_id.multihash
        blob = pack_addrs(provider.addrs) if provider.addrs else None
        limits, acct = self._limits, self._acct

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT length(addrs) FROM providers WHERE key = ? AND peer = ?", (key, pid)
            ).fetchone()
            sender = pid if limited else None
            if row is None:
                size = provider_size(key, pid, len(blob or b""))
                if limited:
                    (count,) = conn.execute(
                        "SELECT count(*) FROM providers WHERE key = ?", (key,)
                    ).fetchone()
                    if count >= limits.max_providers_per_key:
                        raise StoreFullError("per_key", "this key has its maximum of providers")
                acct.check_new(sender, size)
                conn.execute(
                    "INSERT INTO providers (key, peer, time_received, addrs, addrs_time)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, pid, now, blob or b"", now),
                )
                acct.charge(pid, 1, size)
            elif blob is not None:
                delta = len(blob) - int(row[0])
                acct.check_grow(sender, delta)
                conn.execute(
                    "UPDATE providers SET time_received = ?, addrs = ?, addrs_time = ?"
                    " WHERE key = ? AND peer = ?",
                    (now, blob, now, key, pid),
                )
                acct.charge(pid, 0, delta)
            else:
                conn.execute(
                    "UPDATE providers SET time_received = ? WHERE key = ? AND peer = ?",
                    (now, key, pid),
                )

        return op

    def add(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """Record or refresh ``provider`` for ``key``; committed on return."""
        self._db.writer.call(self._add_op(key, provider, now, sender is not None))

    async def add_async(
        self, key: bytes, provider: PeerInfo, now: float, sender: PeerID | None = None
    ) -> None:
        """:meth:`add` on the writer thread; committed when it returns."""
        await self._db.writer.call_async(self._add_op(key, provider, now, sender is not None))

    def get(self, key: bytes, now: float, limit: int | None = None) -> list[PeerInfo]:
        """Unexpired providers of ``key``, most recently announced first."""
        return self._infos(self._rows_op(key, now, limit)(self._db.reader), now)

    async def get_async(
        self, key: bytes, now: float, limit: int | None = None
    ) -> list[PeerInfo]:
        """:meth:`get` with the query on the read thread (rows are parsed here: the
        thread holds the GIL as little as it can)."""
        return self._infos(await self._db.reads.call_async(self._rows_op(key, now, limit)), now)

    def _rows_op(
        self, key: bytes, now: float, limit: int | None
    ) -> Callable[[sqlite3.Connection], list[tuple[bytes, bytes, float]]]:
        def op(conn: sqlite3.Connection) -> list[tuple[bytes, bytes, float]]:
            rows: list[tuple[bytes, bytes, float]] = conn.execute(
                "SELECT peer, addrs, addrs_time FROM providers"
                " WHERE key = ? AND time_received >= ? ORDER BY time_received DESC, peer LIMIT ?",
                (bytes(key), now - self._validity, -1 if limit is None else max(limit, 0)),
            ).fetchall()
            return rows

        return op

    def _infos(self, rows: list[tuple[bytes, bytes, float]], now: float) -> list[PeerInfo]:
        out: list[PeerInfo] = []
        for peer, addrs, addrs_time in rows:
            try:
                peer_id = PeerID.from_bytes(peer)
            except InvalidPeerIDError:
                continue
            fresh = now - addrs_time <= self._addr_ttl
            out.append(PeerInfo(peer_id, unpack_addrs(addrs) if fresh else ()))
        return out

    def _gc_op(self, now: float, limit: int | None) -> Callable[[sqlite3.Connection], int]:
        cutoff = now - self._validity
        acct = self._acct

        def op(conn: sqlite3.Connection) -> int:
            return delete_expired(
                conn, acct, cutoff, limit,
                "SELECT key, peer, peer, length(key) + length(peer) + length(addrs)"
                " FROM providers WHERE time_received < ? ORDER BY time_received LIMIT ?",
                "DELETE FROM providers WHERE key = ? AND peer = ?",
            )  # fmt: skip

        return op

    def gc(self, now: float, limit: int | None = None) -> int:
        """Delete records older than the validity (at most ``limit``, oldest first)."""
        return self._db.writer.call(self._gc_op(now, limit))

    async def gc_async(self, now: float, limit: int | None = None) -> int:
        """:meth:`gc` on the writer thread."""
        return await self._db.writer.call_async(self._gc_op(now, limit))

    def usage(self) -> Usage:
        """Records and bytes held (as of the last committed write)."""
        return self._acct.snapshot()

    def sender_usage(self, sender: PeerID) -> Usage:
        """Records and bytes announced by ``sender``."""
        return self._acct.snapshot(sender.multihash)

    def is_local(self, key: bytes) -> bool:
        """Whether we provide ``key`` (a primary-key lookup)."""
        return _is_local(bytes(key))(self._db.reader)

    async def is_local_async(self, key: bytes) -> bool:
        """:meth:`is_local` on the read thread."""
        return await self._db.reads.call_async(_is_local(bytes(key)))

    @staticmethod
    def _add_local_op(key: bytes, now: float) -> Callable[[sqlite3.Connection], None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO local_provides (key, last_announced) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET last_announced = excluded.last_announced",
                (bytes(key), now),
            )

        return op

    def add_local(self, key: bytes, now: float) -> None:
        """Mark ``key`` as ours, announced at ``now``."""
        self._db.writer.call(self._add_local_op(key, now))

    async def add_local_async(self, key: bytes, now: float) -> None:
        """:meth:`add_local` on the writer thread."""
        await self._db.writer.call_async(self._add_local_op(key, now))

    def remove_local(self, key: bytes) -> bool:
        """Stop providing ``key``."""

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM local_provides WHERE key = ?", (bytes(key),))
            return cur.rowcount > 0

        return self._db.writer.call(op)

    def list_local(self) -> list[bytes]:
        """All keys we provide, sorted."""
        rows = self._db.reader.execute("SELECT key FROM local_provides ORDER BY key").fetchall()
        return [bytes(r[0]) for r in rows]

    def list_local_due(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """Our keys due for another announcement, oldest announcement first."""
        return _local_due(now - republish_interval)(self._db.reader)

    async def list_local_due_async(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """:meth:`list_local_due` on the read thread."""
        return await self._db.reads.call_async(_local_due(now - republish_interval))


def _is_local(key: bytes) -> Callable[[sqlite3.Connection], bool]:
    def op(conn: sqlite3.Connection) -> bool:
        row = conn.execute("SELECT 1 FROM local_provides WHERE key = ?", (key,)).fetchone()
        return row is not None

    return op


def _local_due(cutoff: float) -> Callable[[sqlite3.Connection], list[bytes]]:
    def op(conn: sqlite3.Connection) -> list[bytes]:
        rows = conn.execute(
            "SELECT key FROM local_provides WHERE last_announced <= ?"
            " ORDER BY last_announced, key",
            (cutoff,),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    return op
