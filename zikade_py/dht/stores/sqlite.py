"""Durable stores in one SQLite file, ``<repo>/datastore.sqlite`` (DESIGN.md §6).

One :class:`SqliteDatastore` owns the file; its ``.providers``, ``.values`` and
``.peers`` stores share it. The file is in WAL mode with ``synchronous=FULL``.

Writes never run on the caller's thread: one writer thread owns the write
connection and runs the operations in the order they were submitted. Operations
queued while a commit is in progress are committed together (group commit, one
fsync for all; go's provider manager batches writes the same way), so the event
loop never waits for the disk. The ``*_async`` calls return once their
transaction is committed — a record acknowledged after awaiting them survives a
crash or power loss — and the plain calls block until then (tools, tests).
Reads use a second connection on the caller's thread: WAL readers never wait
for the writer, and that connection has no busy timeout, so nothing freezes the
loop when another process holds the file.

The writer also keeps the per-sender and total usage that the limits
(:class:`~.limits.StoreLimits`) are checked against, loaded once when the file
is opened, so admission is exact even with many concurrent writes.

All statements are parameterised; keys and values are stored as BLOBs and times
as REAL seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.base import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
    StoreError,
)
from zikade_py.dht.stores.limits import (
    Accounting,
    StoreFullError,
    StoreLimits,
    Usage,
    provider_size,
)
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import Multiaddr, decode_addrs
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError, decode_uvarint

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 2
"""Stored in ``PRAGMA user_version``; bump it and add a migration when the schema changes."""

DATASTORE_FILENAME: Final = "datastore.sqlite"
"""The file name inside the repo directory."""

MAX_GROUP: Final = 512
"""Operations committed in one transaction at most (go batches 256 provider writes)."""

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


class _Op:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[object] = concurrent.futures.Future()


def _fail(op: _Op, exc: BaseException) -> None:
    if not op.future.done():
        op.future.set_exception(exc)


class _Writer:
    """The thread that owns the write connection and group-commits queued operations.

    Each operation runs inside a savepoint, so one that fails (a limit, a bug)
    is rolled back alone and its future gets the exception; the others of the
    group are committed. Futures are resolved only after the COMMIT returned.
    """

    name = "zikade-sqlite-writer"

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        self._path = path
        self._setup = setup
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Done when the file is open and its schema set up (or failed to be)."""
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._closed = False
        self.commits = 0
        """Transactions committed (each one fsync): fewer than operations under load."""
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn(conn)``; the future completes once its transaction is committed."""
        if self._closed:
            raise StoreError("the datastore is closed")
        op = _Op(fn)
        self._queue.put(op)
        return op.future  # type: ignore[return-value]

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer and wait for its commit (blocks the calling thread)."""
        return self.submit(fn).result()

    async def call_async(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer; the event loop goes on until it is committed."""
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the write connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            error = StoreError(f"cannot open {self._path}: {exc}")
            self.ready.set_exception(error)
            self._fail_all(error)
            return
        try:
            self._setup(conn)
        except BaseException as exc:  # reported through ``ready``
            conn.close()
            self.ready.set_exception(exc)
            self._fail_all(StoreError(f"{self._path} is not usable"))
            return
        self.ready.set_result(None)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    group.append(nxt)
                try:
                    self._commit(conn, group)
                except BaseException as exc:  # the writer must not die
                    log.exception("datastore write failed")
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    for op in group:
                        _fail(op, StoreError(f"write failed: {exc}"))
        finally:
            conn.close()

    def _fail_all(self, exc: BaseException) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            _fail(op, exc)

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        results: list[tuple[_Op, object, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for op in group:
                _fail(op, StoreError(f"cannot write {self._path}: {exc}"))
            return
        for op in group:
            conn.execute("SAVEPOINT op")
            try:
                result = op.fn(conn)
            except BaseException as exc:  # handed to the submitter
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((op, None, exc))
            else:
                conn.execute("RELEASE op")
                results.append((op, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            for op in group:
                _fail(op, StoreError(f"cannot commit to {self._path}: {exc}"))
            return
        self.commits += 1
        for op, result, error in results:
            if op.future.cancelled():
                continue  # the waiter left (its stream ended); the write stands
            if error is None:
                op.future.set_result(result)
            else:
                op.future.set_exception(error)


class _Reader(_Writer):
    """A thread with its own connection for the event loop's reads: a WAL reader never
    waits for the writer's lock, but starting a read while the writer checkpoints or
    restarts the WAL can spin for milliseconds inside SQLite, so the loop does not
    read itself. Operations run one after the other, outside any transaction."""

    name = "zikade-sqlite-reader"

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        for op in group:
            if op.future.cancelled():
                continue
            try:
                result = op.fn(conn)
            except BaseException as exc:  # handed to the submitter
                _fail(op, exc)
            else:
                if not op.future.cancelled():
                    op.future.set_result(result)


def _reader_setup(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA busy_timeout=1000")  # this thread may wait; the loop does not


class _Db:
    """What the three stores share: the writer and the caller-thread read connection."""

    __slots__ = ("reader", "reads", "writer")

    def __init__(self, reader: sqlite3.Connection, writer: _Writer, reads: _Reader) -> None:
        self.reader = reader
        """The caller-thread connection of the blocking reads (tools, tests)."""
        self.writer = writer
        self.reads = reads
        """The read thread behind the ``*_async`` reads (the event loop's)."""


class SqliteProviderStore:
    """Provider records and our own provided keys; see :class:`~.base.ProviderStore`."""

    __slots__ = ("_acct", "_addr_ttl", "_db", "_limits", "_validity")

    def __init__(
        self,
        db: _Db,
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
        blob = _pack_addrs(provider.addrs) if provider.addrs else None
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
            out.append(PeerInfo(peer_id, _unpack_addrs(addrs) if fresh else ()))
        return out

    def _gc_op(self, now: float, limit: int | None) -> Callable[[sqlite3.Connection], int]:
        cutoff = now - self._validity
        acct = self._acct

        def op(conn: sqlite3.Connection) -> int:
            return _delete_expired(
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


class SqliteValueStore:
    """Value records; see :class:`~.base.ValueStore`."""

    __slots__ = ("_acct", "_db", "_limits")

    def __init__(self, db: _Db, limits: StoreLimits | None = None) -> None:
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
            return _delete_expired(
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


class SqlitePeerStore:
    """The persistent address book; see :class:`~.base.PeerStore`."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
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
            self._db.writer.submit(op).add_done_callback(_log_failure)

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
        self._db.writer.submit(self._remove_op(peer)).add_done_callback(_log_failure)

    def gc(self, now: float) -> int:
        """Delete expired addresses."""

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM peer_addrs WHERE expires <= ?", (now,)).rowcount

        return self._db.writer.call(op)


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


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("background datastore write failed: %s", exc)


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
        self._writer = _Writer(self.path, self._setup)
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
        self._reads = _Reader(self.path, _reader_setup)
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


GC_BATCH = 1000
"""Expired rows deleted per statement by a GC pass (one writer transaction holds a few)."""


def _delete_expired(
    conn: sqlite3.Connection,
    acct: Accounting,
    cutoff: float,
    limit: int | None,
    select: str,
    delete: str,
) -> int:
    """Delete rows received before ``cutoff``, oldest first, at most ``limit``, in batches.

    ``select`` yields ``(*delete parameters, sender, size)`` per row; each deleted row
    is refunded to its sender's account. Returns the number of rows deleted.
    """
    removed = 0
    while limit is None or removed < limit:
        batch = GC_BATCH if limit is None else min(GC_BATCH, limit - removed)
        rows = conn.execute(select, (cutoff, batch)).fetchall()
        if not rows:
            break
        conn.executemany(delete, [tuple(row[:-2]) for row in rows])
        for *_, sender, size in rows:
            acct.charge(bytes(sender), -1, -int(size))
        removed += len(rows)
    return removed
