"""The event loop never waits for SQLite: the republisher and the peer book (start-up and
bootstrap) use the store's writer and reader threads, like the record stores do.

A guard wraps the datastore's blocking handles (the caller-thread connection and the
blocking ``call`` of both threads) and records every use from a thread that runs an
event loop; the tests assert there was none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zikade_py.dht import Node
from zikade_py.dht.republisher import ProviderKeys, Republisher
from zikade_py.dht.stores import sqlite as sqlite_store
from zikade_py.dht.stores.sqlite import DATASTORE_FILENAME, SqliteDatastore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import loopback_config

pytestmark = pytest.mark.timeout(30)

_BLOCKING = frozenset({"execute", "executemany", "executescript", "call"})


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopGuard:
    """Forwards to ``inner``; notes each blocking method fetched on an event-loop thread."""

    def __init__(self, inner: Any, uses: list[str], what: str) -> None:
        self._inner, self._uses, self._what = inner, uses, what

    def __getattr__(self, name: str) -> Any:
        if name in _BLOCKING and _on_loop():
            self._uses.append(f"{self._what}.{name}")
        return getattr(self._inner, name)


def guard(db: Any, uses: list[str]) -> None:
    db.reader = LoopGuard(db.reader, uses, "reader")
    db.writer = LoopGuard(db.writer, uses, "writer")
    db.reads = LoopGuard(db.reads, uses, "reads")


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every datastore opened during the test is guarded; yields the uses seen."""
    uses: list[str] = []
    real = sqlite_store._Db.__init__

    def init(self: Any, *args: Any) -> None:
        real(self, *args)
        guard(self, uses)

    monkeypatch.setattr(sqlite_store._Db, "__init__", init)
    yield uses


async def test_provider_republisher_reads_and_marks_off_the_loop(tmp_path: Path) -> None:
    t0 = 1_000_000.0
    with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
        for i in range(5):
            ds.providers.add_local(b"key%d" % i, t0)
        uses: list[str] = []
        guard(ds.providers._db, uses)
        announced: list[bytes] = []

        async def announce(key: bytes, now: float) -> object:
            announced.append(key)
            return True

        rep = Republisher(ProviderKeys(ds.providers), announce, interval=10.0)
        assert await rep.run_once(t0 + 10.0) == 5
        assert uses == []
        assert sorted(announced) == [b"key%d" % i for i in range(5)]
        assert await ds.providers.list_local_due_async(t0 + 15.0, 10.0) == []  # marked


async def test_peer_book_is_read_off_the_loop_at_start_and_bootstrap(
    tmp_path: Path, guarded: list[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    gone = PeerID.from_public_key(PrivateKey.generate().public_key)
    addr = Multiaddr.parse("/ip4/127.0.0.1/tcp/9")  # discard port: nothing listens
    # Filled before the node runs (a blocking write from a thread without a loop).
    await asyncio.to_thread(_fill_book, repo / DATASTORE_FILENAME, gone, addr)
    guarded.clear()
    node = Node(loopback_config(repo=repo, bootstrap=[]))
    try:
        await node.start()
        assert node.host.peerstore.addrs(gone) == [addr]  # loaded from the book
        result = await node.bootstrap(timeout=2.0)
        assert [text for text, _ in result.failed] == [str(gone)]  # the book's peer was tried
    finally:
        await node.close()
    assert guarded == []


def _fill_book(path: Path, peer: PeerID, addr: Multiaddr) -> None:
    with SqliteDatastore(path) as ds:
        ds.peers.add_addrs(peer, [addr], 3600.0, time.time())
