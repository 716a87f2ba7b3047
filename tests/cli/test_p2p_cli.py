"""``zikade id`` and ``zikade ping`` run as the installed console script against a live host.

Every test runs on a repo made by ``zikade init`` (the ``repo`` fixture): no command
but init creates an identity (issue 11; tests/cli/test_cli_conventions.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zikade_cli.p2p_commands import IDENTITY_FILE

from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.keystore import load_or_create_identity
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(120)

ZIKADE = Path(sys.executable).parent / "zikade"
SOME_PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


async def zikade(repo: Path, *args: str) -> tuple[int, str, str]:
    """Run the console script; return (status, stdout, stderr)."""
    env = {**os.environ, "ZIKADE_PATH": str(repo)}
    proc = await asyncio.create_subprocess_exec(
        str(ZIKADE),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    """``zikade init`` in a fresh directory."""
    path = tmp_path / "repo"
    status, _, err = await zikade(path, "init", "--no-bootstrap")
    assert status == 0, err
    return path


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    h = Host(PrivateKey.generate())

    async def noop(stream: Stream) -> None:
        await stream.close()

    h.set_stream_handler("/test/cli/1.0.0", noop)
    await h.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        yield h
    finally:
        await h.close()


def assert_one_error_line(status: int, out: str, err: str) -> None:
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in err


async def test_console_script_is_installed() -> None:
    assert ZIKADE.exists(), "run `pip install -e .` (scripts/test does)"


async def test_id_prints_our_identity_and_keeps_it(tmp_path: Path, repo: Path) -> None:
    status, out, err = await zikade(repo, "id")
    assert status == 0, err
    doc = json.loads(out)
    assert set(doc) == {"ID", "PublicKey", "Addresses", "AgentVersion", "Protocols"}
    key = load_or_create_identity(repo / IDENTITY_FILE)
    assert doc["ID"] == str(PeerID.from_public_key(key.public_key))
    assert base64.b64decode(doc["PublicKey"]) == key.public_key.to_protobuf()
    assert doc["AgentVersion"].startswith("zikade-py/")
    assert "/ipfs/ping/1.0.0" in doc["Protocols"]
    status, out2, _ = await zikade(repo, "id")
    assert status == 0 and json.loads(out2)["ID"] == doc["ID"]
    # --repo wins over the environment
    assert (await zikade(tmp_path / "other", "init", "--no-bootstrap"))[0] == 0
    status, out3, _ = await zikade(repo, "id", "--repo", str(tmp_path / "other"))
    assert status == 0 and json.loads(out3)["ID"] != doc["ID"]


async def test_id_of_a_remote_peer(repo: Path, host: Host) -> None:
    target = str(host.listen_addrs[0].with_peer_id(host.peer_id))
    status, out, err = await zikade(repo, "id", target, "--timeout", "20")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["ID"] == str(host.peer_id)
    assert base64.b64decode(doc["PublicKey"]) == host.public_key.to_protobuf()
    assert "/test/cli/1.0.0" in doc["Protocols"]
    assert target in doc["Addresses"]


async def test_ping(repo: Path, host: Host) -> None:
    target = str(host.listen_addrs[0].with_peer_id(host.peer_id))
    status, out, err = await zikade(repo, "ping", target, "-n", "3", "-i", "0")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"PING {host.peer_id}."
    pongs = [line for line in lines if line.startswith("Pong received: time=")]
    assert len(pongs) == 3
    assert all(line.endswith(" ms") for line in pongs)
    assert lines[-1].startswith("Average latency: ") and lines[-1].endswith("ms")


@pytest.mark.parametrize(
    "args",
    [
        ("id", "/ip4/1.2.3/tcp/4001"),
        ("id", "not-a-multiaddr"),
        ("id", "/ip4/127.0.0.1/tcp/4001"),  # no /p2p/
        ("ping", f"/ip4/127.0.0.1/tcp/99999/p2p/{SOME_PEER}"),
        ("ping", "/ip4/127.0.0.1/tcp/4001/p2p/notapeer"),
        ("ping", f"/ip4/127.0.0.1/tcp/4001/p2p/{SOME_PEER}", "-n", "0"),
    ],
)
async def test_bad_input_gives_one_error_line(repo: Path, args: tuple[str, ...]) -> None:
    status, out, err = await zikade(repo, *args)
    assert_one_error_line(status, out, err)


async def test_unreachable_peer_gives_one_error_line(repo: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    peer = PeerID.from_public_key(PrivateKey.generate().public_key)
    target = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"
    for command in ("id", "ping"):
        status, out, err = await zikade(repo, command, target, "--timeout", "5")
        assert_one_error_line(status, out, err)


async def test_wrong_peer_id_is_refused(repo: Path, host: Host) -> None:
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    target = str(host.listen_addrs[0].with_peer_id(other))
    status, out, err = await zikade(repo, "id", target, "--timeout", "10")
    assert_one_error_line(status, out, err)
