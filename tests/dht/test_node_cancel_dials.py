"""Cancelled lookups leave no dial behind (issue 8, acceptance).

The querying node ``q`` knows a *directory* that answers every request by naming
five *TCP black holes* (listeners on 127.0.0.1 that accept the connection and never
send a byte, so a dial to one waits in the Noise handshake) and two kad black holes
(they accept kad streams and never answer). 200 lookups, each cancelled after 50 ms,
start in waves of ten, a wave every 50 ms, each as the one before is being cancelled:
dials are shared, abandoned, and started afresh while earlier ones are torn down.
Within a second of the last cancel, the tasks and the open file descriptors of the
process are back to what they were before.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter
from collections.abc import Callable

import pytest
from p2p.tcp_stubs import SilentListener

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.network import NetworkConfig
from zikade_py.core.routing.behaviour import RoutingConfig
from zikade_py.core.routing.include import IncludeConfig
from zikade_py.dht import Node
from zikade_py.dht.messages import PeerInfo
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

from .conftest import black_hole, directory, loopback_config, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="function")]

LOOKUPS = 200
CANCEL_AFTER = 0.05
WAVE = 10
"""Lookups per wave; a wave starts every ``CANCEL_AFTER`` seconds, 1 ms between its lookups."""

CLEANUP_BOUND = 1.0
"""Seconds after the last cancel within which everything must be back to the baseline."""

QUIET_ROUTING = RoutingConfig(
    candidates_from_answers=False,
    enable_probe=False,
    enable_explore=False,
    include=IncludeConfig(check_timeout=0.5),
)
"""No background dials: peers named in answers are not checked for the routing table, so
every dial ``q`` makes during the test belongs to a lookup."""


class TcpBlackHole(SilentListener):
    """A :class:`SilentListener` with a peer id: the directory names it as a DHT peer, so
    lookups dial it and wait in the Noise handshake."""

    def __init__(self) -> None:
        super().__init__()
        self.peer_id = PeerID.from_public_key(PrivateKey.generate().public_key)

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.peer_id, (self.addr,))

    async def start(self) -> TcpBlackHole:
        await super().start()
        return self


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_kinds() -> Counter[str]:
    """The running tasks by coroutine name (the test's own task left out): the connection
    managers' timers re-create their short ``Event.wait`` tasks, so identities change."""
    me = asyncio.current_task()
    return Counter(
        getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks() if t is not me
    )


def dial_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("dial-") and not t.done())


def random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


async def poll(condition: Callable[[], bool], bound: float) -> bool:
    """Whether ``condition`` holds within ``bound`` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_200_cancelled_lookups_leave_no_dial_socket_or_task_behind() -> None:
    tcp_holes = [await TcpBlackHole().start() for _ in range(5)]
    kad_holes = [await black_hole().start() for _ in range(2)]
    named: list[PeerInfo] = [h.info for h in tcp_holes] + [h.info for h in kad_holes]
    dirp = await directory(lambda: named).start()
    # every lookup's requests are admitted (at the default of 8 per peer the later
    # ones would be dropped and their lookups end on their own before the cancel)
    network = NetworkConfig(max_per_node=LOOKUPS)
    q = Node(loopback_config(coordinator=CoordinatorConfig(routing=QUIET_ROUTING, network=network)))
    await q.start()
    try:
        q.add_peer(dirp.multiaddr)
        for hole in tcp_holes:  # q knows their addresses, as it would from any answer
            q.add_peer(f"{hole.addr}/p2p/{hole.peer_id}")
        for kad in kad_holes:  # their connections stay: made now, they are part of the baseline
            await q.host.connect(kad.peer_id, kad.host.listen_addrs)
        await wait_for(lambda: len(q.routing_table()) == 1)
        include = q.driver.coordinator.routing.include
        await wait_for(
            lambda: q.router.in_flight == 0
            and not (include.checking() or include.queued() or include.retrying())
        )
        hosts = [q.host, dirp.host, *(k.host for k in kad_holes)]

        def settled() -> bool:  # the set-up's checks, identify exchanges and streams are over
            return (
                dial_tasks() == 0
                and all(c.num_streams == 0 for h in hosts for c in h.connmgr.connections())
                and "HostStreams._handle_stream" not in task_kinds()
                and all(h.closed == h.accepted for h in tcp_holes)
            )

        await wait_for(settled)
        accepted_before = sum(h.accepted for h in tcp_holes)
        gc.collect()  # sockets earlier tests left in garbage cycles close now, not mid-test
        baseline_tasks, baseline_fds = task_kinds(), open_fds()
        peak_dials = 0

        async def cancelled_lookup(i: int) -> None:
            nonlocal peak_dials
            await asyncio.sleep((i // WAVE) * CANCEL_AFTER + (i % WAVE) * 0.001)
            key = random_peer()
            call = (
                q.find_peer(key, local_first=False) if i % 2 else q.get_closest_peers(key)
            )
            task: asyncio.Task[object] = asyncio.create_task(call)
            await asyncio.sleep(CANCEL_AFTER)
            peak_dials = max(peak_dials, dial_tasks())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        outcomes = await asyncio.gather(
            *(cancelled_lookup(i) for i in range(LOOKUPS)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        # the last cancel has returned: its requests and the dials they started are gone
        assert q.router.in_flight == 0 and q.driver.requests_running == 0
        assert q.driver.queries_running == 0
        assert q.host.connmgr.total_holds() == 0
        assert peak_dials > 0, "no lookup was dialing a black hole when it was cancelled"
        assert sum(h.accepted for h in tcp_holes) - accepted_before >= 5
        leftover_dials = dial_tasks()
        leftover_sockets = sum(h.accepted - h.closed for h in tcp_holes)
        back = await poll(
            lambda: task_kinds() == baseline_tasks and open_fds() == baseline_fds,
            CLEANUP_BOUND,
        )
        assert back, (
            f"{CLEANUP_BOUND} s after the last cancel: tasks {task_kinds() - baseline_tasks} "
            f"above the baseline, {open_fds() - baseline_fds} fds above it; at the last "
            f"cancel {leftover_dials} dial tasks ran and {leftover_sockets} black-hole "
            "sockets were open"
        )
        assert all(h.closed == h.accepted for h in tcp_holes)
    finally:
        await q.close()
        for peer in [dirp, *kad_holes]:
            await peer.close()
        for hole in tcp_holes:
            await hole.close()
