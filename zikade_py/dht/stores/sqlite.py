"""Durable stores in one SQLite file, ``<repo>/datastore.sqlite`` (DESIGN.md §6).

One :class:`SqliteDatastore` owns one connection; its ``.providers``, ``.values``
and ``.peers`` stores share it. The file is in WAL mode with
``synchronous=FULL`` and every mutating call commits before it returns, so a
record we acknowledged (a PUT_VALUE echo, an ``add`` call that returned) survives
a crash or power loss.

The calls are synchronous on purpose: they are local, small, indexed statements
that take microseconds to a few milliseconds (a FULL commit is one fsync), which
is cheaper than hopping to a thread for each. Use the datastore from one thread
(the event loop's), as sqlite3 connections require by default.

All statements are parameterised; keys and values are stored as BLOBs and times
as REAL seconds since the epoch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
    StoreError,
)
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError, decode_uvarint

SCHEMA_VERSION: Final = 1
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
        time_received REAL NOT NULL
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


def _pack_addrs(addrs: Iterable[Multiaddr]) -> bytes:
    return b"".join(length_prefixed(a.to_bytes()) for a in addrs)


def _unpack_addrs(blob: bytes) -> tuple[Multiaddr, ...]:
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


class _Db:
    """The shared connection with a commit-per-call transaction helper."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction committed (durably, synchronous=FULL) on exit."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class SqliteProviderStore:
    """Provider records and our own provided keys; see :class:`~.base.ProviderStore`."""

    __slots__ = ("_addr_ttl", "_db", "_validity")

    def __init__(
        self,
        db: _Db,
        validity: float = PROVIDER_VALIDITY,
        addr_ttl: float = PROVIDER_ADDR_TTL,
    ) -> None:
        self._db = db
        self._validity = validity
        self._addr_ttl = addr_ttl

    def add(self, key: bytes, provider: PeerInfo, now: float) -> None:
        """Record or refresh ``provider`` for ``key``; committed on return."""
        pid = provider.peer_id.multihash
        with self._db.write() as conn:
            if provider.addrs:
                conn.execute(
                    "INSERT INTO providers (key, peer, time_received, addrs, addrs_time)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, peer) DO UPDATE SET"
                    " time_received = excluded.time_received, addrs = excluded.addrs,"
                    " addrs_time = excluded.addrs_time",
                    (bytes(key), pid, now, _pack_addrs(provider.addrs), now),
                )
            else:
                conn.execute(
                    "INSERT INTO providers (key, peer, time_received, addrs, addrs_time)"
                    " VALUES (?, ?, ?, x'', ?) ON CONFLICT (key, peer) DO UPDATE SET"
                    " time_received = excluded.time_received",
                    (bytes(key), pid, now, now),
                )

    def get(self, key: bytes, now: float, limit: int | None = None) -> list[PeerInfo]:
        """Unexpired providers of ``key``, most recently announced first."""
        rows = self._db.conn.execute(
            "SELECT peer, addrs, addrs_time FROM providers WHERE key = ? AND time_received >= ?"
            " ORDER BY time_received DESC, peer LIMIT ?",
            (bytes(key), now - self._validity, -1 if limit is None else max(limit, 0)),
        ).fetchall()
        out: list[PeerInfo] = []
        for peer, addrs, addrs_time in rows:
            try:
                peer_id = PeerID.from_bytes(peer)
            except InvalidPeerIDError:
                continue
            fresh = now - addrs_time <= self._addr_ttl
            out.append(PeerInfo(peer_id, _unpack_addrs(addrs) if fresh else ()))
        return out

    def gc(self, now: float) -> int:
        """Delete records older than the validity."""
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM providers WHERE time_received < ?", (now - self._validity,)
            )
            return cur.rowcount

    def add_local(self, key: bytes, now: float) -> None:
        """Mark ``key`` as ours, announced at ``now``."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO local_provides (key, last_announced) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET last_announced = excluded.last_announced",
                (bytes(key), now),
            )

    def remove_local(self, key: bytes) -> bool:
        """Stop providing ``key``."""
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM local_provides WHERE key = ?", (bytes(key),))
            return cur.rowcount > 0

    def list_local(self) -> list[bytes]:
        """All keys we provide, sorted."""
        rows = self._db.conn.execute("SELECT key FROM local_provides ORDER BY key").fetchall()
        return [bytes(r[0]) for r in rows]

    def list_local_due(
        self, now: float, republish_interval: float = REPUBLISH_INTERVAL
    ) -> list[bytes]:
        """Our keys due for another announcement, oldest announcement first."""
        rows = self._db.conn.execute(
            "SELECT key FROM local_provides WHERE last_announced <= ?"
            " ORDER BY last_announced, key",
            (now - republish_interval,),
        ).fetchall()
        return [bytes(r[0]) for r in rows]


class SqliteValueStore:
    """Value records; see :class:`~.base.ValueStore`."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    def put(self, key: bytes, value: bytes, now: float) -> bool:
        """Store ``value``; durable on return. True if it differs from what was stored."""
        with self._db.write() as conn:
            old = conn.execute("SELECT value FROM records WHERE key = ?", (bytes(key),)).fetchone()
            conn.execute(
                "INSERT INTO records (key, value, time_received) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " time_received = excluded.time_received",
                (bytes(key), bytes(value), now),
            )
        return old is None or bytes(old[0]) != value

    def get(
        self, key: bytes, now: float, max_age: float = MAX_RECORD_AGE
    ) -> tuple[bytes, float] | None:
        """The record if received at most ``max_age`` ago."""
        row = self._db.conn.execute(
            "SELECT value, time_received FROM records WHERE key = ? AND time_received >= ?",
            (bytes(key), now - max_age),
        ).fetchone()
        if row is None:
            return None
        return bytes(row[0]), float(row[1])

    def delete(self, key: bytes) -> bool:
        """Remove the record."""
        with self._db.write() as conn:
            return conn.execute("DELETE FROM records WHERE key = ?", (bytes(key),)).rowcount > 0

    def gc(self, now: float, max_age: float = MAX_RECORD_AGE) -> int:
        """Delete records older than ``max_age``."""
        with self._db.write() as conn:
            return conn.execute(
                "DELETE FROM records WHERE time_received < ?", (now - max_age,)
            ).rowcount


