"""The node's side of the reprovide sweep: keys on disk, regions loaded, progress kept.

The sweep itself is a machine in the core (``core/sweep.py``), run by the
coordinator; this is its asyncio driver part, the way :class:`Republisher` is
the classic reprovider's:

* :meth:`SweepReprovider.provide` stores new keys (sorted by keyspace position,
  ``pending`` until their first announcement), :data:`ADD_BATCH` at a time,
  and shows each batch to the sweep, which counts them per region, schedules
  their regions and reads them back for their burst;
* the sweep's outputs arrive through :meth:`SweepReprovider.on_output`: a
  page of a region's keys is read with one range scan and fed back, a
  finished burst page clears its keys' ``pending`` flag, and every schedule
  change is written;
* :meth:`SweepReprovider.start` gives a restarted node its schedule back
  (regions already done this cycle wait for their slot, overdue ones go first)
  and tells the sweep how many keys a crash left pending (it reads them back).

So the keys in memory at once are one batch of a ``provide`` and the pages
the sweep works on, however many are provided.

The core's clock is ``time.monotonic``; the schedule is stored in wall-clock
seconds (converted with the offset measured at start), so it survives a
reboot too. Store writes are started in the order the outputs come and run
on the datastore's writer thread; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Any, Final, assert_never

from zikade_py.core.key import Key
from zikade_py.core.sweep_events import (
    SweepAddKeys,
    SweepClear,
    SweepInput,
    SweepKeys,
    SweepLoadKeys,
    SweepOutput,
    SweepRegionDone,
    SweepReprovideNow,
    SweepRestore,
    SweepScheduleChanged,
    SweepStats,
)
from zikade_py.core.sweep_region import Region
from zikade_py.dht.stores.provide_keys import KeyRow, ProvideKeyStore

log = logging.getLogger(__name__)

ADD_BATCH: Final = 20_000
"""Keys stored and handed to the sweep per step when many are provided at once."""


def key_of(row: KeyRow) -> Key:
    """The core key of a stored ``(position, multihash)`` row."""
    return Key(row[0], row[1])


class SweepReprovider:
    """Keeps the sweep's keys and schedule (see the module docstring)."""

    def __init__(
        self,
        store: ProvideKeyStore,
        notify: Callable[[SweepInput], None],
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
        stats: Callable[[float], SweepStats | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._notify = notify
        self._spawn = spawn
        self._stats = stats
        self._clock = clock
        self._offset = wall() - clock()
        """Wall-clock seconds minus core seconds."""
        self._writes: asyncio.Task[None] | None = None
        self._queue: list[Coroutine[Any, Any, Any]] = []
        self.regions_done = 0
        """Regions reprovided in full since start."""
        self.bursts_done = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Give the sweep its stored schedule back and re-announce interrupted first provides."""
        cycle_start, rows = await self.store.load_schedule()
        pending = await self.store.count(pending=True)
        off = self._offset
        regions = tuple(
            (Region.parse(p), None if last is None else last - off, added - off)
            for p, last, added in rows
        )
        start = None if cycle_start is None or not rows else cycle_start - off
        if start is not None or pending:
            self._notify(SweepRestore(start, regions if start is not None else (), pending))

    async def close(self) -> None:
        """Finish the schedule writes already asked for (before the datastore closes)."""
        task = self._writes
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        for coro in self._queue:
            coro.close()
        self._queue.clear()

    # -- the API -----------------------------------------------------------------------------

    async def provide(self, multihashes: Sequence[bytes], *, announced: bool = False) -> int:
        """Provide ``multihashes`` from now on; how many were new.

        New keys are announced in a burst soon, unless ``announced`` (a single
        ``provide`` just did it); keys we already provide change nothing.
        """
        count = 0
        for i in range(0, len(multihashes), ADD_BATCH):
            rows = [
                (Key.from_preimage(mh).digest, bytes(mh)) for mh in multihashes[i : i + ADD_BATCH]
            ]
            new = await self.store.add(rows, pending=not announced)
            if new:
                keys = tuple(key_of(r) for r in new)
                self._notify(SweepAddKeys(keys, burst=not announced, announced=announced))
            count += len(new)
        return count

    async def clear(self) -> int:
        """Stop providing everything; how many keys were dropped."""
        self._notify(SweepClear())
        return await self.store.clear()

    def reprovide_now(self) -> None:
        """Start a full reprovide of every region."""
        self._notify(SweepReprovideNow())

    async def stat(self) -> dict[str, object]:
        """What ``zikade provide stat`` prints: the sweep's counters and the key count."""
        now = self._clock()
        keys = await self.store.count()
        stats = self._stats(now)
        out: dict[str, object] = {"strategy": "sweep", "keys": keys}
        if stats is None:
            out.update({"regions": 0, "network_size": None})
            return out
        data = asdict(stats)
        off = self._offset
        for name in ("cycle_start", "last_region_at", "next_region_at"):
            if data[name] is not None:
                data[name] = data[name] + off
        out.update(data)
        return out

    # -- the sweep's outputs -----------------------------------------------------------------

    def on_output(self, out: SweepOutput) -> None:
        """Carry out one output of the sweep (the driver's listener calls this)."""
        match out:
            case SweepLoadKeys(pending=True):
                # After the writes asked for so far (pages marked announced), so a page
                # of pending keys never holds keys that just had their announcement.
                self._write(self._load(out))
            case SweepLoadKeys(request_id=rid):
                self._spawn(self._load(out), f"sweep-load-{rid}")
            case SweepRegionDone():
                if out.burst and out.ok:
                    self.bursts_done += 1
                    self._write(self.store.mark_announced([k.digest for k in out.keys]))
                elif out.ok:
                    self.regions_done += 1
                if not out.ok:
                    log.info("sweep: region %r failed; retried later", str(out.region))
            case SweepScheduleChanged():
                off = self._offset
                added = [
                    (str(r), None if last is None else last + off, when + off)
                    for r, last, when in out.added
                ]
                removed = [str(r) for r in out.removed]
                self._write(self.store.save_schedule(out.cycle_start + off, added, removed))
            case _:
                assert_never(out)

    async def _load(self, out: SweepLoadKeys) -> None:
        region = out.region
        try:
            rows = await self.store.range(out.start, region.hi, out.limit, out.pending)
        except Exception:
            log.exception("sweep: reading the keys of region %r failed", str(region))
            self._notify(SweepKeys(out.request_id, (), ok=False))
            return
        self._notify(SweepKeys(out.request_id, tuple(key_of(r) for r in rows)))

    def _write(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run store writes one after the other, in the order the outputs came."""
        self._queue.append(coro)
        if self._writes is None or self._writes.done():
            self._writes = self._spawn(self._drain(), "sweep-store-writes")

    async def _drain(self) -> None:
        while self._queue:
            coro = self._queue.pop(0)
            try:
                await coro
            except Exception:
                log.exception("sweep: saving progress failed")


__all__ = ["ADD_BATCH", "SweepReprovider", "key_of"]
