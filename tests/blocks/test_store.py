"""Both blockstores honour one contract: get/has/put/delete, pins, size limit and GC;
the file store keeps blocks and pins across a reopen and cleans up unfinished writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zikade_py.blocks import (
    Blockstore,
    BlockstoreFullError,
    FileBlockstore,
    MemoryBlockstore,
    StoreClosedError,
)
from zikade_py.blocks import cid as cids


def block(n: int, size: int = 100) -> tuple[bytes, bytes]:
    data = bytes([n % 256]) * size + n.to_bytes(4, "big")
    return cids.make(data), data


@pytest.fixture(params=["memory", "files"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    opened: list[Blockstore] = []

    async def make(max_bytes: int | None = None) -> Blockstore:
        store: Blockstore
        if request.param == "memory":
            store = MemoryBlockstore(max_bytes)
        else:
            store = await FileBlockstore.open(tmp_path / f"b{len(opened)}", max_bytes, sync=False)
        opened.append(store)
        return store

    yield make
    for s in opened:
        await s.close()


async def test_put_get_has_delete(make_store) -> None:  # type: ignore[no-untyped-def]
    store = await make_store()
    c, data = block(1)
    assert await store.get(c) is None and not store.has(c)
    await store.put(c, data)
    assert await store.get(c) == data and store.has(c) and store.size_of(c) == len(data)
    v0 = cids.make(data, cids.DAG_PB, version=0)
    assert store.has(v0), "CIDv0 and v1 of the same multihash are one block"
    await store.put(c, data)
    assert store.stat().blocks == 1 and store.stat().bytes == len(data)
    assert await store.delete(c)
    assert not await store.delete(c)
    assert store.stat().blocks == 0 and store.stat().bytes == 0


async def test_gc_keeps_pinned_blocks(make_store) -> None:  # type: ignore[no-untyped-def]
    store = await make_store()
    pinned = [block(i) for i in range(3)]
    loose = [block(i) for i in range(3, 6)]
    await store.put_many(pinned, pin=pinned[0][0])
    await store.put_many(loose)
    assert store.is_pinned(pinned[1][0]) and not store.is_pinned(loose[0][0])
    result = await store.gc()
    assert result.blocks == 3 and result.bytes == sum(len(d) for _, d in loose)
    assert all(store.has(c) for c, _ in pinned)
    assert not any(store.has(c) for c, _ in loose)
    assert await store.unpin(pinned[0][0])
    assert not await store.unpin(pinned[0][0])
    assert (await store.gc()).blocks == 3
    assert store.stat().blocks == 0


async def test_overlapping_pins(make_store) -> None:  # type: ignore[no-untyped-def]
    store = await make_store()
    a, b = block(1), block(2)
    await store.put_many([a, b], pin=b"root-1")
    await store.pin(b"root-2", [b[0]])
    await store.unpin(b"root-1")
    await store.gc()
    assert store.has(b[0]) and not store.has(a[0])
    assert store.pins() == [b"root-2"]


async def test_size_limit_evicts_oldest_unpinned_then_refuses(make_store) -> None:  # type: ignore[no-untyped-def]
    store = await make_store(max_bytes=350)
    b1, b2, b3, b4 = (block(i) for i in range(1, 5))  # 104 bytes each
    await store.put(*b1, pin=b1[0])
    await store.put(*b2)
    await store.put(*b3)
    await store.put(*b4)  # 416 > 350: the oldest unpinned (b2) goes
    assert store.has(b1[0]) and not store.has(b2[0]) and store.has(b3[0]) and store.has(b4[0])
    assert store.stat().bytes <= 350
    await store.pin(b"r", [b3[0], b4[0]])
    with pytest.raises(BlockstoreFullError):
        await store.put(*block(9))
    assert not store.has(block(9)[0]), "a refused put stores nothing"
    assert store.stat().bytes <= 350


async def test_gc_to_target(make_store) -> None:  # type: ignore[no-untyped-def]
    store = await make_store()
    blocks = [block(i) for i in range(5)]
    for b in blocks:
        await store.put(*b)
    await store.gc(target_bytes=250)
    assert store.stat().bytes <= 250
    assert store.has(blocks[-1][0]) and not store.has(blocks[0][0]), "oldest go first"


async def test_file_store_survives_reopen(tmp_path: Path) -> None:
    store = await FileBlockstore.open(tmp_path)
    a, b = block(1), block(2)
    await store.put_many([a], pin=a[0])
    await store.put(*b)
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.get(a[0])
    shard = next(p for p in tmp_path.iterdir() if p.is_dir())
    (shard / "deadbeef.1.2.tmp").write_bytes(b"half a block")
    again = await FileBlockstore.open(tmp_path)
    try:
        assert await again.get(a[0]) == a[1] and await again.get(b[0]) == b[1]
        assert again.is_pinned(a[0]) and not again.is_pinned(b[0])
        assert again.stat().blocks == 2
        assert not (shard / "deadbeef.1.2.tmp").exists(), "unfinished writes are cleaned up"
    finally:
        await again.close()


async def test_a_torn_cached_block_is_dropped_not_served(tmp_path: Path) -> None:
    store = await FileBlockstore.open(tmp_path)
    cached, pinned = block(1), block(2)
    await store.put(*cached)
    await store.put(*pinned, pin=pinned[0])
    for c, _ in (cached, pinned):
        path = next(tmp_path.rglob(cids.multihash_of(c).hex()))
        path.write_bytes(b"torn")
    assert await store.get(cached[0]) is None and not store.has(cached[0])
    assert await store.get(pinned[0]) == b"torn", "pinned blocks were fsynced: not re-hashed"
    await store.close()
