"""Durable stores in one SQLite file, ``<repo>/datastore.sqlite`` (DESIGN.md §6).

One :class:`SqliteDatastore` owns the file: it sets up or migrates the schema,
starts the writer and reader threads (:mod:`.sqlite_threads`) and hands them to
its ``.providers`` (:mod:`.sqlite_providers`), ``.values`` (:mod:`.sqlite_values`)
and ``.peers`` (:mod:`.sqlite_peers`) stores. The file is in WAL mode with
``synchronous=FULL``.

Writes never run on the caller's thread; the ``*_async`` calls return once
their transaction is committed — a record acknowledged after awaiting them
survives a crash or power loss — and the plain calls block until then (tools,
tests). Blocking reads use a connection on the caller's thread with no busy
timeout (WAL readers never wait for the writer), so nothing freezes the loop
when another process holds the file; the event loop's own reads go to the
reader thread.

The writer also keeps the per-sender and total usage that the limits
(:class:`~.limits.StoreLimits`) are checked against, loaded once when the file
is opened, so admission is exact even with many concurrent writes.

All statements are parameterised; keys and values are stored as BLOBs and times
as REAL seconds since the epoch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from zikade_py.dht.stores.base import PROVIDER_ADDR_TTL, PROVIDER_VALIDITY, StoreError
from zikade_py.dht.stores.limits import StoreLimits
from zikade_py.dht.stores.sqlite_peers import SqlitePeerStore
from zikade_py.dht.stores.sqlite_providers import SqliteProviderStore
from zikade_py.dht.stores.sqlite_threads import ReaderThread, WriterThread, reader_setup
from zikade_py.dht.stores.sqlite_threads import SharedDb as _Db  # tests patch ``_Db``
from zikade_py.dht.stores.sqlite_values import SqliteValueStore

T = TypeVar("T")

SCHEMA_VERSION: Final = 2
"""Stored in ``PRAGMA user_version``; bump it and add a migration when the schema changes."""

DATASTORE_FILENAME: Final = "datastore.sqlite"
"""The file name inside the repo directory."""

_SCHEMA: Final = (
    """CREATE TABLE providers (
        key BLOB NOT NULL,
        peer BLOB NOT NULL,
        time_received REAL NOT NULL,
        addrs BLOB NOT NULL,
        addrs_time REAL NOT NULL,
        PRIMARY KEY (key, peer)
    ) WITHOUT ROWID""",
    "CREATE INDEX providers_by_time ON providers (time_received)",
    """CREATE TABLE local_provides (
        key BLOB PRIMARY KEY,
        last_announced REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE records (
        key BLOB PRIMARY KEY,
        value BLOB NOT NULL,
        time_received REAL NOT NULL,
        sender BLOB NOT NULL DEFAULT x''
    ) WITHOUT ROWID""",
    "CREATE INDEX records_by_time ON records (time_received)",
    """CREATE TABLE peer_addrs (
        peer BLOB NOT NULL,
        addr BLOB NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (peer, addr)
    ) WITHOUT ROWID""",
    "CREATE INDEX peer_addrs_by_expiry ON peer_addrs (expires)",
)

_MIGRATIONS: Final = {
    # 1 -> 2: value records remember who sent them (per-sender limits).
    1: ("ALTER TABLE records ADD COLUMN sender BLOB NOT NULL DEFAULT x''",),
}


class SqliteDatastore:
    """The node's SQLite file and the three stores on it.

    Use as a context manager or call :meth:`close`. Raises :class:`StoreError` if
    the file cannot be opened or carries a schema newer than this code knows.
    Opening reads the usage of every sender (one scan of each table): open it off
    the event loop (``asyncio.to_thread``) when the file may be large.
    """

    __slots__ = ("_conn", "_reads", "_writer", "path", "peers", "providers", "values")

    def __init__(
        self,
        path: str | Path,
        *,
        provider_validity: float = PROVIDER_VALIDITY,
        provider_addr_ttl: float = PROVIDER_ADDR_TTL,
        limits: StoreLimits | None = None,
    ) -> None:
        self.path = Path(path)
        limits = limits or StoreLimits()
        limits.validate()
        self._writer = WriterThread(self.path, self._setup)
        try:
            self._writer.ready.result()
        except sqlite3.Error as exc:
            self._writer.close()
            raise StoreError(f"cannot use {self.path}: {exc}") from exc
        except StoreError:
            self._writer.close()
            raise
        try:
            # isolation_level=None: autocommit reads, each a fresh WAL snapshot.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=0")  # never wait on the caller's thread
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            self._writer.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._reads = ReaderThread(self.path, reader_setup)
        try:
            self._reads.ready.result()
        except BaseException as exc:
            self._writer.close()
            self._reads.close()
            self._conn.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        db = _Db(self._conn, self._writer, self._reads)
        self.providers = SqliteProviderStore(db, provider_validity, provider_addr_ttl, limits)
        self.values = SqliteValueStore(db, limits)
        self.peers = SqlitePeerStore(db)
        self._writer.call(self._load_usage)

    def _load_usage(self, conn: sqlite3.Connection) -> None:
        self.providers._load_usage(conn)
        self.values._load_usage(conn)

    async def write_async(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread (group commit) for stores of other modules
        (the sweep's keys, :mod:`.sqlite_provide`); returns once it is committed."""
        return await self._writer.call_async(fn)

    async def read_async(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader thread (never on the event loop)."""
        return await self._reads.call_async(fn)

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Writer thread, first thing: settings, schema creation or migration."""
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path} cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")  # the writer thread only
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this zikade knows {SCHEMA_VERSION}"
            )
        if version != 0 and version not in _MIGRATIONS:
            raise StoreError(f"{self.path} has unknown schema version {version}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            else:
                for v in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[v]:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def commits(self) -> int:
        """Write transactions committed so far (group commit: fewer than writes)."""
        return self._writer.commits

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Commit queued writes, stop the threads and close every connection."""
        self._writer.close()
        self._reads.close()
        self._conn.close()

    def __enter__(self) -> SqliteDatastore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
