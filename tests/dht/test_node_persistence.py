"""Persistence (DESIGN.md §6, acceptance 7): the repo keeps identity, records, providers
and the routing table's peers; a SIGKILL loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from multiformats import CID, multihash

from zikade_py.dht import FinishReason, Node
from zikade_py.dht.messages import add_provider, make_record, put_value
from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr

from .conftest import loopback_config, start_network, wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


async def test_records_providers_and_identity_survive_a_restart(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    cid = CID("base32", 1, "raw", multihash.digest(b"kept", "sha2-256"))
    async with Node(loopback_config(repo=repo)) as node:
        first_id = node.peer_id
        key, value = make_pk_record(node.host.public_key)
        result = await node.put_value(key, value, timeout=2)
        assert result.reason is FinishReason.FAILED  # nobody to store to, but stored locally
        await node.provide(cid, timeout=2)
        foreign = PrivateKey.generate().public_key
        fkey, fvalue = make_pk_record(foreign)
        node.values.put(fkey, fvalue, time.time())
    assert (repo / "identity.key").exists() and (repo / "datastore.sqlite").exists()
    async with Node(loopback_config(repo=repo)) as again:
        assert again.peer_id == first_id
        assert await again.get_value(key, timeout=2) == value
        assert await again.get_value(fkey, timeout=2) == fvalue
        found = [p async for p in again.find_providers(cid, count=1, timeout=2)]
        assert [p.peer_id for p in found] == [first_id]
        assert again.providers.list_local() == [bytes(cid.digest)]


async def test_routing_table_peers_are_remembered_across_a_restart(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    async with start_network(4) as net:
        node = Node(loopback_config(repo=repo, bootstrap=[str(net.bootstrap.multiaddrs[0])]))
        async with node:
            await node.bootstrap()
            await wait_for(lambda: len(node.routing_table()) >= 4)
            before = {e.peer.peer_id for e in node.routing_table()}
        # Restart with no bootstrap peers configured: the saved table is the way back in.
        async with Node(loopback_config(repo=repo)) as again:
            assert set(again.peer_book.peers(time.time())) >= before
            result = await again.bootstrap()
            assert set(result.connected) == before
            assert result.reason is FinishReason.DONE
            await wait_for(lambda: len(again.routing_table()) >= 4)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from zikade_py.dht import Node, NodeConfig

    async def main(repo):
        node = Node(NodeConfig(mode="server", repo=repo, republish=False))
        await node.start()
        original = node.on_provider_added

        def acked(key, provider):
            original(key, provider)  # the server stored (and committed) it before calling us
            print("provider", key.hex(), flush=True)

        node.on_provider_added = acked
        print("ready", node.multiaddrs[0], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sigkill_while_storing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    repo = tmp_path / "child-repo"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(repo),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    try:
        line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
        assert line[0] == "ready"
        target = Multiaddr.parse(line[1])
        peer = target.peer_id()
        assert peer is not None
        acked_values: dict[bytes, bytes] = {}
        acked_providers: set[bytes] = set()
        async with Node(loopback_config()) as parent:
            await parent.host.connect(peer, [target.without_peer_id()])

            async def read_acks() -> None:
                assert child.stdout is not None
                while raw := await child.stdout.readline():
                    if not raw.endswith(b"\n"):
                        break  # cut short by the kill: not an acknowledgement
                    kind, hexkey = raw.decode().split()
                    assert kind == "provider"
                    acked_providers.add(bytes.fromhex(hexkey))

            reader = asyncio.create_task(read_acks())

            async def put_one() -> None:
                key, value = make_pk_record(PrivateKey.generate().public_key)
                msg = put_value(key, make_record(key, value))
                await parent.router.send_message(peer, msg)  # returns on the echo
                acked_values[key] = value

            async def provide_one(i: int) -> None:
                mh = bytes(multihash.digest(b"content %d" % i, "sha2-256"))
                await parent.router.send_message(peer, add_provider(mh, parent.self_info()))

            async def storm() -> None:
                i = 0
                while True:
                    await asyncio.gather(put_one(), provide_one(i), provide_one(i + 1))
                    i += 2

            work = asyncio.create_task(storm())
            await wait_for(lambda: len(acked_values) >= 40 and len(acked_providers) >= 40, 60)
            child.send_signal(signal.SIGKILL)  # while the storm goes on
            await child.wait()
            await asyncio.wait_for(reader, 10)
            work.cancel()
            with pytest.raises((asyncio.CancelledError, Exception)):
                await work
        # Restart on the same repo (in this process) and look for every acknowledged record.
        async with Node(loopback_config(repo=repo)) as again:
            assert again.peer_id == peer
            now = time.time()
            lost_values = [k for k, v in acked_values.items() if again.values.get(k, now) is None]
            assert not lost_values
            for k, v in acked_values.items():
                stored = again.values.get(k, now)
                assert stored is not None and stored[0] == v
            lost = [k for k in acked_providers if not again.providers.get(k, now)]
            assert not lost
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
