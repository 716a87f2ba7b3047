"""The RPC API refuses web pages as Kubo does (sharness ``t0401-api-browser-security``).

Issue 9: any web page open in the user's browser could drive the daemon (a
cross-origin POST rewrote the repo's bootstrap list, announced keys, made the
node dial internal host:port; a rebinding ``Host`` was accepted) and a query
kept running after its client left. Every test runs a real :class:`Daemon`
on 127.0.0.1 and speaks raw HTTP/1.1 to it, so that each header is exactly
what a browser (or our CLI) would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_kad import black_hole, directory
from multiformats import CID

from zikade_py.core.pool import PoolConfig
from zikade_py.core.query import QueryConfig
from zikade_py.dht import CoordinatorConfig, Node, NodeConfig
from zikade_py.dht.messages import Message
from zikade_py.http.api_guard import ApiGuard, HostCheck, split_host
from zikade_py.http.client import RpcClient
from zikade_py.http.daemon import Daemon, DaemonConfig, exposure_warning
from zikade_py.http.repo import init_repo, load_config
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(60)

EVIL = "http://evil.example"


@dataclass
class Reply:
    """A raw HTTP/1.1 answer."""

    status: int
    headers: dict[str, str]
    body: bytes


async def http(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    host: str | None = "",
) -> Reply:
    """One request with exactly these headers (``host=""``: ``127.0.0.1:<port>``; None: no Host)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1", "Content-Length: 0", "Connection: close"]
    if host is not None:
        head.append(f"Host: {host or f'127.0.0.1:{port}'}")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(int(status_line.split()[1]), fields, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_text, _, data = data.partition(b"\r\n")
        size = int(size_text.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read what has arrived, so that closing sends a FIN (a client that read it all)."""
    for _ in range(100):
        try:
            if not await asyncio.wait_for(reader.read(65536), 0.3):
                return
        except TimeoutError:
            return


def _cid(data: bytes) -> str:
    return str(CID("base32", 1, "raw", b"\x12\x20" + hashlib.sha256(data).digest()))


def _random_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


async def _until(cond: Callable[[], bool], what: str, bound: float = 20.0) -> None:
    for _ in range(int(bound / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@dataclass
class Served:
    """A daemon on 127.0.0.1 with an initialised repo, and its API port."""

    daemon: Daemon
    repo: Path

    @property
    def port(self) -> int:
        return int(self.daemon.api_addr.rsplit("/", 1)[-1])

    @property
    def node(self) -> Node:
        return self.daemon.node


@contextlib.asynccontextmanager
async def _daemon(
    tmp_path: Path, node: NodeConfig | None = None, **kw: object
) -> AsyncIterator[Served]:
    repo = tmp_path / "repo"
    init_repo(repo, bootstrap=[])  # not the public default list
    node = node or NodeConfig(mode="server", bootstrap=[])
    config = DaemonConfig(node=node, repo=repo, api="127.0.0.1:0", **kw)  # type: ignore[arg-type]
    async with Daemon(config) as daemon:
        yield Served(daemon, repo)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with _daemon(tmp_path) as s:
        yield s


# -- the findings of issue 9 (each failed on main before the guard)


async def test_cross_origin_bootstrap_add_is_forbidden_and_the_config_untouched(
    served: Served,
) -> None:
    before = (served.repo / "config").read_bytes()
    seed = f"/ip4/127.0.0.1/tcp/4001/p2p/{_random_peer()}"
    for headers in (
        {"Origin": EVIL},
        {"Referer": f"{EVIL}/attack.html"},
        {"Origin": "null"},  # a sandboxed iframe or a file:// page
    ):
        reply = await http(served.port, "POST", f"/api/v0/bootstrap/add?arg={seed}", headers)
        assert reply.status == 403, (headers, reply)
        assert reply.body == b"403 - Forbidden\n"
    assert (served.repo / "config").read_bytes() == before
    assert load_config(served.repo).bootstrap == []


async def test_cross_origin_provide_and_ping_of_an_internal_address_are_forbidden(
    tmp_path: Path,
) -> None:
    dials = 0

    async def internal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dials
        dials += 1
        writer.close()

    service = await asyncio.start_server(internal, "127.0.0.1", 0)
    internal_port = service.sockets[0].getsockname()[1]
    try:
        # someone to provide to: main answered 200 and stored the key
        async with _daemon(tmp_path) as s, Node(NodeConfig(mode="server")) as peer:
            await peer.bootstrap([str(s.daemon.swarm_addrs[0])], timeout=10)
            cid = _cid(b"announced by a web page")
            reply = await http(
                s.port, "POST", f"/api/v0/routing/provide?arg={cid}", {"Origin": EVIL}
            )
            assert reply.status == 403
            assert s.node.providers.list_local() == []
            target = f"/ip4/127.0.0.1/tcp/{internal_port}/p2p/{_random_peer()}"
            reply = await http(
                s.port, "POST", f"/api/v0/ping?arg={target}&count=1", {"Origin": EVIL}
            )
            assert reply.status == 403
            await asyncio.sleep(0.2)  # a dial, had it been made, would have landed by now
            assert dials == 0
    finally:
        service.close()
        await service.wait_closed()


async def test_foreign_host_is_forbidden_everywhere_on_the_api_server(served: Served) -> None:
    """DNS rebinding: a page of evil.example:<port>, its name now resolving to 127.0.0.1."""
    rebound = f"evil.example:{served.port}"
    same_origin = {"Origin": f"http://{rebound}"}
    reply = await http(served.port, "POST", "/api/v0/id", same_origin, host=rebound)
    assert reply.status == 403
    reply = await http(served.port, "POST", "/api/v0/id", host=rebound)  # no Origin at all
    assert reply.status == 403
    for path in ("/debug/metrics/prometheus", f"/routing/v1/peers/{served.node.peer_id}"):
        reply = await http(served.port, "GET", path, host=rebound)
        assert reply.status == 403, path
    for host in ("192.168.1.10:5001", "[fe80::1]:5001", "evil.example", "127.0.0.1.evil.example"):
        assert (await http(served.port, "POST", "/api/v0/id", host=host)).status == 403, host


async def test_get_and_other_methods_are_405_as_kubo(served: Served) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        reply = await http(served.port, method, "/api/v0/id")
        assert reply.status == 405, method
        assert reply.headers["allow"] == "OPTIONS, POST"
    reply = await http(served.port, "GET", "/api/v0/bootstrap/add?arg=x")
    assert reply.status == 405
    reply = await http(served.port, "GET", "/api/v0/no/such/command")
    assert reply.status == 405
    reply = await http(served.port, "OPTIONS", "/api/v0/id")  # not a preflight
    assert reply.status == 204 and reply.headers["allow"] == "OPTIONS, POST"


async def test_a_query_stops_when_its_client_disconnects(tmp_path: Path) -> None:
    """The node's query ends and its request to the black hole is cancelled (stream reset)."""
    pool = PoolConfig(query_timeout=120, query=QueryConfig(request_timeout=120))
    cfg = NodeConfig(
        mode="server", bootstrap=[],
        request_timeout=120, query_timeout=120, coordinator=CoordinatorConfig(pool=pool)
    )
    async with (
        black_hole() as hole,
        directory(lambda: [hole.info]) as lobby,
        _daemon(tmp_path, cfg) as s,
    ):
        s.node.add_peer(lobby.multiaddr)
        await _until(
            lambda: any(e.peer.peer_id == lobby.info.peer_id for e in s.node.routing_table()),
            "the directory in the routing table",
        )
        cancelled = s.node.stats()["requests_cancelled"]
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        path = f"/api/v0/routing/findpeer?arg={_random_peer()}&timeout=120s"
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )
        assert (await asyncio.wait_for(reader.readline(), 20)).startswith(b"HTTP/1.1 200")
        await _until(
            lambda: any(r.type == Message.FIND_NODE for r in hole.requests),
            "the query to reach the black hole",
        )
        assert s.node.stats()["queries_running"] == 1
        assert Message.FIND_NODE not in hole.reset_types
        await _drain(reader)  # unread data would make close() a reset, which aiohttp notices
        writer.close()
        await _until(lambda: s.node.stats()["queries_running"] == 0, "the query to be cancelled")
        await _until(lambda: Message.FIND_NODE in hole.reset_types, "the request to be cancelled")
        assert s.node.stats()["requests_cancelled"] > cancelled


# -- what Kubo allows (t0401) and what our clients send


async def test_kubo_t0401_browser_rules(served: Served) -> None:
    port, peer = served.port, str(served.node.peer_id)
    mozilla = {"User-Agent": "Mozilla/5.0"}
    # "browser is unable to access API without Origin"
    assert (await http(port, "POST", "/api/v0/id", mozilla)).status == 403
    # "... with invalid Origin"
    invalid = {**mozilla, "Origin": "https://invalid.example.com"}
    assert (await http(port, "POST", "/api/v0/id", invalid)).status == 403
    # "... able to access API if Origin is the API port on localhost" (ipv4, ipv6, name)
    for origin in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}", f"http://localhost:{port}"):
        reply = await http(port, "POST", "/api/v0/id", {**mozilla, "Origin": origin})
        assert reply.status == 200, origin
        assert peer.encode() in reply.body
    # a loopback origin on another port is another site
    other = {**mozilla, "Origin": f"http://127.0.0.1:{port + 1}"}
    assert (await http(port, "POST", "/api/v0/id", other)).status == 403
    # a same-site Referer is fine, a foreign one is not
    ours = {**mozilla, "Referer": f"http://localhost:{port}/webui/"}
    assert (await http(port, "POST", "/api/v0/id", ours)).status == 200
    theirs = {**mozilla, "Referer": "https://invalid.example.com/x"}
    assert (await http(port, "POST", "/api/v0/id", theirs)).status == 403


