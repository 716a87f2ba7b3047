"""A closed connection is freed by reference counting, not left for the cycle collector.

Issue 9, scenario 1b: 30 s after 400 identities disconnected, 24,643 objects of theirs
(about 60 per connection: yamux session, Noise session, transport, tasks, buffers) still
waited for a full garbage collection, which an idle node may not run for a long time, and
kept ~7 MB resident. The cycle: a cancelled task of the session (keep-alive, writer) keeps
its CancelledError, whose traceback holds the task's frame and so the session, which held
the task. QUIC sessions had the same cycle, and another through their connection-id hook.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.quic.session import QuicSession
from zikade_py.p2p.yamux import YamuxSession

from .host_helpers import FAST, until

pytestmark = pytest.mark.timeout(60)

TCP = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
QUIC = Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")


@contextmanager
def collector_finds() -> Iterator[list[object]]:
    """The objects a full collection finds after the block: only cycles end up there."""
    gc.collect()  # whatever earlier tests left
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)  # what the collector finds is kept to be looked at
    found: list[object] = []
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)


async def connect_ping_close(listen: Multiaddr, transport: str) -> None:
    """Three clients in turn connect to a target, ping it and leave; then the target closes."""
    target = Host(PrivateKey.generate(), HostConfig(keepalive_interval=30.0, **FAST))
    await target.start([listen])
    try:
        for _ in range(3):
            client = Host(PrivateKey.generate(), HostConfig(**FAST))
            await client.start([])
            try:
                conn = await client.connect(target.peer_id, target.listen_addrs, timeout=10)
                assert conn.transport == transport
                assert await client.ping(target.peer_id, timeout=10)
            finally:
                await client.close()
            await until(lambda: not len(target.connmgr))
    finally:
        await target.close()


async def test_a_closed_connection_leaves_no_yamux_session_in_a_cycle() -> None:
    with collector_finds() as found:
        await connect_ping_close(TCP, "tcp")
    assert [o for o in found if isinstance(o, YamuxSession)] == []


async def test_a_closed_connection_leaves_no_quic_session_in_a_cycle() -> None:
    with collector_finds() as found:
        await connect_ping_close(QUIC, "quic")
    assert [o for o in found if isinstance(o, QuicSession)] == []
