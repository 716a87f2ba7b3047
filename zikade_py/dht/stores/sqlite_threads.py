"""The two threads behind the SQLite datastore: the writer with its group commit, and
the reader that serves the event loop's reads (see :mod:`.sqlite`).

Writes never run on the caller's thread: one writer thread owns the write
connection and runs the operations in the order they were submitted. Operations
queued while a commit is in progress are committed together (group commit, one
fsync for all; go's provider manager batches writes the same way), so the event
loop never waits for the disk. A future completes only once its transaction is
committed, so a record acknowledged after awaiting it survives a crash or power loss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from zikade_py.dht.stores.base import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_GROUP: Final = 512
"""Operations committed in one transaction at most (go batches 256 provider writes)."""


class _Op:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[object] = concurrent.futures.Future()


def _fail(op: _Op, exc: BaseException) -> None:
    if not op.future.done():
        op.future.set_exception(exc)


class WriterThread:
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


class ReaderThread(WriterThread):
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


def reader_setup(conn: sqlite3.Connection) -> None:
    """The reader thread's connection settings: unlike the loop, it may wait a little."""
    conn.execute("PRAGMA busy_timeout=1000")  # this thread may wait; the loop does not


class SharedDb:
    """What the three stores share: the writer, the read thread and the caller-thread
    read connection."""

    __slots__ = ("reader", "reads", "writer")

    def __init__(
        self, reader: sqlite3.Connection, writer: WriterThread, reads: ReaderThread
    ) -> None:
        self.reader = reader
        """The caller-thread connection of the blocking reads (tools, tests)."""
        self.writer = writer
        self.reads = reads
        """The read thread behind the ``*_async`` reads (the event loop's)."""


def log_failure(future: concurrent.futures.Future[Any]) -> None:
    """Done-callback for fire-and-forget writes: nobody awaits them, so say when one fails."""
    exc = future.exception()
    if exc is not None:
        log.warning("background datastore write failed: %s", exc)