async def test_an_allowed_origin_gets_cors_headers_and_preflight(tmp_path: Path) -> None:
    """Kubo's ``API.HTTPHeaders.Access-Control-Allow-Origin`` part of t0401."""
    valid = "https://valid.example.com"
    async with _daemon(tmp_path, api_allowed_origins=(valid,)) as s:
        preflight = {
            "Origin": valid,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "origin, x-requested-with",
        }
        reply = await http(s.port, "OPTIONS", "/api/v0/id", preflight)
        assert reply.status == 204
        assert reply.headers["access-control-allow-origin"] == valid
        reply = await http(s.port, "OPTIONS", "/api/v0/id", {**preflight, "Origin": EVIL})
        assert reply.status == 403
        assert "access-control-allow-origin" not in reply.headers
        reply = await http(s.port, "POST", "/api/v0/id", {"Origin": valid})
        assert reply.status == 200
        assert reply.headers["access-control-allow-origin"] == valid
        assert str(s.node.peer_id).encode() in reply.body
        assert (await http(s.port, "POST", "/api/v0/id", {"Origin": EVIL})).status == 403


async def test_cli_clients_are_unaffected(served: Served) -> None:
    """No Origin, a Host naming the API address: the thin CLI client, the async client, curl."""
    from zikade_cli.rpc import ThinClient  # the CLI's own client, as 'zikade id' uses it

    thin = ThinClient.for_repo(served.repo)
    assert thin is not None
    doc = await asyncio.to_thread(thin.request, "id", timeout=10)
    assert doc["ID"] == str(served.node.peer_id)
    async with RpcClient(served.daemon.api_url) as client:
        assert (await client.request("id", timeout=10))["ID"] == str(served.node.peer_id)
    seed = f"/ip4/127.0.0.1/tcp/4001/p2p/{_random_peer()}"
    reply = await http(served.port, "POST", f"/api/v0/bootstrap/add?arg={seed}", {})
    assert reply.status == 200
    assert load_config(served.repo).bootstrap == [seed]
    for host in (f"localhost:{served.port}", "127.0.0.1", f"[::1]:{served.port}"):
        assert (await http(served.port, "POST", "/api/v0/id", host=host)).status == 200, host


