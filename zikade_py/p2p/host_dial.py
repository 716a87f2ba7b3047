"""Outbound side of the host: one shared dial per peer (cancelled when its last caller
leaves), DNS names resolved, QUIC raced against TCP, each address under the dial guard
and the caller's budget, and the errors a failed dial reports."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from zikade_py.p2p.connection import Connection, Stream, upgrade_outbound
from zikade_py.p2p.events import Direction
from zikade_py.p2p.host_conns import HostConnections
from zikade_py.p2p.host_parts import HostClosedError
from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.localaddrs import dial_source
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.quic.dial_order import race, split


class DialError(Exception):
    """No address of the peer led to an upgraded connection (each failure is listed)."""

    def __init__(self, message: str, errors: Sequence[tuple[Multiaddr, Exception]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)
        """Each address tried and why it failed (``PeerIDMismatchError``, ``OSError``, ...)."""


class DialTimeoutError(DialError, TimeoutError):
    """The caller's dial budget ran out (a ``TimeoutError`` too, for those who catch that)."""


def _seconds(value: float) -> str:
    """A duration for an error message: ``5 s``, ``0.25 s``."""
    return f"{value:.3g} s"


def describe_dial_error(exc: BaseException) -> str:
    """What went wrong on one address, in words: never empty (``str(TimeoutError())`` is)."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) and exc.errno:
        # asyncio's text is "Connect call failed (addr)"; the address is printed already
        reason = os.strerror(exc.errno) if exc.errno > 0 else (exc.strerror or "")
        if reason:
            return reason[0].lower() + reason[1:]
    return str(exc) or type(exc).__name__


def _name_peer(addr: Multiaddr, peer: PeerID) -> Multiaddr:
    """``/dnsaddr/<name>`` as ``/dnsaddr/<name>/p2p/<peer>`` (other addresses unchanged)."""
    if addr.components[0].name == "dnsaddr" and addr.peer_id() is None:
        return addr.with_peer_id(peer)
    return addr


@dataclass(slots=True, eq=False)
class _Dial:
    """A dial under way, shared by every caller of :meth:`Host.connect` for its peer; it
    runs while at least one of them waits (``waiters``) and is cancelled when the last leaves."""

    task: asyncio.Task[Connection]
    waiters: int = 0


class HostDialing(HostConnections):
    """Dials peers and opens streams to them."""

    _dials: dict[PeerID, _Dial]

    async def connect(
        self, peer: PeerID | None, addrs: Sequence[Multiaddr] = (), *, timeout: float | None = None
    ) -> Connection:
        """A connection to ``peer``: an existing one, a dial already under way, or a new dial
        of ``addrs`` (or, if empty, the peerstore's addresses).

        Callers asking for the same peer share one dial. It runs while one of them still
        waits; when the last one leaves (cancelled, or its ``timeout`` passed) the dial is
        cancelled, its socket closed, and that caller returns only once it has stopped.
        With ``peer=None`` the addresses are dialed and any identity is accepted.
        Raises :class:`DialError` (:class:`DialTimeoutError` when ``timeout`` ran out,
        also a ``TimeoutError``), :class:`ConnectionLimitError` or :class:`HostClosedError`.
        """
        if not self.is_running:
            raise HostClosedError("host is not running")
        if peer == self.peer_id:
            raise DialError("cannot dial ourselves")
        budget = self.config.dial_timeout if timeout is None else timeout
        if peer is not None:
            existing = self.connmgr.get(peer)
            if existing is not None:
                return existing
        for addr in addrs:
            owner = addr.peer_id()
            if peer is None and owner is not None:
                peer = owner
        if peer is None:
            return await self._dial(None, list(addrs), budget)
        dial = self._dials.get(peer)
        if dial is None:
            # Each caller's wait is bounded by its own budget, and the dial stops when the
            # last one leaves; so a short first caller does not cut it short for the others.
            own_budget = max(budget, self.config.dial_timeout)
            task = asyncio.get_running_loop().create_task(
                self._dial(peer, list(addrs) or self.peerstore.addrs(peer), own_budget),
                name=f"dial-{peer}",
            )
            dial = self._dials[peer] = _Dial(task)
            task.add_done_callback(self._dial_finished)
        return await self._wait_dial(peer, dial, budget)

    async def _wait_dial(self, peer: PeerID, dial: _Dial, budget: float) -> Connection:
        dial.waiters += 1
        try:
            async with asyncio.timeout(budget):
                # wait() leaves the dial alone when this caller is cancelled
                await asyncio.wait((dial.task,))
        except TimeoutError:
            raise DialTimeoutError(f"dial to {peer} timed out after {_seconds(budget)}") from None
        finally:
            dial.waiters -= 1
            if dial.waiters == 0 and not dial.task.done():
                await self._abandon(peer, dial)
        if dial.task.cancelled():  # only close() cancels a dial someone waits for
            raise HostClosedError("host closed during the dial")
        return dial.task.result()

    async def _abandon(self, peer: PeerID, dial: _Dial) -> None:
        """Cancel a dial nobody waits for any more, and wait until it has stopped.

        A caller that arrives meanwhile starts a fresh dial. A dial that already finished
        is never cancelled: its connection was registered in the same step, so it stays
        (unheld, the idle timeout collects it)."""
        if self._dials.get(peer) is dial:
            del self._dials[peer]
        dial.task.cancel()
        await asyncio.wait((dial.task,))

    def _dial_finished(self, task: asyncio.Task[Connection]) -> None:
        for peer, pending in list(self._dials.items()):
            if pending.task is task:
                del self._dials[peer]
        if not task.cancelled():
            task.exception()  # retrieved: the callers saw it, or nobody waits any more

    async def _dial(self, peer: PeerID | None, addrs: list[Multiaddr], budget: float) -> Connection:
        deadline = time.monotonic() + budget
        if peer is not None:  # a /dnsaddr name then yields only this peer's records (dns.py)
            addrs = [_name_peer(a, peer) for a in addrs]
        resolved, failures = await self.resolver.resolve_all(addrs, timeout=budget)
        errors: list[tuple[Multiaddr, Exception]] = list(failures)
        candidates = [
            a
            for a in resolved
            if (a.tcp_endpoint() is not None or a.quic_endpoint() is not None)
            and a.peer_id() in (None, peer)
        ]
        if not candidates:
            detail = "".join(f"; {a}: {describe_dial_error(e)}" for a, e in errors)
            raise DialError(
                f"no dialable TCP address (nor QUIC) for {peer or 'the peer'}{detail}", errors
            )
        await self._make_room(Direction.OUTBOUND)

        async def chain(addrs: list[Multiaddr]) -> Connection | None:
            for addr in addrs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    spent = TimeoutError(f"not tried: {_seconds(budget)} budget spent")
                    errors.append((addr, spent))
                    break
                try:
                    return await self._dial_addr(peer, addr, remaining)
                except Exception as exc:
                    errors.append((addr, exc))
            return None

        quic, other = split(candidates)
        if quic and other:  # QUIC first, TCP joins after a delay; the first to upgrade wins
            conn = await race(
                lambda: chain(quic),
                lambda: chain(other),
                delay=self.config.quic_fallback_delay,
                discard=lambda c: c.close(),
                label=lambda c: c.transport,
            )
        else:
            conn = await chain(quic or other)
        if conn is not None:
            # no await between the upgrade and here: a cancel cannot lose this connection
            await self._add_connection(conn)
            # the peer may have dialed us meanwhile: hand out the connection both keep
            return self.connmgr.get(conn.remote_peer) or conn
        detail = "; ".join(f"{a}: {describe_dial_error(e)}" for a, e in errors)
        raise DialError(f"dial to {peer or 'peer'} failed: {detail}", errors)

    async def _dial_addr(self, peer: PeerID | None, addr: Multiaddr, budget: float) -> Connection:
        quic = addr.quic_endpoint()
        if quic is not None:
            self.dial_guard.check(*quic)
            timeout = max(min(budget, self.config.handshake_timeout), 0.001)
            try:
                return await self._quic.dial(peer, addr, timeout=timeout)
            except TimeoutError:
                raise TimeoutError(f"QUIC handshake timed out after {_seconds(timeout)}") from None
        endpoint = addr.tcp_endpoint()
        assert endpoint is not None
        self.dial_guard.check(*endpoint)  # the last step before a packet leaves
        try:
            async with asyncio.timeout(budget):
                reader, writer = await asyncio.open_connection(
                    endpoint[0],
                    endpoint[1],
                    local_addr=dial_source(self._listen_addrs, endpoint[0]),
                )
        except TimeoutError:
            raise TimeoutError(f"TCP connect timed out after {_seconds(budget)}") from None
        tcp = TcpStream(reader, writer)
        timeout = max(min(budget, self.config.handshake_timeout), 0.001)
        try:
            return await upgrade_outbound(
                tcp, self._key, peer, yamux_config=self._yamux, timeout=timeout
            )
        except TimeoutError:
            raise TimeoutError(f"handshake timed out after {_seconds(timeout)}") from None

    async def new_stream(
        self, peer: PeerID, protocol_ids: Sequence[str], *, timeout: float | None = None
    ) -> Stream:
        """A stream to ``peer`` speaking the first of ``protocol_ids`` it accepts, connecting
        from the peerstore's addresses if needed."""
        budget = self.config.dial_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        conn = await self.connect(peer, timeout=budget)
        remaining = max(deadline - time.monotonic(), 0.001)
        return await conn.open_stream(protocol_ids, timeout=remaining)
