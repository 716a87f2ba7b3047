"""Issue 9, DHT stores: limits per key, per sender and in total; GC in bounded batches;
SQLite writes off the event loop (group-committed), reads that never wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores import (
    MAX_RECORD_AGE,
    PROVIDER_VALIDITY,
    MemoryProviderStore,
    MemoryValueStore,
    ProviderStore,
    SqliteDatastore,
    ValueStore,
)
from zikade_py.dht.stores.limits import StoreFullError, StoreLimits
from zikade_py.dht.stores.sqlite import DATASTORE_FILENAME
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

T0 = 1_700_000_000.0
LIMITS = StoreLimits(
    max_providers_per_key=3,
    max_providers_per_peer=5,
    max_providers=12,
    max_values_per_peer=4,
    max_values=10,
    max_record_size=100,
)


def peer(n: int) -> PeerID:
    return PeerID.from_public_key(PrivateKey.from_seed(bytes([n]) * 32).public_key)


def info(n: int) -> PeerInfo:
    return PeerInfo(peer(n), (Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{4000 + n}"),))


def mh(i: int) -> bytes:
    return b"\x12\x20" + i.to_bytes(32, "big")


@pytest.fixture(params=["memory", "sqlite"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ProviderStore, ValueStore]]:
    if request.param == "memory":
        yield MemoryProviderStore(limits=LIMITS), MemoryValueStore(LIMITS)
    else:
        with SqliteDatastore(tmp_path / DATASTORE_FILENAME, limits=LIMITS) as ds:
            yield ds.providers, ds.values


def _refusal(fn: object, *args: object) -> str:
    with pytest.raises(StoreFullError) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value.reason


def test_providers_per_key_cap_but_refresh_passes(
    stores: tuple[ProviderStore, ValueStore],
) -> None:
    providers, _ = stores
    for n in range(3):
        providers.add(mh(1), info(n), T0, peer(n))
    assert _refusal(providers.add, mh(1), info(9), T0, peer(9)) == "per_key"
    providers.add(mh(1), info(0), T0 + 1, peer(0))  # a known provider refreshes
    assert {p.peer_id for p in providers.get(mh(1), T0 + 1)} == {peer(0), peer(1), peer(2)}
    providers.add(mh(2), info(9), T0, peer(9))  # the refused peer is fine elsewhere


def test_providers_per_sender_cap_leaves_room_for_others(
    stores: tuple[ProviderStore, ValueStore],
) -> None:
    providers, _ = stores
    for i in range(5):
        providers.add(mh(i), info(1), T0, peer(1))
    assert _refusal(providers.add, mh(99), info(1), T0, peer(1)) == "per_peer"
    assert providers.get(mh(99), T0) == []
    assert providers.sender_usage(peer(1)).records == 5
    providers.add(mh(99), info(2), T0, peer(2))  # others' records still accepted
    assert [p.peer_id for p in providers.get(mh(99), T0)] == [peer(2)]


def test_providers_total_cap_and_local_records_never_refused(
    stores: tuple[ProviderStore, ValueStore],
) -> None:
    providers, _ = stores
    for n in range(12):
        providers.add(mh(100 + n), info(n), T0, peer(n))
    assert providers.usage().records == 12
    assert _refusal(providers.add, mh(200), info(50), T0, peer(50)) == "total_records"
    providers.add(mh(200), info(51), T0)  # sender None: our own record
    assert providers.usage().records == 13


def test_gc_frees_room_and_runs_in_bounded_batches(
    stores: tuple[ProviderStore, ValueStore],
) -> None:
    providers, values = stores
    for i in range(5):
        providers.add(mh(i), info(1), T0, peer(1))
        values.put(b"/pk/%d" % i, b"v", T0, peer(1) if i < 4 else None)
    later = T0 + PROVIDER_VALIDITY + 1
    assert providers.gc(later, limit=2) == 2
    assert providers.gc(later, limit=2) == 2
    assert providers.gc(later, limit=2) == 1
    assert providers.gc(later, limit=2) == 0
    assert providers.usage().records == 0
    providers.add(mh(50), info(1), later, peer(1))  # the sender has room again
    assert values.gc(T0 + MAX_RECORD_AGE + 1, limit=3) == 3
    assert values.gc(T0 + MAX_RECORD_AGE + 1) == 2
    assert values.usage().records == 0 and values.sender_usage(peer(1)).records == 0


def test_values_per_sender_total_and_size_caps(stores: tuple[ProviderStore, ValueStore]) -> None:
    _, values = stores
    for i in range(4):
        values.put(b"/pk/a%d" % i, b"x" * 10, T0, peer(1))
    assert _refusal(values.put, b"/pk/a9", b"x", T0, peer(1)) == "per_peer"
    assert values.get(b"/pk/a9", T0) is None
    values.put(b"/pk/a0", b"y" * 10, T0 + 1, peer(1))  # replacing its own record passes
    assert _refusal(values.put, b"/pk/big", b"x" * 101, T0, peer(2)) == "too_large"
    for i in range(6):
        values.put(b"/pk/b%d" % i, b"x", T0, peer(10 + i))
    assert values.usage().records == 10
    assert _refusal(values.put, b"/pk/c", b"x", T0, peer(30)) == "total_records"
    assert values.put(b"/pk/mine", b"x", T0)  # ours: never refused


def test_sqlite_usage_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    with SqliteDatastore(path, limits=LIMITS) as ds:
        for i in range(5):
            ds.providers.add(mh(i), info(1), T0, peer(1))
        ds.values.put(b"/pk/a", b"v", T0, peer(1))
    with SqliteDatastore(path, limits=LIMITS) as ds:
        assert ds.providers.sender_usage(peer(1)).records == 5
        assert ds.values.sender_usage(peer(1)).records == 1
        with pytest.raises(StoreFullError):
            ds.providers.add(mh(77), info(1), T0, peer(1))


def test_sqlite_migrates_a_version_1_file(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE providers (key BLOB NOT NULL, peer BLOB NOT NULL, time_received REAL"
        " NOT NULL, addrs BLOB NOT NULL, addrs_time REAL NOT NULL, PRIMARY KEY (key, peer))"
        " WITHOUT ROWID;"
        "CREATE TABLE local_provides (key BLOB PRIMARY KEY, last_announced REAL NOT NULL)"
        " WITHOUT ROWID;"
        "CREATE TABLE records (key BLOB PRIMARY KEY, value BLOB NOT NULL, time_received REAL"
        " NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE peer_addrs (peer BLOB NOT NULL, addr BLOB NOT NULL, expires REAL NOT NULL,"
        " PRIMARY KEY (peer, addr)) WITHOUT ROWID;"
        "INSERT INTO records VALUES (x'2f706b2f61', x'76', 1700000000.0);"
        "PRAGMA user_version = 1;"
    )
    conn.close()
    with SqliteDatastore(path) as ds:
        assert ds.values.get(b"/pk/a", T0) == (b"v", T0)
        assert ds.values.usage().records == 1


async def test_sqlite_writes_leave_the_loop_running_and_are_group_committed(
    tmp_path: Path,
) -> None:
    with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
        ds.values.put(b"/pk/old", b"v", T0)
        gate = threading.Event()
        # Hold the writer thread, as a slow fsync would.
        held = ds._writer.submit(lambda conn: gate.wait(10))
        puts = [
            asyncio.ensure_future(ds.values.put_async(b"/pk/%d" % i, b"v", T0, peer(1)))
            for i in range(50)
        ]
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20 and not any(p.done() for p in puts)  # the loop was never blocked
        assert ds.values.get(b"/pk/old", T0) == (b"v", T0)  # reads do not wait for the writer
        assert ds.values.get(b"/pk/1", T0) is None  # not acknowledged, not visible
        commits = ds.commits
        gate.set()
        await asyncio.gather(*puts)
        held.result()
        assert ds.values.get(b"/pk/1", T0) == (b"v", T0)
        assert ds.commits - commits < 50  # the 50 puts shared transactions


async def test_sqlite_reader_never_waits_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    with SqliteDatastore(path) as ds:
        assert ds._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        ds.values.put(b"/pk/a", b"v", T0)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a second process holds the write lock
        try:
            pending = asyncio.ensure_future(ds.values.put_async(b"/pk/b", b"w", T0))
            for _ in range(10):
                await asyncio.sleep(0)
            assert not pending.done()
            assert ds.values.get(b"/pk/a", T0) == (b"v", T0)
            assert ds.providers.is_local(mh(1)) is False
        finally:
            other.execute("ROLLBACK")
            other.close()
        await pending
        assert ds.values.get(b"/pk/b", T0) == (b"w", T0)


async def test_a_refused_write_does_not_spoil_its_group(tmp_path: Path) -> None:
    with SqliteDatastore(tmp_path / DATASTORE_FILENAME, limits=LIMITS) as ds:
        gate = threading.Event()
        ds._writer.submit(lambda conn: gate.wait(10))
        results = [
            asyncio.ensure_future(ds.providers.add_async(mh(i), info(1), T0, peer(1)))
            for i in range(8)
        ]
        await asyncio.sleep(0)
        gate.set()
        done = await asyncio.gather(*results, return_exceptions=True)
        assert sum(isinstance(r, StoreFullError) for r in done) == 3
        assert sum(len(ds.providers.get(mh(i), T0)) for i in range(8)) == 5


async def test_a_waiter_that_leaves_does_not_spoil_its_group(tmp_path: Path) -> None:
    with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
        gate = threading.Event()
        ds._writer.submit(lambda conn: gate.wait(10))
        left = asyncio.ensure_future(ds.values.put_async(b"/pk/gone", b"v", T0))
        stays = asyncio.ensure_future(ds.values.put_async(b"/pk/stays", b"w", T0))
        await asyncio.sleep(0)
        left.cancel()  # e.g. its stream was reset while the write was queued
        gate.set()
        assert await stays  # committed and reported, not failed by the cancelled neighbour
        assert ds.values.get(b"/pk/stays", T0) == (b"w", T0)
