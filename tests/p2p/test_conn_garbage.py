"""A closed connection is freed by reference counting, not left for the cycle collector.

Issue 9, scenario 1b: 30 s after 400 identities disconnected, 24,643 objects of theirs
(about 60 per connection: yamux session, Noise session, transport, tasks, buffers) still
waited for a full garbage collection, which an idle node may not run for a long time, and
kept ~7 MB resident. The cycle: a cancelled task of the session (keep-alive, writer) keeps
its CancelledError, whose traceback holds the task's frame and so the session, which held
the task.
"""

from __future__ import annotations

import gc

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.yamux import YamuxSession

from .host_helpers import FAST, running, until

pytestmark = pytest.mark.timeout(60)


async def test_a_closed_connection_leaves_no_yamux_session_in_a_cycle() -> None:
    gc.collect()  # whatever earlier tests left
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)  # what the collector finds is kept to be looked at
    try:
        async with running(HostConfig(keepalive_interval=30.0, **FAST)) as target:
            for _ in range(3):
                client = Host(PrivateKey.generate(), HostConfig(**FAST))
                await client.start([])
                try:
                    await client.connect(target.peer_id, target.listen_addrs, timeout=10)
                    assert await client.ping(target.peer_id, timeout=10)
                finally:
                    await client.close()
                await until(lambda: not len(target.connmgr))
        del client
        gc.collect()
        cycles = [o for o in gc.garbage if isinstance(o, YamuxSession)]
        assert cycles == []
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)


async def test_a_closed_connection_leaves_no_quic_session_in_a_cycle() -> None:
    from zikade_py.p2p.multiaddr import Multiaddr
    from zikade_py.p2p.quic.session import QuicSession

    quic = Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        target = Host(PrivateKey.generate(), HostConfig(keepalive_interval=30.0, **FAST))
        await target.start([quic])
        try:
            for _ in range(3):
                client = Host(PrivateKey.generate(), HostConfig(**FAST))
                await client.start([])
                try:
                    conn = await client.connect(target.peer_id, target.listen_addrs, timeout=10)
                    assert conn.transport == "quic"
                    assert await client.ping(target.peer_id, timeout=10)
                finally:
                    await client.close()
                await until(lambda: not len(target.connmgr))
        finally:
            await target.close()
        del client, conn
        gc.collect()
        cycles = [o for o in gc.garbage if isinstance(o, QuicSession)]
        assert cycles == []
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
