"""Work a host starts on its own (inbound connections and streams, identify) runs in a fresh
context: spans opened by handlers start their own trace instead of joining whatever span was
current when the host started or when a dial began."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py.p2p.connection import Connection, Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.identify import IdentifyInfo, IdentifyService
from zikade_py.p2p.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

LOOPBACK = Multiaddr.parse("/ip4/127.0.0.1/tcp/0")
TRACED = "/test/traced/1.0.0"
MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="")


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()  # local: the global provider is never touched
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


async def test_handler_spans_have_no_parent(
    provider: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    tp, exporter = provider
    tracer = tp.get_tracer("test")
    seen_marks: list[str] = []
    identify_marks: list[str] = []
    record = IdentifyService._record

    def spy(self: IdentifyService, conn: Connection, info: IdentifyInfo) -> None:
        identify_marks.append(MARK.get())
        record(self, conn, info)

    monkeypatch.setattr(IdentifyService, "_record", spy)

    async def handler(stream: Stream) -> None:
        seen_marks.append(MARK.get())
        with tracer.start_as_current_span("handler"):
            await stream.write(b"ok")

    a, b = Host(PrivateKey.generate()), Host(PrivateKey.generate())
    a.set_stream_handler(TRACED, handler)
    b.set_stream_handler(TRACED, handler)
    try:
        with tracer.start_as_current_span("outer") as outer:
            token = MARK.set("caller")
            await a.start([LOOPBACK])
            await b.start([LOOPBACK])  # b accepts inside the caller's span
            conn = await a.connect(b.peer_id, b.listen_addrs)  # a's dial inside it too
            await a.identify.identify(conn)
            # b serves a's stream on an inbound connection; a serves b's on its dial
            to_b = await a.new_stream(b.peer_id, [TRACED])
            assert await to_b.reader.read_exactly(2) == b"ok"
            for _ in range(200):
                if b.connmgr.get(a.peer_id) is not None:
                    break
                await asyncio.sleep(0.01)
            to_a = await b.new_stream(a.peer_id, [TRACED])
            assert await to_a.reader.read_exactly(2) == b"ok"
            # outbound work the caller awaits keeps the caller's context
            assert MARK.get() == "caller"
            assert trace.get_current_span() is outer
            MARK.reset(token)
        for _ in range(200):  # b's identify of a runs on its own
            if len(identify_marks) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await a.close()
        await b.close()
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name == "outer"}
    handlers = [s for s in exporter.get_finished_spans() if s.name == "handler"]
    assert len(handlers) == 2
    assert all(s.parent is None for s in handlers), [s.parent for s in handlers]
    assert all(s.context.trace_id != spans["outer"].context.trace_id for s in handlers)
    assert seen_marks == ["", ""]
    assert identify_marks == ["", ""]
