"""dag-pb is strict both ways; import then export gives the bytes back for every shape
of tree; the exporter refuses corrupt DAGs, directories and missing blocks."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.blocks import MemoryBlockstore
from zikade_py.blocks import cid as cids
from zikade_py.unixfs import (
    DEFAULT_PROFILE,
    BlockNotFoundError,
    CorruptDagError,
    NotAFileError,
    Profile,
    StoreSource,
    cat,
    dagpb,
    import_bytes,
    import_stream,
)
from zikade_py.unixfs.pb import unixfs_pb2


def test_dagpb_links_come_before_data_and_empty_names_are_kept() -> None:
    node = dagpb.PBNode((dagpb.PBLink(b"\x01\x55\x12\x01a", "", 5),), b"\x08\x02")
    raw = dagpb.encode(node)
    assert raw[0] == 0x12 and raw.endswith(b"\x0a\x02\x08\x02")
    assert b"\x12\x00" in raw  # Name "" is written, as @ipld/dag-pb does
    assert dagpb.decode(raw) == node


@pytest.mark.parametrize(
    "bad",
    [
        b"\x0a\x00\x12\x02\x0a\x00",  # a link after Data
        b"\x0a\x00\x0a\x00",  # Data twice
        b"\x1a\x00",  # unknown field 3
        b"\x12\x00",  # link without hash
        b"\x12\x04\x12\x00\x0a\x00",  # link fields out of order
        b"\x12\x05\x0a\x01",  # runs past the end
    ],
)
def test_dagpb_rejects_non_canonical(bad: bytes) -> None:
    with pytest.raises(dagpb.DagPBError):
        dagpb.decode(bad)


@given(st.binary(max_size=200))
def test_dagpb_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(dagpb.DagPBError):
        dagpb.decode(data)


async def roundtrip(data: bytes, profile: Profile) -> bytes:
    store = MemoryBlockstore()
    blocks = import_bytes(data, profile)
    await store.put_many([(b.cid, b.data) for b in blocks])
    return b"".join([c async for c in cat(blocks[-1].cid, StoreSource(store))])


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 40, 41, 160, 161, 999])
async def test_roundtrip_shapes(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert await roundtrip(data, Profile("t", 10, 4)) == data


async def test_single_chunk_is_its_own_raw_root() -> None:
    blocks = import_bytes(b"abc")
    assert len(blocks) == 1 and cids.codec_of(blocks[0].cid) == cids.RAW


async def test_import_stream_equals_import_bytes() -> None:
    data = random.Random(1).randbytes(3 * DEFAULT_PROFILE.chunk_size + 5)

    async def reads():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    streamed = [b async for b in import_stream(reads())]
    assert streamed == import_bytes(data)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300), st.integers(2, 6), st.integers(1, 20))
async def test_roundtrip_property(data: bytes, links: int, chunk: int) -> None:
    assert await roundtrip(data, Profile("p", chunk, links)) == data


async def test_missing_block_is_reported() -> None:
    blocks = import_bytes(b"x" * 100, Profile("t", 10, 4))
    store = MemoryBlockstore()
    kept = [*blocks[:-2], blocks[-1]]
    await store.put_many([(b.cid, b.data) for b in kept])
    with pytest.raises(BlockNotFoundError):
        _ = [c async for c in cat(blocks[-1].cid, StoreSource(store))]


async def test_lying_sizes_are_corrupt() -> None:
    leaf = cids.make(b"abc")
    meta = unixfs_pb2.Data(Type=unixfs_pb2.Data.File, filesize=5, blocksizes=[5])
    node = dagpb.encode(dagpb.PBNode((dagpb.PBLink(leaf, "", 3),), meta.SerializeToString()))
    root = cids.make(node, cids.DAG_PB)
    store = MemoryBlockstore()
    await store.put_many([(leaf, b"abc"), (root, node)])
    with pytest.raises(CorruptDagError):
        _ = [c async for c in cat(root, StoreSource(store))]


async def test_directory_is_not_a_file() -> None:
    meta = unixfs_pb2.Data(Type=unixfs_pb2.Data.Directory)
    node = dagpb.encode(dagpb.PBNode((), meta.SerializeToString()))
    root = cids.make(node, cids.DAG_PB)
    store = MemoryBlockstore()
    await store.put(root, node)
    with pytest.raises(NotAFileError):
        _ = [c async for c in cat(root, StoreSource(store))]
