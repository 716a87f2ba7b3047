"""Garbage collection of expired provider and value rows, in bounded batches so one
writer transaction never holds the file for long (:mod:`.sqlite`)."""

from __future__ import annotations

import sqlite3

from zikade_py.dht.stores.limits import Accounting

GC_BATCH = 1000
"""Expired rows deleted per statement by a GC pass (one writer transaction holds a few)."""


def delete_expired(
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
