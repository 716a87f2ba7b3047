"""The sweep's key store: memory and SQLite behave alike (sorted ranges, pending, schedule)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from zikade_py.core.key import KEY_BITS
from zikade_py.core.sweep_region import Region
from zikade_py.dht.stores import SqliteDatastore
from zikade_py.dht.stores.provide_keys import MemoryProvideKeys, ProvideKeyStore
from zikade_py.dht.stores.sqlite_provide import CHUNK, SqliteProvideKeys


def rows(n: int, tag: str = "k") -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        mh = b"\x12\x20" + hashlib.sha256(f"{tag}{i}".encode()).digest()
        out.append((hashlib.sha256(mh).digest(), mh))
    return out


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProvideKeyStore]:
    if request.param == "memory":
        yield MemoryProvideKeys()
        return
    ds = SqliteDatastore(tmp_path / "datastore.sqlite")
    try:
        yield SqliteProvideKeys(ds)
    finally:
        ds.close()


async def test_add_reports_new_keys_and_ranges_are_sorted(store: ProvideKeyStore) -> None:
    data = rows(300)
    assert len(await store.add(data[:200], pending=True)) == 200
    new = await store.add(data[100:], pending=False)
    assert sorted(new) == sorted(data[200:])
    assert await store.count() == 300
    everything = await store.range(0, 1 << KEY_BITS)
    assert everything == sorted(data)
    for region in (Region.parse("0"), Region.parse("1"), Region.parse("0110"), Region.parse("")):
        got = await store.range(region.lo, region.hi)
        want = sorted(r for r in data if region.contains(int.from_bytes(r[0], "big")))
        assert got == want


async def test_pending_until_announced(store: ProvideKeyStore) -> None:
    data = rows(50, "p")
    await store.add(data[:30], pending=True)
    await store.add(data[30:], pending=False)
    assert sorted(await store.pending(1000)) == sorted(data[:30])
    assert len(await store.pending(10)) == 10
    await store.mark_announced([p for p, _ in data[:20]])
    assert sorted(await store.pending(1000)) == sorted(data[20:30])


async def test_ranges_are_read_in_pages_and_pending_ones_alone(store: ProvideKeyStore) -> None:
    """The sweep reads a region (or a burst's pending keys) a page at a time: ``limit``
    keys from a start position on, never the whole range at once."""
    data = rows(120, "r")
    await store.add(data[:70], pending=True)
    await store.add(data[70:], pending=False)
    assert await store.count(pending=True) == 70 and await store.count() == 120
    pending = sorted(data[:70])
    for want in (sorted(data), pending):
        only = want is pending
        got: list[tuple[bytes, bytes]] = []
        start = 0
        while True:
            page = await store.range(start, 1 << KEY_BITS, limit=25, pending=only)
            assert len(page) <= 25
            got += page
            if len(page) < 25:
                break
            start = int.from_bytes(page[-1][0], "big") + 1
        assert got == want
    half = Region.parse("1")
    assert await store.range(half.lo, half.hi, pending=True) == [
        r for r in pending if half.contains(int.from_bytes(r[0], "big"))
    ]
    await store.mark_announced([p for p, _ in data[:10]])
    assert await store.count(pending=True) == 60


async def test_schedule_round_trip_and_clear(store: ProvideKeyStore) -> None:
    assert await store.load_schedule() == (None, [])
    await store.save_schedule(100.0, [("01", None, 100.0), ("10", 150.0, 100.0)], [])
    await store.save_schedule(100.0, [("01", 200.0, 100.0), ("0", None, 210.0)], ["10"])
    start, regions = await store.load_schedule()
    assert start == 100.0
    assert sorted(regions) == [("0", None, 210.0), ("01", 200.0, 100.0)]
    await store.add(rows(10), pending=True)
    assert await store.clear() == 10
    assert await store.count() == 0 and await store.load_schedule() == (None, [])


async def test_sqlite_adds_in_chunks_and_keeps_them_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "datastore.sqlite"
    data = rows(CHUNK + 7, "many")
    ds = SqliteDatastore(path)
    try:
        keys = SqliteProvideKeys(ds)
        assert len(await keys.add(data, pending=True)) == len(data)
        await keys.save_schedule(5.0, [("1", 6.0, 5.0)], [])
    finally:
        ds.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM sweep_keys").fetchone()[0] == len(data)
    finally:
        db.close()
    ds = SqliteDatastore(path)
    try:
        keys = SqliteProvideKeys(ds)
        assert await keys.count() == len(data)
        assert await keys.load_schedule() == (5.0, [("1", 6.0, 5.0)])
    finally:
        ds.close()
