"""One trace per cat: the provider lookup in the DHT, the wants sent and the blocks
received per peer are all in the trace of ``Files.Cat``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py import telemetry
from zikade_py.bitswap import BitswapConfig, SessionConfig
from zikade_py.files import ContentNode

from .test_content_node import config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("zikade_py"))
    yield exporter
    provider.shutdown()


async def test_cat_is_one_trace(spans: InMemorySpanExporter) -> None:
    fast = BitswapConfig(session=SessionConfig(provider_search_delay=0.05))
    async with ContentNode(config(), bitswap=fast) as seed:
        boot = [str(seed.listen_addrs[0].with_peer_id(seed.peer_id))]
        async with ContentNode(config(bootstrap=boot, mode="client"), bitswap=fast) as adder:
            await adder.bootstrap()
            added = await adder.add(b"x" * 600_000)  # provided to the seed
            async with ContentNode(config(bootstrap=boot), bitswap=fast) as reader:
                await reader.bootstrap()
                # the adder is a client: only the DHT can lead the reader to it
                assert not reader.host.connmgr.connections(adder.peer_id)
                spans.clear()
                async with asyncio.timeout(20):
                    got = b"".join([c async for c in reader.cat(added.cid)])
                assert len(got) == 600_000
    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.name == "Files.Cat"]
    trace_id = root.context.trace_id
    names = {s.name for s in finished if s.context.trace_id == trace_id}
    assert {"Files.Cat", "Bitswap.FindProviders", "DHT.FindProviders", "Bitswap.Send",
            "Bitswap.Receive"} <= names, names
