"""Tracing: the HTTP server span joins the caller's trace, and one find-peer is one trace.

The acceptance tests run the installed ``zikade`` console script (and ``zikade daemon``)
in subprocesses that export over real OTLP/HTTP to :class:`OtlpReceiver` on
127.0.0.1, then check that the received spans form ONE tree: the CLI's root span →
(the daemon's ``HTTP …`` server span →) ``DHT.FindPeer`` → ``Query.Run`` → one
``Router.SendMessage`` per request, with the query's state transitions as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otlp_receiver import OtlpReceiver, ReceivedSpan

from zikade_py import telemetry
from zikade_py.dht import Node, NodeConfig
from zikade_py.http.tracing import tracing_middleware
from zikade_py.p2p.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(180)

ZIKADE = Path(sys.executable).parent / "zikade"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


# ---------------------------------------------------------------------------------------------
# The middleware, in process


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A private TracerProvider behind ``telemetry.tracer()`` (the global one is set once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


async def _client(app: web.Application) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        with telemetry.tracer().start_as_current_span("Inner.Work"):
            return web.Response(text=request.match_info["name"])

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async def teapot(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest(text="no")

    app = web.Application(middlewares=[tracing_middleware])
    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/boom", boom)
    app.router.add_get("/bad", teapot)
    return app


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_server_span_is_child_of_traceparent(spans: InMemorySpanExporter) -> None:
    client = await _client(_app())
    try:
        resp = await client.get(
            "/hello/world", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        )
        assert resp.status == 200
    finally:
        await client.close()
    found = _by_name(spans)
    server = found["HTTP GET /hello/{name}"]
    assert server.kind == SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/hello/{name}"
    assert server.attributes["url.path"] == "/hello/world"
    assert server.attributes["http.response.status_code"] == 200
    inner = found["Inner.Work"]
    assert inner.parent is not None and inner.parent.span_id == server.context.span_id
    assert inner.context.trace_id == server.context.trace_id


async def test_without_traceparent_the_server_span_is_a_root(spans: InMemorySpanExporter) -> None:
    client = await _client(_app())
    try:
        assert (await client.get("/hello/x")).status == 200
    finally:
        await client.close()
    assert _by_name(spans)["HTTP GET /hello/{name}"].parent is None


async def test_status_codes_and_errors(spans: InMemorySpanExporter) -> None:
    client = await _client(_app())
    try:
        assert (await client.get("/boom")).status == 500
        assert (await client.get("/bad")).status == 400
        assert (await client.get("/nowhere")).status == 404
    finally:
        await client.close()
    found = _by_name(spans)
    assert found["HTTP GET /boom"].status.status_code == StatusCode.ERROR
    assert any(ev.name == "exception" for ev in found["HTTP GET /boom"].events)
    assert found["HTTP GET /bad"].status.status_code == StatusCode.UNSET
    assert found["HTTP GET /bad"].attributes == {
        "http.request.method": "GET",
        "http.route": "/bad",
        "url.path": "/bad",
        "client.address": "127.0.0.1",
        "http.response.status_code": 400,
    }
    assert found["HTTP GET unmatched"].attributes is not None
    assert found["HTTP GET unmatched"].attributes["http.response.status_code"] == 404


async def test_receiver_decodes_the_real_otlp_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    async with OtlpReceiver() as receiver:
        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"))
        )
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("Outer"), tracer.start_as_current_span("Inner"):
            pass
        # the exporter is synchronous (requests): flush from a thread, the loop serves it
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        await asyncio.to_thread(provider.shutdown)
        got = await receiver.wait_for(lambda s: len(s) >= 2, timeout=10)
    by_name = {s.name: s for s in got}
    assert by_name["Inner"].parent_id == by_name["Outer"].span_id
    assert by_name["Inner"].trace_id == by_name["Outer"].trace_id


# ---------------------------------------------------------------------------------------------
# The acceptance test: the zikade command and daemon in subprocesses


def _env(service: str, endpoint: str, repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "ZIKADE_PATH"}
    env.update(
        ZIKADE_PATH=str(repo),
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    return env


async def _run(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(ZIKADE),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def _daemon(env: dict[str, str], repo: Path, *args: str) -> AsyncIterator[None]:
    """``zikade daemon`` until its repo's ``api`` file appears; SIGINT (then kill) on exit."""
    proc = await asyncio.create_subprocess_exec(
        str(ZIKADE),
        "daemon",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):  # ≤ 30 s
            if (repo / "api").exists():
                break
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        if not (repo / "api").exists():
            proc.kill()
            _, err = await proc.communicate()
            pytest.fail(f"daemon did not start: {err.decode()[-2000:]}")
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _tree(spans: list[ReceivedSpan], root: ReceivedSpan) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans if s.trace_id == root.trace_id}


def _ancestors(span: ReceivedSpan, tree: dict[str, ReceivedSpan]) -> list[str]:
    names: list[str] = []
    current = span
    for _ in range(100):
        parent = tree.get(current.parent_id)
        if parent is None:
            break
        names.append(parent.name)
        current = parent
    return names


def _has_ancestor(
    span: ReceivedSpan, ancestor: ReceivedSpan, tree: dict[str, ReceivedSpan]
) -> bool:
    current = span
    for _ in range(100):
        if current.parent_id == ancestor.span_id:
            return True
        parent = tree.get(current.parent_id)
        if parent is None:
            return False
        current = parent
    return False