async def test_the_routing_api_keeps_open_cors_and_takes_the_host_check_as_an_option(
    tmp_path: Path,
) -> None:
    async with _daemon(tmp_path / "shared") as s:  # /routing/v1 on the API server
        path = f"/routing/v1/peers/{s.node.peer_id}"
        reply = await http(s.port, "GET", path, {"Origin": EVIL})
        assert reply.status == 200
        assert reply.headers["access-control-allow-origin"] == "*"
        preflight = {"Origin": EVIL, "Access-Control-Request-Method": "GET"}
        reply = await http(s.port, "OPTIONS", path, preflight)
        assert reply.status in (200, 204)
        assert reply.headers["access-control-allow-origin"] == "*"
    async with _daemon(tmp_path, routing_api="127.0.0.1:0") as s:
        port = int(s.daemon.routing_url.rsplit(":", 1)[1])
        path = f"/routing/v1/peers/{s.node.peer_id}"
        reply = await http(port, "GET", path, {"Origin": EVIL}, host=f"evil.example:{port}")
        assert reply.status == 200  # public by design: no Host check unless asked for
        assert reply.headers["access-control-allow-origin"] == "*"
    async with _daemon(
        tmp_path / "checked", routing_api="127.0.0.1:0", routing_allowed_hosts=("routing.lan",)
    ) as s:
        port = int(s.daemon.routing_url.rsplit(":", 1)[1])
        path = f"/routing/v1/peers/{s.node.peer_id}"
        reply = await http(port, "GET", path, {"Origin": EVIL}, host=f"evil.example:{port}")
        assert reply.status == 403
        reply = await http(port, "GET", path, {"Origin": EVIL}, host=f"routing.lan:{port}")
        assert reply.status == 200
        assert reply.headers["access-control-allow-origin"] == "*"
        assert (await http(port, "GET", path, {"Origin": EVIL})).status == 200


