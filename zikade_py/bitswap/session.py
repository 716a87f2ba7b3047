"""An exchange session: one :class:`SessionLogic` driven in time, and GetBlocks.

A session is what ``zikade_py.session()`` scopes (BITSWAP.md §3): every
``get_blocks`` call inside it goes through one :class:`ExchangeSession`, so the
calls share their peers and a CID is wanted once however many callers want it.
The session performs its logic's actions on the exchange (want manager,
provider searches), keeps one timer at the logic's ``next_due()``, and on
``stop()`` cancels every want it holds (CANCEL goes out) and ends its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace

from zikade_py import telemetry
from zikade_py.bitswap import wire
from zikade_py.bitswap.config import ProviderFinder
from zikade_py.bitswap.notifier import BlockSubscription
from zikade_py.bitswap.session_logic import (
    Broadcast,
    CancelWants,
    FindProviders,
    SendWantBlock,
    SendWantHave,
    SessionLogic,
)
from zikade_py.dht.session import Session, SessionCancelledError

if TYPE_CHECKING:
    from zikade_py.bitswap.exchange import Bitswap

log = logging.getLogger(__name__)


class ExchangeSession:
    """A session's driver: feeds :class:`SessionLogic` and performs its actions."""

    def __init__(self, bitswap: Bitswap, sid: int, owner: Session | None) -> None:
        self.bitswap = bitswap
        self.id = sid
        self.owner = owner
        self.logic = SessionLogic(bitswap.config.session)
        self.trace_context = context.get_current()
        """The context the session was opened in: what it receives is traced there too."""
        self._wake = asyncio.Event()
        self._subs: set[BlockSubscription] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self._runner = asyncio.get_running_loop().create_task(
            self._run(), name=f"bitswap-session-{sid}"
        )

    def wake(self) -> None:
        """Inputs arrived: poll the logic."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self.perform(self.logic.poll())
            if self.closed:
                return
            due = self.logic.next_due()
            self._wake.clear()
            timeout = None if due is None else max(due - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self.logic.advance(time.monotonic())

    def perform(self, actions: Sequence[object]) -> None:
        """Turn the logic's actions into want-manager calls and provider searches."""
        wm = self.bitswap.wants
        for action in actions:
            match action:
                case SendWantBlock(peer, wanted):
                    self.bitswap.ensure_peer(peer)
                    wm.want(self.id, peer, wanted, wire.WantType.BLOCK)
                case SendWantHave(peer, wanted):
                    self.bitswap.ensure_peer(peer)
                    wm.want(self.id, peer, wanted, wire.WantType.HAVE)
                case Broadcast(wanted):
                    wm.broadcast(self.id, wanted)
                case CancelWants(gone):
                    wm.cancel(self.id, gone)
                    for cid in gone:
                        self.bitswap.route_remove(cid, self)
                case FindProviders(cid):
                    if not self.closed and self.bitswap.find_providers is not None:
                        self._spawn(self._find(cid))
        self.bitswap.flush_wants()

    async def _find(self, cid: bytes) -> None:
        finder = self.bitswap.find_providers
        assert finder is not None
        with telemetry.tracer().start_as_current_span("Bitswap.FindProviders") as span:
            span.set_attribute("session", self.id)
            try:
                await self._find_in_span(cid, finder)
            except Exception as exc:  # a failed search is retried on the next schedule
                log.debug("provider search failed: %r", exc)

    async def _find_in_span(self, cid: bytes, finder: ProviderFinder) -> None:
        found = 0
        span = trace.get_current_span()
        try:
            async with asyncio.timeout(self.bitswap.config.provider_timeout):
                async for peer, addrs in finder(cid):
                    if peer == self.bitswap.host.peer_id:
                        continue
                    if addrs:
                        self.bitswap.host.peerstore.add_addrs(peer, addrs, 600.0)
                    self.logic.add_peer(peer, time.monotonic())
                    self.wake()
                    found += 1
                    span.add_event("provider", {"peer": str(peer)})
                    if found >= self.bitswap.config.max_providers:
                        break
        finally:
            span.set_attribute("providers", found)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def get_blocks(self, wanted: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
        """GetBlocks: the blocks of ``wanted`` in order, fetched together."""
        if self.closed:
            raise SessionCancelledError("session closed")
        sub = self.bitswap.notifier.subscribe()
        self._subs.add(sub)
        try:
            for cid in wanted:
                self.bitswap.route_add(cid, self)
            missing = await sub.subscribe(wanted)
            missing_set = set(missing)
            for cid in wanted:
                if cid not in missing_set:
                    self.bitswap.route_remove(cid, self)
            window = self.bitswap.config.max_wants_per_call
            if missing:
                self.logic.want(missing[:window], time.monotonic())
                self.wake()
            next_want = window
            for cid in wanted:
                try:
                    data = await sub.future(cid)
                except asyncio.CancelledError:
                    if self.closed:
                        raise SessionCancelledError("session cancelled") from None
                    raise
                if cid in missing_set and next_want < len(missing):
                    self.logic.want([missing[next_want]], time.monotonic())
                    next_want += 1
                    self.wake()
                yield cid, data
        finally:
            left = [c for c in wanted if c in self.logic.wanted]
            sub.remove()
            self._subs.discard(sub)
            if left and not self.closed:
                self.logic.cancel(left, time.monotonic())
                self.wake()

    def stop(self) -> None:
        """Cancel every want of the session (CANCEL goes out) and stop its task."""
        if self.closed:
            return
        self.closed = True
        self.logic.cancel(self.logic.wanted, time.monotonic())
        for sub in list(self._subs):
            sub.remove()
        for task in self._tasks:
            task.cancel()
        self.bitswap.forget_session(self)
        self.wake()

    async def wait_stopped(self) -> None:
        """Return once the task, the searches and the CANCEL messages are done."""
        await asyncio.gather(self._runner, *self._tasks, return_exceptions=True)
        await self.bitswap.wait_sent()


__all__ = ["ExchangeSession"]