def _check_find_peer_tree(spans: list[ReceivedSpan], root_name: str) -> dict[str, ReceivedSpan]:
    roots = [s for s in spans if s.name == root_name and not s.parent_id]
    assert len(roots) == 1, sorted({(s.service, s.name) for s in spans})
    root = roots[0]
    tree = _tree(spans, root)
    # ONE tree: every span of the trace reaches the root through spans we received
    orphans = [
        (s.service, s.name) for s in tree.values() if s is not root and s.parent_id not in tree
    ]
    assert not orphans, f"spans whose parent never arrived: {orphans}"
    for span in tree.values():
        assert span is root or _ancestors(span, tree)[-1] == root_name, span.name
    finds = [s for s in tree.values() if s.name == "DHT.FindPeer"]
    assert len(finds) == 1, sorted((s.service, s.name) for s in tree.values())
    find = finds[0]
    # the find-peer's own query (a bootstrap in the same trace has its own)
    queries = [s for s in tree.values() if s.name == "Query.Run" and _has_ancestor(s, find, tree)]
    assert len(queries) == 1, [q.name for q in queries]
    query = queries[0]
    requests = [
        s for s in tree.values() if s.name == "Router.SendMessage" and _has_ancestor(s, find, tree)
    ]
    assert requests, "no request spans under DHT.FindPeer"
    # one child span per request, directly under the query
    assert all(r.parent_id == query.span_id for r in requests)
    assert all(r.attribute("peer_id") for r in requests)
    assert query.span.events, "state-machine transitions should be span events on the query"
    return tree


async def test_find_peer_is_one_trace_in_process(tmp_path: Path) -> None:
    """Without a daemon: CLI.find-peer → DHT.FindPeer → Query.Run → Router.SendMessage."""
    async with OtlpReceiver() as receiver, Node(NodeConfig(mode="server")) as relay:
        target_addr = await _gone_peer_known_to(relay)
        env = _env("zikade-cli", receiver.endpoint, tmp_path / "cli")
        status, _, err = await _run(env, "init", "--no-bootstrap")  # commands need a repo
        assert status == 0, err
        status, out, err = await _run(
            env,
            "find-peer",
            str(target_addr.peer_id()),
            "--bootstrap",
            f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}",
            "--timeout",
            "30s",
            "--trace",
            receiver.endpoint,
        )
        assert status == 0, err
        assert str(target_addr.without_peer_id()) in out.splitlines()
        # the CLI flushed its spans before exiting
        got = list(receiver.spans)
    tree = _check_find_peer_tree(got, "CLI.find-peer")
    assert {s.service for s in tree.values()} == {"zikade-cli"}


async def test_find_peer_through_the_daemon_is_one_trace(tmp_path: Path) -> None:
    """CLI root → the daemon's HTTP server span (via traceparent) → DHT.FindPeer → … ."""
    repo = tmp_path / "repo"
    async with OtlpReceiver() as receiver, Node(NodeConfig(mode="server")) as relay:
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        daemon_env = _env("zikade-daemon", receiver.endpoint, repo)
        status, _, err = await _run(daemon_env, "init", "--no-bootstrap")
        assert status == 0, err
        async with _daemon(
            daemon_env,
            repo,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--mode",
            "server",
            "--bootstrap",
            relay_addr,
            "--api",
            "127.0.0.1:0",
        ):
            target_addr = await _gone_peer_known_to(relay)
            cli_env = _env("zikade-cli", receiver.endpoint, repo)
            status, out, err = await _run(
                cli_env, "find-peer", str(target_addr.peer_id()), "--timeout", "30s"
            )
            assert status == 0, err
            assert str(target_addr.without_peer_id()) in out.splitlines()

            def complete(spans: list[ReceivedSpan]) -> bool:
                roots = [s for s in spans if s.name == "CLI.find-peer"]
                if not roots:
                    return False
                tree = _tree(spans, roots[0])
                names = {s.name for s in tree.values()}
                return {"DHT.FindPeer", "Query.Run", "Router.SendMessage"} <= names and all(
                    s.parent_id in tree for s in tree.values() if s.parent_id
                )

            with contextlib.suppress(TimeoutError):  # the checks below say what is missing
                await receiver.wait_for(complete, timeout=30)
            got = list(receiver.spans)
    tree = _check_find_peer_tree(got, "CLI.find-peer")
    assert {s.service for s in tree.values()} == {"zikade-cli", "zikade-daemon"}
    # every RPC the CLI made (a version probe, the find-peer) is a server span under it
    servers = [s for s in tree.values() if s.name.startswith("HTTP ")]
    assert all(s.service == "zikade-daemon" for s in servers)
    assert all(tree[s.parent_id].service == "zikade-cli" for s in servers)
    find_rpc = [s for s in servers if s.name == "HTTP POST /api/v0/routing/findpeer"]
    assert len(find_rpc) == 1, [s.name for s in servers]
    find = next(s for s in tree.values() if s.name == "DHT.FindPeer")
    assert find.service == "zikade-daemon"
    assert _has_ancestor(find, find_rpc[0], tree)


async def _gone_peer_known_to(relay: Node) -> Multiaddr:
    """A peer in ``relay``'s routing table that has since stopped; its ``/p2p`` address.

    Nobody can be connected to it, so a find-peer (which answers connected peers from
    the address book) has to run a real query and learn it from the relay's answer,
    whatever the background routing did before (in a 3-node network it learns every
    live peer at once).
    """
    async with Node(NodeConfig(mode="server")) as target:
        addr = target.listen_addrs[0].with_peer_id(target.peer_id)
        relay.add_peer(addr)
        for _ in range(100):  # ≤ 10 s: the include check is asynchronous
            if any(e.peer.peer_id == target.peer_id for e in relay.routing_table()):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the target never entered the relay's routing table")
    return addr
