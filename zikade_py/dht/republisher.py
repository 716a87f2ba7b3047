"""Re-announces the content we provide before the network forgets it.

Provider records expire after 48 h on the peers that hold them, and the set of
peers closest to a key drifts as nodes come and go, so a provider announces
again every 22 h (spec SHOULD; go's reprovider; WIRE.md §8.8). The provider
store keeps our keys with the time of their last announcement, so a restarted
node picks up where it left off: keys not announced for 22 h are due at once.

Value records are not republished here: the ``/ipns/`` publisher re-signs and
puts its record itself (as Kubo's IPNS republisher does), and ``/pk/`` records
are derivable from the key they name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from zikade_py.dht.stores.base import REPUBLISH_INTERVAL, ProviderStore

log = logging.getLogger(__name__)

CHECK_INTERVAL = 3600.0
"""Seconds between looks at which keys are due (go's reprovider wakes hourly too)."""

INITIAL_DELAY = 60.0
"""Seconds after start before the first look, so bootstrap can fill the routing table."""


class Republisher:
    """Calls ``announce(key)`` for each of our keys last announced ``interval`` ago or more."""

    def __init__(
        self,
        providers: ProviderStore,
        announce: Callable[[bytes], Awaitable[object]],
        *,
        interval: float = REPUBLISH_INTERVAL,
        check_interval: float = CHECK_INTERVAL,
        initial_delay: float = INITIAL_DELAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self._announce = announce
        self._interval = interval
        self._check_interval = check_interval
        self._initial_delay = initial_delay
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.announced = 0
        """Keys announced so far."""
        self.failed = 0
        """Announcements that raised."""

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="republisher"
            )

    async def close(self) -> None:
        """Stop the loop and wait for it (an announcement in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        """Announce every due key now; return how many were announced."""
        done = 0
        for key in self._providers.list_local_due(self._clock(), self._interval):
            try:
                await self._announce(key)
            except Exception as exc:
                self.failed += 1
                log.warning("re-announcing %s failed: %s", key.hex(), exc)
                continue
            self._providers.add_local(key, self._clock())
            self.announced += 1
            done += 1
        return done

    async def _run(self) -> None:
        await asyncio.sleep(self._initial_delay)
        while True:
            await self.run_once()
            await asyncio.sleep(self._check_interval)


__all__ = ["CHECK_INTERVAL", "INITIAL_DELAY", "Republisher"]
