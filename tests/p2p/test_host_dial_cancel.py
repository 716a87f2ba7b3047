"""A dial shared by several callers of ``Host.connect`` lives exactly as long as one of them
waits (issue 8): the last one to leave cancels it, its socket closes, and every race
around that moment (leaving as the dial completes, arriving as it is torn down,
simultaneous dials) ends with properly registered connections and nothing left running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from zikade_py.p2p.connection import Connection, Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostClosedError, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .tcp_stubs import Gate, SilentListener

pytestmark = pytest.mark.timeout(60)

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"


@asynccontextmanager
async def running(config: HostConfig | None = None) -> AsyncIterator[Host]:
    host = Host(PrivateKey.generate(), config or HostConfig())
    host.set_stream_handler(ECHO, echo)
    await host.start([LOOPBACK])
    try:
        yield host
    finally:
        await host.close()


@asynccontextmanager
async def silent() -> AsyncIterator[SilentListener]:
    hole = await SilentListener().start()
    try:
        yield hole
    finally:
        await hole.close()


@asynccontextmanager
async def gate_to(host: Host) -> AsyncIterator[Gate]:
    gate = await Gate(host.listen_addrs[0]).start()
    try:
        yield gate
    finally:
        await gate.close()


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)


async def round_trip(conn: Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream([ECHO], timeout=5)
    await stream.write(payload)
    await stream.close()
    out = bytearray()
    while data := await stream.read():
        out += data
    return bytes(out)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


def dial_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("dial-") and not t.done()]


def dial_task_of(peer: PeerID) -> asyncio.Task[object]:
    (task,) = [t for t in dial_tasks() if t.get_name() == f"dial-{peer}"]
    return task


async def cancelled(task: asyncio.Task[Connection]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_only_waiter_leaving_cancels_the_dial_and_closes_its_socket() -> None:
    async with running() as a, silent() as hole:
        waiter = asyncio.create_task(a.connect(random_peer(), [hole.addr], timeout=30))
        await wait_for(lambda: hole.accepted == 1)  # TCP is up, the Noise handshake waits
        await cancelled(waiter)
        # connect returned only after the dial it started had stopped
        assert dial_tasks() == []
        await wait_for(lambda: hole.closed == 1)
        assert a.connmgr.connections() == [] and a.connmgr.total_holds() == 0


async def test_a_waiter_leaving_does_not_disturb_the_others() -> None:
    async with running() as a, running() as b, gate_to(b) as gate:
        first = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        second = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        await wait_for(lambda: gate.accepted == 1)
        await cancelled(first)
        assert len(dial_tasks()) == 1 and not second.done()
        gate.open()
        conn = await second
        assert conn.remote_peer == b.peer_id and not conn.is_closed
        assert gate.accepted == 1  # the one dial both shared
        assert a.connmgr.get(b.peer_id) is conn
        assert await round_trip(conn, b"still here") == b"still here"
        assert dial_tasks() == [] and a.connmgr.total_holds() == 0


async def test_last_waiter_leaving_closes_the_tcp_connection_at_the_listener() -> None:
    async with running() as a, silent() as hole:
        peer = random_peer()
        waiters = [
            asyncio.create_task(a.connect(peer, [hole.addr], timeout=30)) for _ in range(3)
        ]
        await wait_for(lambda: hole.accepted == 1)
        for waiter in waiters[:2]:
            await cancelled(waiter)
        await asyncio.sleep(0.1)  # the dial goes on for the one still waiting
        assert hole.open == 1 and len(dial_tasks()) == 1
        await cancelled(waiters[2])
        assert dial_tasks() == []
        await wait_for(lambda: hole.closed == 1)
        assert hole.accepted == 1


async def test_leaving_as_the_dial_completes_keeps_the_connection_registered() -> None:
    """The waiter is cancelled in the very loop step its dial finished: too late to stop it.
    The connection stays open and registered (the idle timeout will collect it), the
    other waiter gets it, and the next connect reuses it."""
    async with running() as a, running() as b:
        leaving = asyncio.create_task(a.connect(b.peer_id, b.listen_addrs))
        staying = asyncio.create_task(a.connect(b.peer_id, b.listen_addrs))
        await asyncio.sleep(0)
        dial_task_of(b.peer_id).add_done_callback(lambda _t: leaving.cancel())
        with pytest.raises(asyncio.CancelledError):
            await leaving
        conn = await staying
        assert not conn.is_closed and a.connmgr.get(b.peer_id) is conn
        assert await a.connect(b.peer_id) is conn
        assert await round_trip(conn, b"kept") == b"kept"
        await wait_for(lambda: len(b.connmgr) == 1)
        assert len(a.connmgr) == 1 and a.connmgr.total_holds() == 0


async def test_sole_waiter_leaving_as_the_dial_completes_leaks_nothing() -> None:
    async with running() as a, running() as b:
        leaving = asyncio.create_task(a.connect(b.peer_id, b.listen_addrs))
        await asyncio.sleep(0)
        dial_task_of(b.peer_id).add_done_callback(lambda _t: leaving.cancel())
        with pytest.raises(asyncio.CancelledError):
            await leaving
        (conn,) = a.connmgr.connections(b.peer_id)
        assert not conn.is_closed
        assert await a.connect(b.peer_id) is conn
        assert await round_trip(conn, b"registered") == b"registered"
        assert dial_tasks() == []


async def test_caller_arriving_while_the_dial_is_torn_down_gets_a_fresh_dial() -> None:
    async with running() as a, running() as b, gate_to(b) as gate:
        first = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        await wait_for(lambda: gate.accepted == 1)
        first.cancel()
        await asyncio.sleep(0)  # the first waiter has left and cancelled the dial ...
        assert not first.done()  # ... and waits for it to stop
        second = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        with pytest.raises(asyncio.CancelledError):
            await first
        await wait_for(lambda: gate.accepted == 2)
        gate.open()
        conn = await second
        assert not conn.is_closed and a.connmgr.connections(b.peer_id) == [conn]
        assert await round_trip(conn, b"fresh") == b"fresh"
        await wait_for(lambda: gate.closed == 1)  # the abandoned TCP connection
        await wait_for(lambda: len(b.connmgr) == 1)
        assert dial_tasks() == [] and a.connmgr.total_holds() == 0


async def test_caller_arriving_before_the_last_one_leaves_joins_the_dial() -> None:
    async with running() as a, running() as b, gate_to(b) as gate:
        first = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        await wait_for(lambda: gate.accepted == 1)
        second = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        await asyncio.sleep(0)  # joined
        await cancelled(first)
        gate.open()
        conn = await second
        assert gate.accepted == 1 and a.connmgr.connections(b.peer_id) == [conn]
        assert await round_trip(conn, b"joined") == b"joined"


async def test_waiter_timeout_stops_the_dial_and_says_so() -> None:
    async with running() as a, silent() as hole:
        with pytest.raises(TimeoutError) as info:
            await a.connect(random_peer(), [hole.addr], timeout=0.2)
        assert "timed out after 0.2 s" in str(info.value)
        assert dial_tasks() == []
        await wait_for(lambda: hole.closed == 1)


async def test_host_close_ends_waiting_dials_with_host_closed_error() -> None:
    async with silent() as hole:
        a = Host(PrivateKey.generate())
        await a.start([LOOPBACK])
        waiter = asyncio.create_task(a.connect(random_peer(), [hole.addr], timeout=30))
        await wait_for(lambda: hole.accepted == 1)
        await a.close()
        assert dial_tasks() == []  # close waited for the dial
        with pytest.raises(HostClosedError):
            await waiter
        await wait_for(lambda: hole.closed == 1)


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.006, 0.01])
async def test_simultaneous_dials_with_one_side_cancelled_settle_on_one_connection(
    delay: float,
) -> None:
    """``a`` gives up its dial at some point of the handshake while ``b`` dials it: both end
    with the same single connection, whichever dial got through."""
    config = HostConfig(redundant_grace=0.5)
    async with running(config) as a, running(config) as b:
        mine = asyncio.create_task(a.connect(b.peer_id, b.listen_addrs))
        theirs = asyncio.create_task(b.connect(a.peer_id, a.listen_addrs))
        await asyncio.sleep(delay)
        mine.cancel()
        with suppress(asyncio.CancelledError):  # or it got through before the cancel
            await mine
        conn_b = await theirs
        assert await round_trip(conn_b, b"through") == b"through"

        def settled() -> bool:
            live_a = [c for c in a.connmgr.connections(b.peer_id) if not c.is_closed]
            live_b = [c for c in b.connmgr.connections(a.peer_id) if not c.is_closed]
            return len(live_a) == len(live_b) == 1

        await wait_for(settled, timeout=10)
        kept = await a.connect(b.peer_id)
        assert await round_trip(kept, b"after") == b"after"
        assert dial_tasks() == []
        assert a.connmgr.total_holds() == b.connmgr.total_holds() == 0


@pytest.mark.parametrize("delay", [0.0, 0.0003, 0.0006, 0.001, 0.0015, 0.002, 0.003])
async def test_cancel_at_any_point_of_the_handshake_leaves_both_sides_consistent(
    delay: float,
) -> None:
    """Wherever the cancel lands (before the TCP connect, inside Noise, after the upgrade),
    the listener frees its half-done handshake and both sides agree on what exists."""
    async with running() as a, running() as b:
        waiter = asyncio.create_task(a.connect(b.peer_id, b.listen_addrs))
        await asyncio.sleep(delay)
        waiter.cancel()
        with suppress(asyncio.CancelledError):
            await waiter
        assert dial_tasks() == []

        def consistent() -> bool:
            live_a = [c for c in a.connmgr.connections(b.peer_id) if not c.is_closed]
            live_b = [c for c in b.connmgr.connections(a.peer_id) if not c.is_closed]
            return b._pending_handshakes == 0 and len(live_a) == len(live_b) <= 1

        await wait_for(consistent)
        conn = await a.connect(b.peer_id, b.listen_addrs)
        assert await round_trip(conn, b"works") == b"works"
        assert a.connmgr.total_holds() == b.connmgr.total_holds() == 0


async def test_a_short_first_caller_does_not_cut_the_dial_short_for_the_others() -> None:
    async with running() as a, running() as b, gate_to(b) as gate:
        hasty = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=0.3))
        patient = asyncio.create_task(a.connect(b.peer_id, [gate.addr], timeout=30))
        with pytest.raises(TimeoutError):
            await hasty
        assert not patient.done()
        gate.open()
        conn = await patient
        assert gate.accepted == 1 and a.connmgr.get(b.peer_id) is conn
        assert await round_trip(conn, b"patience") == b"patience"
