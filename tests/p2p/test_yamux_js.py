"""Our Yamux session against the real js muxer (@chainsafe/libp2p-yamux) on raw TCP.

No Noise or multistream here: the js muxer runs directly on the socket, so a failure
points at Yamux itself (windows, ACKs, pings, GoAway). Skipped when node or the pinned
npm packages of tests/interop are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from zikade_py.p2p.io import TcpStream
from zikade_py.p2p.yamux import SessionClosedError, YamuxConfig, YamuxSession, YamuxStream

HERE = Path(__file__).parent
PEER = HERE / "yamux_js_peer.mjs"
MODULES = HERE.parent / "interop" / "node_modules" / "@chainsafe" / "libp2p-yamux"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("node") is None or not MODULES.is_dir(),
        reason="needs node and tests/interop/node_modules (npm ci in tests/interop)",
    ),
]


async def _echo(stream: YamuxStream) -> None:
    data = bytearray()
    while chunk := await stream.read():
        data += chunk
    await stream.write(bytes(data))
    await stream.close()


async def test_interop_with_js_yamux() -> None:
    streams, size = 20, 512 * 1024
    sessions: list[YamuxSession] = []
    results: dict[str, bool] = {}
    handler_done = asyncio.Event()

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        session = YamuxSession(
            TcpStream(r, w), is_client=False, config=YamuxConfig(keepalive_interval=0.1)
        )
        sessions.append(session)
        await session.start()
        tasks: list[asyncio.Task[None]] = []

        async def open_to_js() -> None:
            stream = await session.open_stream()
            payload = os.urandom(3 * 1024 * 1024)  # > one window: needs js window updates

            async def write_then_close() -> None:
                await stream.write(payload)
                await stream.close()

            writer = asyncio.create_task(write_then_close())
            got = bytearray()
            while chunk := await stream.read():
                got += chunk
            await writer
            results["python stream echoed"] = bytes(got) == payload

        tasks.append(asyncio.create_task(open_to_js()))
        try:
            while True:
                tasks.append(asyncio.create_task(_echo(await session.accept_stream())))
        except SessionClosedError:
            pass
        finally:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            results["handlers ok"] = all(o is None for o in outcomes)
            handler_done.set()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(PEER),
        str(port),
        str(streams),
        str(size),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, stderr.decode(errors="replace")
        report = json.loads(stdout.decode().strip().splitlines()[-1])
        assert report == {"echoed": streams, "inbound": 3 * 1024 * 1024, "status": "open"}
        await asyncio.wait_for(handler_done.wait(), 20)
        (session,) = sessions
        assert results == {"python stream echoed": True, "handlers ok": True}
        assert session.remote_goaway == 0  # js closes with GoAway(normal)
        assert session.rtt > 0  # our keep-alive pings were answered by js
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for session in sessions:
            await session.close()
        server.close()
        await server.wait_closed()
