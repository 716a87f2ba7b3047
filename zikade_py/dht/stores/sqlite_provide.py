"""The sweep's keys and schedule in the repo's SQLite file (see :mod:`.provide_keys`).

Three tables of their own, created on first use (``IF NOT EXISTS``, so the
datastore's schema version is untouched and older files gain them):

* ``sweep_keys (pos, mh, pending)`` — keyed by the 32-byte position, so a
  region is one range scan of the primary key and millions of keys never have
  to be in memory at once; a partial index finds the pending ones;
* ``sweep_regions (prefix, last_done, added)`` — the schedule;
* ``sweep_meta (name, value)`` — the cycle's start.

Writes go through the datastore's writer thread (group commit: many small
writes share one fsync, the event loop never waits for the disk) in chunks of
:data:`CHUNK` keys, so a million-key provide never holds the writer for long;
reads run on its reader thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from zikade_py.core.key import KEY_BITS
from zikade_py.dht.stores.provide_keys import KeyRow, RegionRow, position_bytes

if TYPE_CHECKING:
    from zikade_py.dht.stores.sqlite import SqliteDatastore

CHUNK: Final = 5000
"""Keys written per writer operation."""

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS sweep_keys (
        pos BLOB PRIMARY KEY,
        mh BLOB NOT NULL,
        pending INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS sweep_keys_pending ON sweep_keys (pos) WHERE pending = 1",
    """CREATE TABLE IF NOT EXISTS sweep_regions (
        prefix TEXT PRIMARY KEY,
        last_done REAL,
        added REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sweep_meta (
        name TEXT PRIMARY KEY,
        value REAL NOT NULL
    ) WITHOUT ROWID""",
)


class SqliteProvideKeys:
    """:class:`~.provide_keys.ProvideKeyStore` on a :class:`SqliteDatastore`."""

    __slots__ = ("_ds", "_ready")

    def __init__(self, datastore: SqliteDatastore) -> None:
        self._ds = datastore
        self._ready = False

    async def _write(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        await self._ensure()
        return await self._ds.write_async(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        await self._ensure()
        return await self._ds.read_async(fn)

    async def _ensure(self) -> None:
        if self._ready:
            return

        def create(conn: sqlite3.Connection) -> None:
            for statement in _TABLES:
                conn.execute(statement)

        await self._ds.write_async(create)
        self._ready = True

    async def add(self, rows: Sequence[KeyRow], pending: bool) -> list[KeyRow]:
        """Store the keys not stored yet, in chunks; return the new ones."""
        flag = 1 if pending else 0
        new: list[KeyRow] = []
        for i in range(0, len(rows), CHUNK):
            chunk = [(bytes(p), bytes(m)) for p, m in rows[i : i + CHUNK]]

            def op(conn: sqlite3.Connection, chunk: list[KeyRow] = chunk) -> list[KeyRow]:
                added: list[KeyRow] = []
                for pos, mh in chunk:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO sweep_keys (pos, mh, pending) VALUES (?, ?, ?)",
                        (pos, mh, flag),
                    )
                    if cur.rowcount > 0:
                        added.append((pos, mh))
                return added

            got = await self._write(op)
            assert isinstance(got, list)
            new.extend(got)
        return new

    async def range(
        self, lo: int, hi: int, limit: int | None = None, pending: bool = False
    ) -> list[KeyRow]:
        """The keys with ``lo <= position < hi``, in position order, at most ``limit``
        (one range scan; ``pending``: of the partial index of keys not announced yet)."""
        sql = "SELECT pos, mh FROM sweep_keys WHERE pos >= ?"
        args: list[object] = [position_bytes(lo)]
        if hi < 1 << KEY_BITS:
            sql += " AND pos < ?"
            args.append(position_bytes(hi))
        if pending:
            sql += " AND pending = 1"
        sql += " ORDER BY pos"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def op(conn: sqlite3.Connection) -> list[KeyRow]:
            return [(bytes(p), bytes(m)) for p, m in conn.execute(sql, args)]

        got = await self._read(op)
        assert isinstance(got, list)
        return got

    async def count(self, pending: bool = False) -> int:
        """How many keys we provide (``pending``: how many wait for their first announcement)."""
        sql = "SELECT count(*) FROM sweep_keys" + (" WHERE pending = 1" if pending else "")

        def op(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql).fetchone()[0])

        got = await self._read(op)
        assert isinstance(got, int)
        return got

    async def pending(self, limit: int) -> list[KeyRow]:
        """Up to ``limit`` keys still waiting for their first announcement."""

        def op(conn: sqlite3.Connection) -> list[KeyRow]:
            cur = conn.execute(
                "SELECT pos, mh FROM sweep_keys WHERE pending = 1 ORDER BY pos LIMIT ?", (limit,)
            )
            return [(bytes(p), bytes(m)) for p, m in cur]

        got = await self._read(op)
        assert isinstance(got, list)
        return got

    async def mark_announced(self, positions: Sequence[bytes]) -> None:
        """These keys had their first announcement (chunked writes)."""
        for i in range(0, len(positions), CHUNK):
            chunk = [(bytes(p),) for p in positions[i : i + CHUNK]]

            def op(conn: sqlite3.Connection, chunk: list[tuple[bytes]] = chunk) -> None:
                conn.executemany(
                    "UPDATE sweep_keys SET pending = 0 WHERE pos = ? AND pending = 1", chunk
                )

            await self._write(op)

    async def clear(self) -> int:
        """Forget every key and the schedule; how many keys there were."""

        def op(conn: sqlite3.Connection) -> int:
            n = int(conn.execute("SELECT count(*) FROM sweep_keys").fetchone()[0])
            conn.execute("DELETE FROM sweep_keys")
            conn.execute("DELETE FROM sweep_regions")
            conn.execute("DELETE FROM sweep_meta")
            return n

        got = await self._write(op)
        assert isinstance(got, int)
        return got

    async def save_schedule(
        self, cycle_start: float, added: Sequence[RegionRow], removed: Sequence[str]
    ) -> None:
        """Apply one change of the schedule in one transaction."""
        adds = [tuple(row) for row in added]
        gone = [(p,) for p in removed]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sweep_meta (name, value) VALUES ('cycle_start', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (cycle_start,),
            )
            conn.executemany("DELETE FROM sweep_regions WHERE prefix = ?", gone)
            conn.executemany(
                "INSERT INTO sweep_regions (prefix, last_done, added) VALUES (?, ?, ?)"
                " ON CONFLICT (prefix) DO UPDATE SET last_done = excluded.last_done,"
                " added = excluded.added",
                adds,
            )

        await self._write(op)

    async def load_schedule(self) -> tuple[float | None, list[RegionRow]]:
        """The cycle's start and every scheduled region."""

        def op(conn: sqlite3.Connection) -> tuple[float | None, list[RegionRow]]:
            row = conn.execute("SELECT value FROM sweep_meta WHERE name = 'cycle_start'").fetchone()
            regions: list[RegionRow] = [
                (str(p), None if last is None else float(last), float(added))
                for p, last, added in conn.execute(
                    "SELECT prefix, last_done, added FROM sweep_regions"
                )
            ]
            return (None if row is None else float(row[0])), regions

        got = await self._read(op)
        assert isinstance(got, tuple)
        return got


__all__ = ["CHUNK", "SqliteProvideKeys"]
