"""GET /metrics: OpenTelemetry SDK metrics rendered as Prometheus text."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from zikade_py import telemetry
from zikade_py.http.metrics import (
    LATENCY_BUCKETS_MS,
    PROMETHEUS_CONTENT_TYPE,
    add_metrics_route,
    install_meter_provider,
    metrics_reader,
    render_prometheus,
)

# one sample line: name{labels} value
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? \S+$'
)


def _private_provider() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def _assert_valid_exposition(text: str) -> None:
    """Every line is a HELP/TYPE comment or a well-formed sample; TYPE precedes samples."""
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in typed, f"duplicate TYPE for {name}"
            typed.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            assert SAMPLE.match(line), f"bad sample line {line!r}"
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            assert any(name == t or name.startswith(t + "_") for t in typed), line


def test_counter_histogram_gauge_rendering() -> None:
    provider, reader = _private_provider()
    meter = provider.get_meter("t")
    received = meter.create_counter("received_messages", description="Kad requests received")
    received.add(3, {"message_type": "FIND_NODE"})
    received.add(1, {"message_type": "PING"})
    latency = meter.create_histogram("outbound_request_latency", unit="ms")
    latency.record(7.0, {"message_type": "FIND_NODE"})
    latency.record(30.0, {"message_type": "FIND_NODE"})
    in_flight = meter.create_up_down_counter("requests_in_flight")
    in_flight.add(2)
    in_flight.add(-1)
    meter.create_observable_gauge("routing_table_size", callbacks=[lambda _: [Observation(5)]])
    sent = meter.create_histogram("sent_bytes", unit="By")
    sent.record(100)

    text = render_prometheus(reader.get_metrics_data())
    _assert_valid_exposition(text)
    lines = text.splitlines()
    assert "# HELP received_messages_total Kad requests received" in lines
    assert "# TYPE received_messages_total counter" in lines
    assert 'received_messages_total{message_type="FIND_NODE"} 3' in lines
    assert 'received_messages_total{message_type="PING"} 1' in lines
    assert "# TYPE outbound_request_latency_milliseconds histogram" in lines
    buckets = [ln for ln in lines if ln.startswith("outbound_request_latency_milliseconds_bucket")]
    # default SDK buckets here (no views): cumulative counts ending in +Inf = count
    assert buckets[-1] == (
        'outbound_request_latency_milliseconds_bucket{le="+Inf",message_type="FIND_NODE"} 2'
    )
    counts = [int(b.rsplit(" ", 1)[1]) for b in buckets]
    assert counts == sorted(counts) and counts[0] == 0
    assert 'outbound_request_latency_milliseconds_sum{message_type="FIND_NODE"} 37.0' in lines
    assert 'outbound_request_latency_milliseconds_count{message_type="FIND_NODE"} 2' in lines
    assert "# TYPE requests_in_flight gauge" in lines  # a non-monotonic sum is a gauge
    assert "requests_in_flight 1" in lines
    assert "# TYPE routing_table_size gauge" in lines
    assert "routing_table_size 5" in lines
    assert "sent_bytes_count 1" in lines


def test_label_values_and_names_are_escaped() -> None:
    provider, reader = _private_provider()
    counter = provider.get_meter("t").create_counter("weird.name-1")
    counter.add(1, {"a.b": 'quote " back \\ nl \n', "ok": True})
    text = render_prometheus(reader.get_metrics_data())
    _assert_valid_exposition(text)
    assert 'weird_name_1_total{a_b="quote \\" back \\\\ nl \\n",ok="true"} 1' in text


def test_empty_collection_renders_nothing() -> None:
    assert render_prometheus(None) == ""
    _, reader = _private_provider()
    assert render_prometheus(reader.get_metrics_data()) == ""


def test_install_is_idempotent_and_applies_bucket_views() -> None:
    reader = install_meter_provider()
    assert install_meter_provider() is reader
    assert metrics_reader() is reader
    latency = telemetry.meter().create_histogram("test_only_request_latency", unit="ms")
    latency.record(0.02)
    text = render_prometheus(reader.get_metrics_data())
    bounds = [
        float(m.group(1))
        for m in re.finditer(r'test_only_request_latency_milliseconds_bucket\{le="([^"+]+)"', text)
    ]
    assert bounds == [float(b) for b in LATENCY_BUCKETS_MS]
    assert 'test_only_request_latency_milliseconds_bucket{le="0.05"} 1' in text


async def test_metrics_endpoint_serves_node_gauges_and_dht_counters() -> None:
    from zikade_py.dht import Node, NodeConfig

    install_meter_provider()
    async with Node(NodeConfig(mode="server")) as a, Node(NodeConfig(mode="server")) as b:
        b.add_peer(f"{a.listen_addrs[0]}/p2p/{a.peer_id}")
        await b.ping(a.peer_id)
        await b.get_closest_peers(b"metrics test key", timeout=10)
        app = web.Application()
        add_metrics_route(app, a)
        add_metrics_route(web.Application(), b)  # b's series appear in the same registry
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
            text = await resp.text()
    _assert_valid_exposition(text)
    assert re.search(rf'^connected_peers\{{peer_id="{a.peer_id}"\}} [1-9]', text, re.M), text
    assert re.search(rf'^routing_table_size\{{peer_id="{a.peer_id}"\}} \d+', text, re.M)
    for name in ("queries_running", "requests_in_flight"):
        assert re.search(rf'^{name}\{{peer_id="{a.peer_id}"\}} \d+$', text, re.M), name
    # b asked a: b's counters moved
    assert re.search(rf'^sent_requests_total\{{peer_id="{b.peer_id}"\}} [1-9]', text, re.M)
    # a's KadServer answered b's FIND_NODE
    assert re.search(r'^received_messages_total\{message_type="FIND_NODE"\} [1-9]', text, re.M)
