"""A bounded queue whose producers never wait (DESIGN.md §4, the minogrpc session design).

Network code publishes notifications (peer connected, identified, ...) from the
middle of protocol handlers. If a slow subscriber could make ``push`` wait, one
forgotten subscription would stall every connection. So ``push`` never blocks:
it buffers up to a limit and then drops, and the drops are counted (and
exported as the OpenTelemetry counter ``nbqueue_dropped``) so a lossy
subscriber is visible instead of silent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from opentelemetry import metrics

T = TypeVar("T")

_METER = metrics.get_meter("zikade_py")
_DROPPED = _METER.create_counter(
    "nbqueue_dropped",
    unit="{item}",
    description="Items a NonBlockingQueue refused because its buffer was full",
)

DEFAULT_QUEUE_LIMIT = 1024
"""Buffered items per queue before new ones are dropped."""


class QueueClosedError(Exception):
    """``get`` was called on a closed queue with nothing left in it (local misuse or shutdown)."""


class NonBlockingQueue(Generic[T]):
    """A bounded FIFO: :meth:`push` never waits, :meth:`get` does.

    ``name`` labels the drop counter so drops of different queues can be told apart.
    """

    __slots__ = ("_closed", "_dropped", "_items", "_limit", "_name", "_waiters")

    def __init__(self, limit: int = DEFAULT_QUEUE_LIMIT, *, name: str = "") -> None:
        if limit < 1:
            raise ValueError("a queue must hold at least one item")
        self._limit = limit
        self._name = name
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dropped = 0
        self._closed = False

    @property
    def dropped(self) -> int:
        """How many pushed items were refused because the buffer was full."""
        return self._dropped

    @property
    def limit(self) -> int:
        """The buffer size."""
        return self._limit

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T) -> bool:
        """Buffer ``item`` unless the queue is full or closed; return whether it was kept."""
        if self._closed:
            return False
        if len(self._items) >= self._limit:
            self._dropped += 1
            _DROPPED.add(1, {"queue": self._name} if self._name else None)
            return False
        self._items.append(item)
        self._wake_one()
        return True

    def get_nowait(self) -> T | None:
        """The oldest item, or ``None`` if there is none right now."""
        return self._items.popleft() if self._items else None

    async def get(self) -> T:
        """The oldest item, waiting for one; :class:`QueueClosedError` once closed and empty."""
        while not self._items:
            if self._closed:
                raise QueueClosedError("queue is closed")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif self._items:
                    self._wake_one()  # we were woken for an item we will not take
                raise
        item = self._items.popleft()
        if self._items:
            self._wake_one()
        return item

    def close(self) -> None:
        """Refuse further pushes; readers drain what is buffered, then stop."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except QueueClosedError:
                return
