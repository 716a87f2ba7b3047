"""``--timeout`` on every files command: a CID nobody has ends each fetching command with one
``timed out`` line (through the daemon and without one), ``cat`` through the daemon is
bounded as a whole; an add that fails or is cancelled half-way leaves no pin behind."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.cli.conftest import Daemons, init_repo, zikade
from tests.cli.conftest import daemons as daemons
from tests.files.test_content_node import config
from zikade_py.files import ContentNode
from zikade_py.http.files_api import add_files_routes

pytestmark = pytest.mark.timeout(120)

MISSING = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
FETCHES = [["cat", MISSING], ["get", MISSING, "-o", "x.bin"], ["block", "get", MISSING],
           ["block", "stat", MISSING]]


def test_every_fetch_times_out_through_the_daemon(tmp_path: Path, daemons: Daemons) -> None:
    d = daemons.start("d", "--mode", "server")
    for args in FETCHES:
        res = zikade(*args, "--timeout", "1s", repo=d.repo)
        res.one_error("timed out")
        assert res.out == ""
    # a command that finishes in time takes the option too
    zikade("block", "put", "--timeout", "5s", "-", repo=d.repo, stdin=b"in time").ok()
    zikade("add", "-q", "--timeout", "5s", str(_file(tmp_path)), repo=d.repo).ok()
    zikade("bitswap", "stat", "--timeout", "5s", repo=d.repo).ok()


def test_every_fetch_times_out_without_a_daemon(tmp_path: Path, daemons: Daemons) -> None:
    seed = daemons.start("seed", "--mode", "server")
    repo = tmp_path / "client"
    init_repo(repo, "--bootstrap", seed.swarm_addr)
    for args in FETCHES:
        zikade(*args, "--timeout", "2s", repo=repo).one_error("timed out")


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(random.Random(12).randbytes(1000))
    return path


async def test_a_failed_add_leaves_no_pin() -> None:
    async def broken() -> AsyncIterator[bytes]:
        for i in range(40):  # 32 chunks (one batch) stored under the add's pending pin
            yield bytes([i]) * 262_144
        raise OSError("the disk went away")

    async with ContentNode(config()) as node:
        with pytest.raises(OSError):
            await node.add(broken(), provide=False)
        assert node.blockstore.pins() == [], "the pending pin was left behind"
        assert (await node.blockstore.gc()).blocks == 32, "its blocks are collectable"


class _SlowNode(ContentNode):
    """A file whose bytes trickle in forever (a provider that never finishes)."""

    async def size_of_file(self, cid: object) -> int:
        return 1_000_000

    async def cat(self, cid: object, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.2)  # each chunk well inside any per-chunk bound
            yield b"x" * 100


@pytest.mark.parametrize("path", ["cat", "get"])
async def test_rpc_timeout_bounds_the_whole_transfer(path: str) -> None:
    app = web.Application()
    add_files_routes(app, _SlowNode(config()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{port}/api/v0/{path}?arg={MISSING}&timeout=1s"
            async with asyncio.timeout(20), client.post(url) as reply:
                assert reply.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await reply.read()  # cut short at 1 s, not trickling forever
    finally:
        await runner.cleanup()
