"""``zikade daemon`` in auto mode prints reachability and mode as it learns them, and ``zikade
id`` (the RPC API's ``id``) shows them. Loopback stand-ins as in test_mode_auto.py: the
daemon runs with ``--public-net 127.0.0.0/8`` on its own 127.0.1.x address."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from zikade_py.dht import Node

from .test_mode_auto import PUBLIC_LOOPBACK, stand_in

pytestmark = pytest.mark.timeout(120)

ZIKADE = Path(sys.executable).parent / "zikade"


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(ZIKADE), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_daemon_reports_reachability_and_mode(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    await run("init", "--no-bootstrap", "--repo", str(repo))
    async with Node(stand_in("server")) as server:
        assert server.config.host == PUBLIC_LOOPBACK
        proc = await asyncio.create_subprocess_exec(
            str(ZIKADE), "daemon", "--repo", str(repo), "--mode", "auto",
            "--public-net", "127.0.0.0/8", "--listen", "/ip4/127.0.1.240/tcp/0",
            "--api", "127.0.0.1:0", "--bootstrap", str(server.multiaddrs[0]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                while "reachability: public; DHT mode: server" not in lines:
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"daemon exited: {lines}"
                    lines.append(line.strip())
            assert "treating as public: 127.0.0.0/8" in lines
            start = next(x for x in lines if x.startswith("DHT mode: "))
            assert start == "DHT mode: auto (now client; reachability unknown, learnt from AutoNAT)"
            doc = json.loads(await run("id", "--repo", str(repo)))
            assert doc["Reachability"] == "public" and doc["DHTMode"] == "server"
            assert "/ipfs/kad/1.0.0" in doc["Protocols"]
            # the server took us into its table after the identify push
            async with asyncio.timeout(30):
                while doc["ID"] not in {str(e.peer.peer_id) for e in server.routing_table()}:
                    await asyncio.sleep(0.1)
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)

