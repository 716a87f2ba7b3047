"""Re-announces what we put into the DHT before the network forgets it.

Provider records expire after 48 h on the peers that hold them, value records
are dropped 48 h after they were received (go ``MaxRecordAge``), and the set of
peers closest to a key drifts as nodes come and go. So every 22 h we announce
again (spec SHOULD; go's reprovider; WIRE.md §8.8):

* **providers** — the keys we provide, from the provider store (persistent with
  a repo: a restarted node picks up where it left off, keys not announced for
  22 h are due at once), through :class:`ProviderKeys`;
* **values** — the records we put with ``put_value``, through
  :class:`LocalRecords` (in memory: after a restart only records put again are
  republished; an ``/ipns/`` publisher re-signs and puts its record itself).

One :class:`Republisher` class serves both: it asks a :class:`DueKeys` source
which keys were last announced an interval ago, calls the announce hook for
each and marks them. Time is an argument (:meth:`Republisher.run_once` takes
``now``), so tests drive it with a clock value instead of sleeping 22 h.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from zikade_py.dht.stores.base import REPUBLISH_INTERVAL, ProviderStore

log = logging.getLogger(__name__)

CHECK_INTERVAL = 3600.0
"""Seconds between looks at which keys are due (go's reprovider wakes hourly too)."""

INITIAL_DELAY = 60.0
"""Seconds after start before the first look, so bootstrap can fill the routing table."""

Announce = Callable[[bytes, float], Awaitable[object | None]]
"""Announces one key again at time ``now``; returns ``None`` when there is nothing left to
announce (the record is gone), which retires the key instead of marking it."""


class DueKeys(Protocol):
    """Where a republisher finds the keys to announce again, and records that it did.

    Both are awaited on the event loop: a store on disk answers from its threads."""

    async def list_due_async(self, now: float, interval: float) -> list[bytes]:
        """Keys last announced ``interval`` or longer before ``now``, oldest first."""
        ...

    async def mark_async(self, key: bytes, now: float) -> None:
        """``key`` was announced at ``now``."""
        ...


class ProviderKeys:
    """The keys we provide, as the provider store remembers them (:class:`DueKeys`)."""

    __slots__ = ("_store",)

    def __init__(self, store: ProviderStore) -> None:
        self._store = store

    async def list_due_async(self, now: float, interval: float) -> list[bytes]:
        """Our provided keys announced ``interval`` ago or longer (the store's read thread)."""
        return await self._store.list_local_due_async(now, interval)

    async def mark_async(self, key: bytes, now: float) -> None:
        """Record the announcement time in the store (committed by its writer thread)."""
        await self._store.add_local_async(key, now)


class LocalRecords:
    """The value record keys we put, with the time of their last put (:class:`DueKeys`).

    Only keys live here, never values: the republisher re-reads the record from
    the value store, so a record replaced by a better one is republished as it is now.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[bytes, float] = {}

    def add(self, key: bytes, now: float) -> None:
        """We put ``key`` at ``now`` (a later put moves its next republish)."""
        self._last[key] = now

    def discard(self, key: bytes) -> None:
        """Stop republishing ``key``."""
        self._last.pop(key, None)

    def list_due(self, now: float, interval: float) -> list[bytes]:
        """Keys last put ``interval`` or longer before ``now``, oldest first."""
        due = [(t, k) for k, t in self._last.items() if now - t >= interval]
        return [k for _, k in sorted(due)]

    def mark(self, key: bytes, now: float) -> None:
        """``key`` was put again at ``now`` (ignored if it was discarded meanwhile)."""
        if key in self._last:
            self._last[key] = now

    async def list_due_async(self, now: float, interval: float) -> list[bytes]:
        """:meth:`list_due` (:class:`DueKeys`)."""
        return self.list_due(now, interval)

    async def mark_async(self, key: bytes, now: float) -> None:
        """:meth:`mark` (:class:`DueKeys`)."""
        self.mark(key, now)

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._last))

    def __len__(self) -> int:
        return len(self._last)


class Republisher:
    """Calls ``announce(key, now)`` for each key of ``keys`` that is due (module docstring)."""

    def __init__(
        self,
        keys: DueKeys,
        announce: Announce,
        *,
        interval: float = REPUBLISH_INTERVAL,
        check_interval: float = CHECK_INTERVAL,
        initial_delay: float = INITIAL_DELAY,
        clock: Callable[[], float] = time.time,
        name: str = "republisher",
    ) -> None:
        self._keys = keys
        self._announce = announce
        self._interval = interval
        self._check_interval = check_interval
        self._initial_delay = initial_delay
        self._clock = clock
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.announced = 0
        """Keys announced so far."""
        self.failed = 0
        """Announcements that raised (the key stays due and is tried at the next look)."""
        self.retired = 0
        """Keys dropped because their record was gone."""

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Stop the loop and wait for it (an announcement in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self, now: float | None = None, *, interval: float | None = None) -> int:
        """Announce every key due at ``now`` (default: the clock); return how many were.

        ``interval`` overrides the republish interval for this pass (``0``: every key,
        ``zikade provide reprovide``)."""
        at = self._clock() if now is None else now
        done = 0
        due = self._interval if interval is None else interval
        for key in await self._keys.list_due_async(at, due):
            try:
                result = await self._announce(key, at)
            except Exception as exc:
                self.failed += 1
                log.warning("%s: announcing %s failed: %s", self._name, key.hex(), exc)
                continue
            if result is None:
                self.retired += 1
                continue
            await self._keys.mark_async(key, at)
            self.announced += 1
            done += 1
        return done

    async def _run(self) -> None:
        await asyncio.sleep(self._initial_delay)
        while True:
            await self.run_once()
            await asyncio.sleep(self._check_interval)


__all__ = [
    "CHECK_INTERVAL",
    "INITIAL_DELAY",
    "Announce",
    "DueKeys",
    "LocalRecords",
    "ProviderKeys",
    "Republisher",
]
