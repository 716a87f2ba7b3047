"""QUIC first, TCP after a short delay (happy eyeballs, RFC 8305 in spirit), first one wins.

A QUIC handshake costs one round trip where TCP + multistream + Noise + Yamux cost
several, so a peer that offers both is dialled over QUIC first. But UDP is blocked on
some networks, and a QUIC dial to a dead UDP port learns nothing until its handshake
times out (an unconnected UDP socket hears no ICMP errors), so waiting for QUIC to fail
would cost a whole handshake timeout: TCP starts once QUIC has had ``delay`` to succeed
(or at once when QUIC failed), and whichever upgrades first is kept; the other attempt
is cancelled, and a connection it completed anyway is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from opentelemetry import metrics

from zikade_py import telemetry
from zikade_py.p2p.multiaddr import Multiaddr

T = TypeVar("T")

FALLBACK_DELAY: Final = 0.25
"""Seconds QUIC has alone before TCP starts (go-libp2p's dial ranker waits 250 ms too)."""

_WINS: metrics.Counter | None = None


def _wins() -> metrics.Counter:
    global _WINS
    if _WINS is None:
        _WINS = telemetry.meter().create_counter(
            "zikade_dial_transport_wins",
            description="Dials won by each transport (QUIC vs TCP) when a peer offers both",
        )
    return _WINS


def split(addrs: Sequence[Multiaddr]) -> tuple[list[Multiaddr], list[Multiaddr]]:
    """``(quic, other)``: the QUIC addresses and the rest, each in the given order."""
    quic = [a for a in addrs if a.quic_endpoint() is not None]
    other = [a for a in addrs if a.quic_endpoint() is None]
    return quic, other


async def race(
    first: Callable[[], Awaitable[T | None]],
    second: Callable[[], Awaitable[T | None]],
    *,
    delay: float,
    discard: Callable[[T], Awaitable[None]],
    label: Callable[[T], str] = lambda _: "",
) -> T | None:
    """Run ``first``; start ``second`` after ``delay`` or once ``first`` came back empty;
    return the first non-None result (None if both came back empty). Each attempt returns
    None for "failed" and raises only when cancelled. The loser is cancelled and waited
    for; a result it produced anyway is handed to ``discard``. ``label`` names the
    winner's transport for the ``zikade_dial_transport_wins`` counter."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[T | None]] = [loop.create_task(_call(first))]
    winner: T | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if done and (winner := tasks[0].result()) is not None:
            _wins().add(1, {"transport": label(winner)})
            return winner
        tasks.append(loop.create_task(_call(second)))
        pending: set[asyncio.Task[T | None]] = {t for t in tasks if not t.done()}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if winner is None and (result := task.result()) is not None:
                    winner = result
            if winner is not None:
                _wins().add(1, {"transport": label(winner)})
                return winner
        return None
    finally:
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            # cancelled while the loser stops: nobody will take the winner either
            if winner is not None:
                _closing.add(closer := loop.create_task(_discard(discard, winner)))
                closer.add_done_callback(_closing.discard)
            raise
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                continue
            extra = task.result()
            if extra is not None and extra is not winner:
                with contextlib.suppress(Exception):
                    await discard(extra)


_closing: set[asyncio.Task[None]] = set()


async def _discard(discard: Callable[[T], Awaitable[None]], value: T) -> None:
    with contextlib.suppress(Exception):
        await discard(value)


async def _call(attempt: Callable[[], Awaitable[T | None]]) -> T | None:
    return await attempt()
