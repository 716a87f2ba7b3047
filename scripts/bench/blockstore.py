#!/usr/bin/env python3
"""Blocks as files vs blocks as SQLite rows (the choice behind zikade_py/blocks/filestore.py);
prints ONE JSON object.

Writes ``--blocks`` random blocks of ``--size`` bytes into (a) the FileBlockstore and
(b) a SQLite table in WAL mode (``synchronous=FULL``, 16 blocks per transaction, as
a batched importer would commit), both with durability on (fsync), then reads
them all back. Reports MiB/s and the process CPU seconds of each phase.

Usage: ``.venv/bin/python scripts/bench/blockstore.py [--blocks 200] [--size 262144]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from zikade_py.blocks import FileBlockstore
from zikade_py.blocks import cid as cids


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def phase(total: int, wall: float, cpu_s: float) -> dict[str, float]:
    return {"mib_s": round(total / 2**20 / wall, 1), "cpu_s": round(cpu_s, 3),
            "wall_s": round(wall, 3)}


async def files(base: Path, blocks: list[tuple[bytes, bytes]], total: int) -> dict[str, object]:
    store = await FileBlockstore.open(base / "files")
    t, c = time.perf_counter(), cpu()
    for i in range(0, len(blocks), 16):
        await store.put_many(blocks[i:i + 16])
    put = phase(total, time.perf_counter() - t, cpu() - c)
    t, c = time.perf_counter(), cpu()
    for k, _ in blocks:
        await store.get(k)
    get = phase(total, time.perf_counter() - t, cpu() - c)
    await store.close()
    return {"put": put, "get": get}


def sqlite(base: Path, blocks: list[tuple[bytes, bytes]], total: int) -> dict[str, object]:
    db = sqlite3.connect(base / "blocks.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE b (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    t, c = time.perf_counter(), cpu()
    for i in range(0, len(blocks), 16):
        with db:
            db.executemany("INSERT INTO b VALUES (?, ?)",
                           [(cids.multihash_of(k), v) for k, v in blocks[i:i + 16]])
    put = phase(total, time.perf_counter() - t, cpu() - c)
    t, c = time.perf_counter(), cpu()
    for k, _ in blocks:
        db.execute("SELECT v FROM b WHERE k = ?", (cids.multihash_of(k),)).fetchone()
    get = phase(total, time.perf_counter() - t, cpu() - c)
    db.close()
    return {"put": put, "get": get}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--size", type=int, default=262144)
    args = ap.parse_args()
    blocks = []
    for _ in range(args.blocks):
        data = os.urandom(args.size)
        blocks.append((cids.make(data), data))
    total = args.blocks * args.size
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = {
            "blocks": args.blocks, "block_size": args.size,
            "files": asyncio.run(files(base, blocks, total)),
            "sqlite_wal": sqlite(base, blocks, total),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
