"""quic/dial_order.race: QUIC first, the fallback after a delay or a failure, one winner,
the loser cancelled and its late result discarded."""

from __future__ import annotations

import asyncio

from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.quic.dial_order import race, split


class Attempt:
    """A dial attempt that finishes when the test says so."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.cancelled = False

    async def __call__(self) -> str | None:
        self.started.set()
        try:
            return await self.outcome
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_first_alone_when_it_wins_within_the_delay() -> None:
    quic, tcp = Attempt("quic"), Attempt("tcp")
    quic.outcome.set_result("quic-conn")
    discarded: list[str] = []

    async def discard(c: str) -> None:
        discarded.append(c)

    assert await race(quic, tcp, delay=60.0, discard=discard) == "quic-conn"
    assert not tcp.started.is_set() and not discarded


async def test_second_starts_at_once_when_the_first_fails() -> None:
    quic, tcp = Attempt("quic"), Attempt("tcp")
    quic.outcome.set_result(None)
    tcp.outcome.set_result("tcp-conn")

    async def discard(c: str) -> None:
        raise AssertionError("nothing to discard")

    assert await race(quic, tcp, delay=60.0, discard=discard) == "tcp-conn"


async def test_second_joins_after_the_delay_and_the_loser_is_cancelled() -> None:
    quic, tcp = Attempt("quic"), Attempt("tcp")
    task = asyncio.create_task(race(quic, tcp, delay=0.01, discard=lambda c: asyncio.sleep(0)))
    await asyncio.wait_for(tcp.started.wait(), 10)  # quic still pending
    tcp.outcome.set_result("tcp-conn")
    assert await asyncio.wait_for(task, 10) == "tcp-conn"
    assert quic.cancelled


async def test_a_result_the_loser_produced_anyway_is_discarded() -> None:
    discarded: list[str] = []

    async def discard(c: str) -> None:
        discarded.append(c)

    async def quic() -> str | None:
        await asyncio.sleep(0.05)
        return "quic-conn"

    async def tcp() -> str | None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            return "tcp-conn"  # finished its upgrade just as it was cancelled
        return "tcp-conn"

    winner = await race(quic, tcp, delay=0.0, discard=discard)
    assert winner in ("quic-conn", "tcp-conn")
    assert discarded == [({"quic-conn", "tcp-conn"} - {winner}).pop()]


async def test_both_failing_gives_none() -> None:
    async def fail() -> str | None:
        return None

    assert await race(fail, fail, delay=0.01, discard=lambda c: asyncio.sleep(0)) is None


async def test_cancelling_the_race_cancels_both_attempts() -> None:
    quic, tcp = Attempt("quic"), Attempt("tcp")
    task = asyncio.create_task(race(quic, tcp, delay=0.0, discard=lambda c: asyncio.sleep(0)))
    await asyncio.wait_for(tcp.started.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert quic.cancelled and tcp.cancelled


def test_split_keeps_order_within_each_transport() -> None:
    addrs = [
        Multiaddr.parse("/ip4/127.0.0.1/tcp/1"),
        Multiaddr.parse("/ip4/127.0.0.1/udp/2/quic-v1"),
        Multiaddr.parse("/ip4/127.0.0.1/tcp/3"),
        Multiaddr.parse("/ip4/127.0.0.1/udp/4/quic-v1"),
    ]
    quic, other = split(addrs)
    assert [str(a) for a in quic] == [str(addrs[1]), str(addrs[3])]
    assert [str(a) for a in other] == [str(addrs[0]), str(addrs[2])]
