"""The command line over QUIC (issue 14, acceptance 4): ``zikade ping`` and ``zikade id``
take ``/quic-v1`` multiaddrs, the daemon listens on QUIC beside TCP (its default config
names both) and ``zikade id`` lists both."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zikade_py.http.repo import DEFAULT_SWARM
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr

from .conftest import Daemons

pytestmark = pytest.mark.timeout(120)

ZIKADE = Path(sys.executable).parent / "zikade"


async def zikade(repo: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "ZIKADE_PATH": str(repo)}
    proc = await asyncio.create_subprocess_exec(
        str(ZIKADE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    status, _, err = await zikade(path, "init", "--no-bootstrap")
    assert status == 0, err
    return path


@pytest.fixture
async def quic_host() -> AsyncIterator[Host]:
    h = Host(PrivateKey.generate())
    await h.start([Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")])  # QUIC only
    try:
        yield h
    finally:
        await h.close()


def test_default_swarm_listens_on_tcp_and_quic() -> None:
    assert any(Multiaddr.parse(a).tcp_endpoint() for a in DEFAULT_SWARM)
    assert any(Multiaddr.parse(a).quic_endpoint() for a in DEFAULT_SWARM)


async def test_ping_a_quic_only_peer(repo: Path, quic_host: Host) -> None:
    target = str(quic_host.listen_addrs[0].with_peer_id(quic_host.peer_id))
    status, out, err = await zikade(repo, "ping", target, "-n", "2", "-i", "0")
    assert status == 0, err
    assert len([line for line in out.splitlines() if line.startswith("Pong received")]) == 2


async def test_id_of_a_quic_only_peer(repo: Path, quic_host: Host) -> None:
    target = str(quic_host.listen_addrs[0].with_peer_id(quic_host.peer_id))
    status, out, err = await zikade(repo, "id", target, "--timeout", "20")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["ID"] == str(quic_host.peer_id)
    assert target in doc["Addresses"]


async def test_daemon_on_tcp_and_quic_is_listed_and_reachable_by_both(
    daemons: Daemons, repo: Path
) -> None:
    d = daemons.start("d", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1")
    status, out, err = await zikade(d.repo, "id")
    assert status == 0, err
    addrs = json.loads(out)["Addresses"]
    quic = [a for a in addrs if "/quic-v1/" in a]
    tcp = [a for a in addrs if "/tcp/" in a]
    assert quic and tcp, addrs
    for target in (quic[0], tcp[0]):
        status, out, err = await zikade(repo, "ping", target, "-n", "1", "-i", "0")
        assert status == 0, err
