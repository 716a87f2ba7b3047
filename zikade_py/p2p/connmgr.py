"""Reference-counted connections with idle close and limits (DESIGN.md §4).

Whoever needs a peer's connection to stay up (a DHT query in progress, a
session) calls :meth:`ConnectionManager.acquire` and later
:meth:`ConnectionManager.release`. A connection whose peer nobody holds and
that carries no streams closes after ``idle_timeout``; when the total reaches
``max_connections`` the least recently used unheld idle connection is trimmed
to make room. Dead connections need no help here: yamux keep-alive pings fail,
the session closes, and the host removes it.

A peer may end up with two connections (both sides dialed at once). The host
then :meth:`ConnectionManager.retire` s the redundant one: it is no longer
handed out, finishes the streams it carries, and closes once it has been idle
for ``redundant_grace`` (holds do not keep it).

The bookkeeping is pure (every decision takes ``now``); :meth:`run` is the thin
asyncio timer that acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from zikade_py.p2p.peer_id import PeerID


class ManagedConnection(Protocol):
    """What the manager needs from a connection (``connection.Connection`` has it)."""

    @property
    def remote_peer(self) -> PeerID:
        """The authenticated peer at the other end."""
        ...

    @property
    def num_streams(self) -> int:
        """Streams currently open on the connection."""
        ...

    @property
    def last_used(self) -> float:
        """When a stream last opened or closed (monotonic seconds)."""
        ...

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


C = TypeVar("C", bound=ManagedConnection)


class ConnectionLimitError(Exception):
    """No room for another connection: every connection is held or busy."""


class ReleaseError(ValueError):
    """``release`` without a matching ``acquire`` (local misuse)."""


@dataclass(slots=True)
class _Entry(Generic[C]):
    conn: C
    added: float
    retired: float | None = None


class ConnectionManager(Generic[C]):
    """Tracks open connections per peer, holders per peer, and who may be closed when."""

    __slots__ = (
        "_clock",
        "_conns",
        "_holds",
        "_released",
        "_wake",
        "idle_timeout",
        "max_connections",
        "redundant_grace",
    )

    def __init__(
        self,
        *,
        max_connections: int = 400,
        idle_timeout: float = 60.0,
        redundant_grace: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1 or idle_timeout <= 0 or redundant_grace <= 0:
            raise ValueError("max_connections must be >= 1, idle_timeout and redundant_grace > 0")
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.redundant_grace = redundant_grace
        self._clock = clock
        self._conns: dict[PeerID, list[_Entry[C]]] = {}
        self._holds: dict[PeerID, int] = {}
        self._released: dict[PeerID, float] = {}
        self._wake = asyncio.Event()

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    # --- connections -----------------------------------------------------------------------

    def add(self, conn: C, now: float | None = None) -> None:
        """Start tracking an upgraded connection."""
        self._conns.setdefault(conn.remote_peer, []).append(_Entry(conn, self._now(now)))
        self._wake.set()

    def remove(self, conn: C) -> bool:
        """Stop tracking ``conn``; return whether it was the peer's last connection."""
        entries = self._conns.get(conn.remote_peer)
        if entries is None:
            return False
        entries[:] = [e for e in entries if e.conn is not conn]
        if entries:
            if all(e.retired is not None for e in entries):
                for e in entries:  # the kept one went first: these are all the peer has
                    e.retired = None
            return False
        del self._conns[conn.remote_peer]
        if self._holds.get(conn.remote_peer, 0) == 0:
            self._released.pop(conn.remote_peer, None)
        return True

    def get(self, peer: PeerID) -> C | None:
        """The newest open connection to ``peer`` that is not retired (else a retired one)."""
        fallback = None
        for entry in reversed(self._conns.get(peer, ())):
            if not entry.conn.is_closed:
                if entry.retired is None:
                    return entry.conn
                fallback = fallback or entry.conn
        return fallback

    def retire(self, conn: C, now: float | None = None) -> None:
        """Mark ``conn`` redundant: :meth:`get` skips it, and it closes after being idle
        (no streams) for ``redundant_grace``, held or not. Unknown connections are ignored."""
        for entry in self._conns.get(conn.remote_peer, ()):
            if entry.conn is conn and entry.retired is None:
                entry.retired = self._now(now)
                self._wake.set()

    def is_retired(self, conn: C) -> bool:
        """Whether ``conn`` was retired as redundant (and not reinstated since)."""
        return any(
            e.conn is conn and e.retired is not None for e in self._conns.get(conn.remote_peer, ())
        )

    def connections(self, peer: PeerID | None = None) -> list[C]:
        """Every tracked connection, or those to ``peer``."""
        if peer is not None:
            return [e.conn for e in self._conns.get(peer, ())]
        return [e.conn for entries in self._conns.values() for e in entries]

    def peers(self) -> list[PeerID]:
        """Peers with at least one tracked connection."""
        return list(self._conns)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._conns.values())

    def __iter__(self) -> Iterator[C]:
        return iter(self.connections())

    # --- holders ---------------------------------------------------------------------------

    def acquire(self, peer: PeerID) -> int:
        """Hold ``peer``'s connections open (also ones made later); return the new count."""
        count = self._holds.get(peer, 0) + 1
        self._holds[peer] = count
        return count

    def release(self, peer: PeerID, now: float | None = None) -> int:
        """Drop one hold on ``peer``; at zero the idle timer starts. Return the new count."""
        count = self._holds.get(peer, 0)
        if count == 0:
            raise ReleaseError(f"release of {peer} without acquire")
        count -= 1
        if count:
            self._holds[peer] = count
        else:
            del self._holds[peer]
            self._released[peer] = self._now(now)
            self._wake.set()
        return count

    def holders(self, peer: PeerID) -> int:
        """How many holds ``peer`` has."""
        return self._holds.get(peer, 0)

    def total_holds(self) -> int:
        """The sum of all holds (zero once every holder released)."""
        return sum(self._holds.values())

    @contextlib.asynccontextmanager
    async def hold(self, peer: PeerID) -> AsyncIterator[None]:
        """``async with connmgr.hold(peer):`` = acquire, then release on the way out."""
        self.acquire(peer)
        try:
            yield
        finally:
            self.release(peer)

    # --- decisions (pure) ------------------------------------------------------------------

    def _idle_since(self, entry: _Entry[C]) -> float | None:
        conn = entry.conn
        if conn.num_streams or conn.is_closed:
            return None
        if entry.retired is not None:
            return max(entry.added, conn.last_used, entry.retired)
        peer = conn.remote_peer
        if self._holds.get(peer, 0):
            return None
        return max(entry.added, conn.last_used, self._released.get(peer, -math.inf))

    def _due(self, entry: _Entry[C]) -> float | None:
        since = self._idle_since(entry)
        if since is None:
            return None
        return since + (self.idle_timeout if entry.retired is None else self.redundant_grace)

    def expired(self, now: float | None = None) -> list[C]:
        """Connections whose idle time has reached ``idle_timeout`` (retired ones:
        ``redundant_grace``) at ``now``."""
        t = self._now(now)
        out = []
        for entries in self._conns.values():
            for entry in entries:
                due = self._due(entry)
                if due is not None and t >= due:
                    out.append(entry.conn)
        return out

    def next_due(self) -> float | None:
        """The earliest time an idle connection would expire, if any is idle now."""
        due = [
            d
            for entries in self._conns.values()
            for entry in entries
            if (d := self._due(entry)) is not None
        ]
        return min(due) if due else None

    def trim_candidate(
        self,
        accept: Callable[[C], bool] | None = None,
        crowd: Callable[[C], int] | None = None,
        *,
        incoming: int = 0,
        young: Callable[[C], bool] | None = None,
    ) -> C | None:
        """The unheld idle connection to close first: a retired one, else (if ``crowd``
        is given) one of the most crowded (``crowd(conn)``: how many connections share its
        origin, so one source's many connections go before a lone peer's), else the least
        recently used; ``None`` if there is none. Only among those ``accept`` allows.

        Fairness to the connection that needs the room (``incoming``: how crowded its own
        origin is, itself included): it never evicts one of a less crowded origin, so a
        flood from a few addresses cannot push out a lone peer. ``young(conn)`` marks
        connections in their grace period (not yet had the chance to open a stream); they
        are shielded, except from a newcomer of a less crowded origin when theirs is
        crowded (more than one): a flood arriving faster than the grace period would
        otherwise shut every newcomer out until it ages. Retired connections are
        redundant and exempt from both rules."""
        best: tuple[bool, int, float, C] | None = None
        for entries in self._conns.values():
            for entry in entries:
                if accept is not None and not accept(entry.conn):
                    continue
                since = self._idle_since(entry)
                if since is None:
                    continue
                size = crowd(entry.conn) if crowd is not None else 0
                kept = entry.retired is None  # a retired one is redundant: always fair game
                if kept and size < incoming:
                    continue
                if kept and young is not None and size <= max(incoming, 1) and young(entry.conn):
                    continue
                if best is None or (kept, -size, since) < best[:3]:
                    best = (kept, -size, since, entry.conn)
        return best[3] if best is not None else None

    def has_room(self) -> bool:
        """Whether one more connection fits under ``max_connections``."""
        return len(self) < self.max_connections

    async def make_room(self) -> None:
        """Ensure one more connection fits, trimming one idle connection if needed.

        Raises :class:`ConnectionLimitError` if every connection is held or busy.
        """
        if self.has_room():
            return
        victim = self.trim_candidate()
        if victim is None:
            raise ConnectionLimitError(f"{len(self)} connections, all held or busy")
        self.remove(victim)
        await victim.close()

    # --- driver ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Re-evaluate timers now (after streams closed, for instance)."""
        self._wake.set()

    async def run(self, poll_interval: float | None = None) -> None:
        """Close idle connections when they expire, until cancelled.

        Stream activity does not wake this loop, so it also polls every
        ``poll_interval`` (default: half the idle timeout, at most 5 s; while a
        retired connection waits for its streams, at most ``redundant_grace``).
        """
        base = poll_interval or min(self.idle_timeout / 2, 5.0)
        while True:
            now = self._clock()
            for conn in self.expired(now):
                await conn.close()
            retiring = any(e.retired is not None for es in self._conns.values() for e in es)
            poll = min(base, self.redundant_grace) if retiring else base
            due = self.next_due()
            delay = poll if due is None else min(poll, max(due - self._clock(), 0.0))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.001))


class InboundRateLimiter:
    """A token bucket per remote IP: at most ``rate`` new inbound connections per second,
    with bursts of ``burst``, so one address cannot make us run handshakes without end.

    Pure bookkeeping; the caller passes ``now``. The table holds the ``MAX_TRACKED``
    addresses seen most recently; when full, the one seen longest ago goes (O(1): its
    bucket has had the longest time to refill).
    """

    __slots__ = ("_buckets", "burst", "rate")

    MAX_TRACKED = 4096
    """Addresses tracked before full buckets are pruned."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, updated)

    def _tokens(self, ip: str, now: float) -> float:
        tokens, updated = self._buckets.get(ip, (float(self.burst), now))
        return min(float(self.burst), tokens + max(now - updated, 0.0) * self.rate)

    def allow(self, ip: str, now: float) -> bool:
        """Take a token for ``ip`` if one is left; return whether the connection may proceed."""
        tokens = self._tokens(ip, now)
        if self._buckets.pop(ip, None) is None and len(self._buckets) >= self.MAX_TRACKED:
            del self._buckets[next(iter(self._buckets))]  # seen longest ago
        allowed = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if allowed else tokens, now)  # now the newest
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