class SqlitePeerStore:
    """The persistent address book; see :class:`~.base.PeerStore`."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    def add_addrs(
        self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float
    ) -> None:
        """Extend each address's expiry to ``now + ttl``."""
        rows = [(peer.multihash, a.to_bytes(), now + ttl) for a in addrs]
        if not rows:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO peer_addrs (peer, addr, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (peer, addr) DO UPDATE SET"
                " expires = max(expires, excluded.expires)",
                rows,
            )

    def addrs(self, peer: PeerID, now: float) -> list[Multiaddr]:
        """Unexpired addresses, longest-lived first."""
        rows = self._db.conn.execute(
            "SELECT addr FROM peer_addrs WHERE peer = ? AND expires > ?"
            " ORDER BY expires DESC, addr",
            (peer.multihash, now),
        ).fetchall()
        return decode_addrs([bytes(r[0]) for r in rows])

    def peers(self, now: float | None = None) -> list[PeerID]:
        """Peers with an (unexpired) address, sorted by id bytes; bad stored ids skipped."""
        if now is None:
            rows = self._db.conn.execute(
                "SELECT DISTINCT peer FROM peer_addrs ORDER BY peer"
            ).fetchall()
        else:
            rows = self._db.conn.execute(
                "SELECT DISTINCT peer FROM peer_addrs WHERE expires > ? ORDER BY peer", (now,)
            ).fetchall()
        out: list[PeerID] = []
        for (raw,) in rows:
            try:
                out.append(PeerID.from_bytes(bytes(raw)))
            except InvalidPeerIDError:
                continue
        return out

    def remove(self, peer: PeerID) -> bool:
        """Forget ``peer``."""
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM peer_addrs WHERE peer = ?", (peer.multihash,))
            return cur.rowcount > 0

    def gc(self, now: float) -> int:
        """Delete expired addresses."""
        with self._db.write() as conn:
            return conn.execute("DELETE FROM peer_addrs WHERE expires <= ?", (now,)).rowcount


class SqliteDatastore:
    """The node's SQLite file and the three stores on its single connection.

    Use as a context manager or call :meth:`close`. Raises :class:`StoreError` if
    the file cannot be opened or carries a schema newer than this code knows.
    """

    __slots__ = ("_conn", "path", "peers", "providers", "values")

    def __init__(
        self,
        path: str | Path,
        *,
        provider_validity: float = PROVIDER_VALIDITY,
        provider_addr_ttl: float = PROVIDER_ADDR_TTL,
    ) -> None:
        self.path = Path(path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see _Db.write).
            self._conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot use {self.path}: {exc}") from exc
        except StoreError:
            self._conn.close()
            raise
        db = _Db(self._conn)
        self.providers = SqliteProviderStore(db, provider_validity, provider_addr_ttl)
        self.values = SqliteValueStore(db)
        self.peers = SqlitePeerStore(db)

    def _setup(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path} cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this zikade knows {SCHEMA_VERSION}"
            )
        if version != 0:
            raise StoreError(f"{self.path} has unknown schema version {version}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection (WAL contents are checkpointed by SQLite)."""
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
