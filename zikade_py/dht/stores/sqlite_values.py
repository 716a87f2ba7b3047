"""Value records in the SQLite datastore (:mod:`.sqlite`), each remembering its sender
for the per-sender limits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from zikade_py.dht.stores.base import MAX_RECORD_AGE
from zikade_py.dht.stores.limits import Accounting, StoreFullError, StoreLimits, Usage
from zikade_py.dht.stores.sqlite_gc import delete_expired
from zikade_py.dht.stores.sqlite_threads import SharedDb
from zikade_py.p2p.peer_id import PeerID


class SqliteValueStore:
    """Value records; see :class:`~.base.ValueStore`."""

    __slots__ = ("_acct", "_db", "_limits")

    def __init__(self, db: SharedDb, limits: StoreLimits | None = None) -> None:
        self._db = db
        self._limits = limits or StoreLimits()
        self._acct = Accounting(
            self._limits.max_values_per_peer, self._limits.max_values, self._limits.max_value_bytes
        )

    def _load_usage(self, conn: sqlite3.Connection) -> None:
        for sender, count, size in conn.execute(
            "SELECT sender, count(*), sum(length(key) + length(value)) FROM records GROUP BY sender"
        ):
            self._acct.charge(bytes(sender), int(count), int(size))

    def _put_op(
        self, key: bytes, value: bytes, now: float, sender: PeerID | None
    ) -> Callable[[sqlite3.Connection], bool]:
        key, value = bytes(key), bytes(value)
        who = b"" if sender is None else sender.multihash
        limited = None if sender is None else who
        limits, acct = self._limits, self._acct
        if limited is not None and len(value) > limits.max_record_size:
            raise StoreFullError("too_large", f"a value of {len(value)} bytes is too large")

        def op(conn: sqlite3.Connection) -> bool:
            old = conn.execute(
                "SELECT value, sender FROM records WHERE key = ?", (key,)
            ).fetchone()
            size = len(key) + len(value)
            if old is None:
                acct.check_new(limited, size)
            else:
                old_size = len(key) + len(old[0])
                if bytes(old[1]) != who:
                    acct.check_new(limited, size)
                else:
                    acct.check_grow(limited, size - old_size)
            conn.execute(
                "INSERT INTO records (key, value, time_received, sender) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " time_received = excluded.time_received, sender = excluded.sender",
                (key, value, now, who),
            )
            if old is not None:
                acct.charge(bytes(old[1]), -1, -(len(key) + len(old[0])))
            acct.charge(who, 1, size)
            return old is None or bytes(old[0]) != value

        return op

    def put(self, key: bytes, value: bytes, now: float, sender: PeerID | None = None) -> bool:
        """Store ``value``; durable on return. True if it differs from what was stored."""
        return self._db.writer.call(self._put_op(key, value, now, sender))

    async def put_async(
        self, key: bytes, value: bytes, now: float, sender: PeerID | None = None
    ) -> bool:
        """:meth:`put` on the writer thread; durable when it returns."""
        return await self._db.writer.call_async(self._put_op(key, value, now, sender))

    def get(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """The record if received at most ``max_age`` ago."""
        return _get_record(bytes(key), now - max_age)(self._db.reader)

    async def get_async(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """:meth:`get` on the read thread."""
        return await self._db.reads.call_async(_get_record(bytes(key), now - max_age))

    def delete(self, key: bytes) -> bool:
        """Remove the record."""
        acct = self._acct

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM records WHERE key = ? RETURNING sender, length(key) + length(value)",
                (bytes(key),),
            ).fetchone()
            if row is None:
                return False
            acct.charge(bytes(row[0]), -1, -int(row[1]))
            return True

        return self._db.writer.call(op)

    def _gc_op(
        self, now: float, max_age: float, limit: int | None
    ) -> Callable[[sqlite3.Connection], int]:
        cutoff = now - max_age
        acct = self._acct

        def op(conn: sqlite3.Connection) -> int:
            return delete_expired(
                conn, acct, cutoff, limit,
                "SELECT key, sender, length(key) + length(value) FROM records"
                " WHERE time_received < ? ORDER BY time_received LIMIT ?",
                "DELETE FROM records WHERE key = ?",
            )  # fmt: skip

        return op

    def gc(self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None) -> int:
        """Delete records older than ``max_age`` (at most ``limit``, oldest first)."""
        return self._db.writer.call(self._gc_op(now, max_age, limit))

    async def gc_async(
        self, now: float, max_age: float = MAX_RECORD_AGE, limit: int | None = None
    ) -> int:
        """:meth:`gc` on the writer thread."""
        return await self._db.writer.call_async(self._gc_op(now, max_age, limit))

    def usage(self) -> Usage:
        """Records and bytes held."""
        return self._acct.snapshot()

    def sender_usage(self, sender: PeerID) -> Usage:
        """Records last put by ``sender`` and their bytes."""
        return self._acct.snapshot(sender.multihash)


def _get_record(
    key: bytes, since: float
) -> Callable[[sqlite3.Connection], tuple[bytes, float] | None]:
    def op(conn: sqlite3.Connection) -> tuple[bytes, float] | None:
        row = conn.execute(
            "SELECT value, time_received FROM records WHERE key = ? AND time_received >= ?",
            (key, since),
        ).fetchone()
        return None if row is None else (bytes(row[0]), float(row[1]))

    return op
