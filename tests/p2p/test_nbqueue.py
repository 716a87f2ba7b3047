"""NonBlockingQueue: push never waits, the buffer is bounded, drops are counted."""

from __future__ import annotations

import asyncio

import pytest

from zikade_py.p2p.nbqueue import NonBlockingQueue, QueueClosedError


def test_push_is_synchronous_and_bounded() -> None:
    q: NonBlockingQueue[int] = NonBlockingQueue(3)
    assert [q.push(i) for i in range(5)] == [True, True, True, False, False]
    assert len(q) == 3
    assert q.dropped == 2
    assert q.get_nowait() == 0
    assert q.push(9)
    assert q.dropped == 2


async def test_fifo_order_and_waiting_get() -> None:
    q: NonBlockingQueue[str] = NonBlockingQueue(10)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.push("a")
    q.push("b")
    assert await asyncio.wait_for(getter, 1) == "a"
    assert await q.get() == "b"


async def test_close_wakes_readers_and_drains_first() -> None:
    q: NonBlockingQueue[int] = NonBlockingQueue(10)
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.close()
    with pytest.raises(QueueClosedError):
        await asyncio.wait_for(waiter, 1)
    q2: NonBlockingQueue[int] = NonBlockingQueue(10)
    q2.push(1)
    q2.push(2)
    q2.close()
    assert not q2.push(3)
    assert [i async for i in q2] == [1, 2]


async def test_many_consumers_each_item_once() -> None:
    q: NonBlockingQueue[int] = NonBlockingQueue(1000)
    got: list[int] = []

    async def consume() -> None:
        async for item in q:
            got.append(item)

    consumers = [asyncio.create_task(consume()) for _ in range(4)]
    for i in range(500):
        q.push(i)
        if i % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    q.close()
    await asyncio.wait_for(asyncio.gather(*consumers), 5)
    assert sorted(got) == list(range(500))


async def test_cancelled_get_does_not_lose_items() -> None:
    q: NonBlockingQueue[int] = NonBlockingQueue(10)
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    first.cancel()
    q.push(7)
    assert await asyncio.wait_for(second, 1) == 7


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        NonBlockingQueue(0)