async def test_an_api_beyond_loopback_warns(tmp_path: Path) -> None:
    """``--api 0.0.0.0:…``: the daemon says so loudly (bound on 127.0.0.1 here, tests never
    listen elsewhere; only the address the daemon believes it got differs)."""

    class Exposed(Daemon):
        async def _serve(self, app: object, address: str, what: str) -> tuple[str, int]:
            _, port = await super()._serve(app, "127.0.0.1:0", what)  # type: ignore[arg-type]
            return ("0.0.0.0" if what == "RPC API" else "127.0.0.1"), port

    repo = tmp_path / "repo"
    init_repo(repo, bootstrap=[])  # not the public default list
    warnings: list[str] = []
    node = NodeConfig(mode="server", bootstrap=[])
    daemon = Exposed(DaemonConfig(node=node, repo=repo, api="0.0.0.0:0"))
    daemon.on_warning = warnings.append
    async with daemon:
        assert len(warnings) == 1
        assert "0.0.0.0" in warnings[0] and "beyond loopback" in warnings[0]
    quiet: list[str] = []
    node = NodeConfig(mode="server", bootstrap=[])
    loopback = Daemon(DaemonConfig(node=node, repo=repo, api="127.0.0.1:0"))
    loopback.on_warning = quiet.append
    async with loopback:
        assert quiet == []
    assert exposure_warning("::", 5001) is not None
    assert exposure_warning("192.168.1.10", 5001) is not None
    assert exposure_warning("localhost", 5001) is None
    assert exposure_warning("::1", 5001) is None


# -- the rules as functions


def test_host_check_rules() -> None:
    loop = HostCheck.for_bind("127.0.0.1")
    assert loop.allows("127.0.0.1:5001") and loop.allows("localhost:5001")
    assert loop.allows("[::1]:5001") and loop.allows("LOCALHOST") and loop.allows(None)
    assert not loop.allows("evil.example:5001")
    assert not loop.allows("10.0.0.1:5001")
    assert not loop.allows("127.0.0.1:http")  # malformed
    assert not loop.allows("[::1")
    anywhere = HostCheck.for_bind("0.0.0.0", ["node.lan"])
    assert anywhere.allows("10.0.0.1:5001") and anywhere.allows("[2001:db8::1]:5001")
    assert anywhere.allows("node.lan:5001") and anywhere.allows("NODE.LAN.")
    assert not anywhere.allows("evil.example:5001")
    one = HostCheck.for_bind("192.168.1.10")
    assert one.allows("192.168.1.10:5001") and not one.allows("192.168.1.11:5001")
    assert HostCheck.for_bind("127.0.0.1", ["*"]).allows("evil.example")
    assert split_host("[::1]:80") == "::1" and split_host("Example.COM.:1") == "example.com"


def test_guard_origin_defaults_need_the_port() -> None:
    guard = ApiGuard.for_bind("127.0.0.1", origins=["https://App.example/"])
    assert "https://app.example" in guard.allowed_origins
