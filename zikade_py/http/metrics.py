"""GET /metrics: the node's OpenTelemetry metrics in Prometheus text exposition format.

Why not ``opentelemetry-exporter-prometheus``: it drags in ``prometheus_client`` and
registers into that library's process-global registry, while all we need is one
text rendering of what the SDK already aggregates. So :func:`install_meter_provider`
builds an SDK ``MeterProvider`` with an ``InMemoryMetricReader`` (cumulative
temporality, what Prometheus scrapes expect) and :func:`render_prometheus` turns a
collection into text format 0.0.4, naming series the way the OTel→Prometheus
compatibility rules do: counters end in ``_total``, the unit becomes a suffix
(``ms`` → ``_milliseconds``, ``By`` → ``_bytes``, ``s`` → ``_seconds``).

The instruments themselves are recorded by the Node, router and handlers through
:func:`zikade_py.telemetry.meter` (names in ZIKADE.md §5 and docs/metrics.md);
this module adds the gauges and counters it can observe from ``Node.stats()``
(:data:`NODE_GAUGES`, :data:`NODE_COUNTERS`), labelled with the node's ``peer_id``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from aiohttp import web
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from zikade_py import telemetry

__all__ = [
    "BYTES_BUCKETS",
    "KUBO_METRICS_PATH",
    "LATENCY_BUCKETS_MS",
    "NODE_COUNTERS",
    "NODE_GAUGES",
    "PROMETHEUS_CONTENT_TYPE",
    "MetricsNode",
    "add_metrics_route",
    "install_meter_provider",
    "metrics_reader",
    "render_prometheus",
]

_log = logging.getLogger(__name__)

KUBO_METRICS_PATH: Final = "/debug/metrics/prometheus"
"""Where Kubo serves its Prometheus metrics; scrape configs written for Kubo work unchanged."""

PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The content type Prometheus expects from a text-format scrape."""

LATENCY_BUCKETS_MS: Final = (
    0.01, 0.05, 0.1, 0.3, 0.6, 0.8, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65,
    80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000,
    50000, 100000,
)  # fmt: skip
"""``*_request_latency`` buckets (ms): go-libp2p-kad-dht v1, kept by zikade's views."""

BYTES_BUCKETS: Final = tuple(float(1024 * 4**i) for i in range(12))
"""``*_bytes`` buckets: 1 KiB, 4 KiB, … 4 GiB (go-libp2p-kad-dht v1)."""

_UNIT_SUFFIXES: Final = {
    "ms": "milliseconds",
    "s": "seconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "%": "percent",
}

_lock = threading.Lock()
_reader: InMemoryMetricReader | None = None


class MetricsNode(Protocol):
    """What the gauges read from a Node (its public API; satisfied by ``zikade_py.dht.Node``)."""

    @property
    def peer_id(self) -> Any: ...

    def stats(self) -> Mapping[str, int]: ...


def _views() -> list[View]:
    return [
        View(
            instrument_name="*_request_latency",
            instrument_type=HistogramInstrument,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BUCKETS_MS),
        ),
        View(
            instrument_name="*_bytes",
            instrument_type=HistogramInstrument,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=BYTES_BUCKETS),
        ),
    ]


def _otlp_reader(env: Mapping[str, str]) -> MetricReader | None:
    """A periodic OTLP/HTTP metric exporter, only when ``OTEL_METRICS_EXPORTER=otlp``."""
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() not in ("otlp", "otlp_proto_http"):
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(OTLPMetricExporter())


def install_meter_provider(
    service_name: str = "zikade", *, env: Mapping[str, str] | None = None
) -> InMemoryMetricReader:
    """Install the global SDK MeterProvider whose reader feeds GET /metrics; return that reader.

    The daemon calls it before the Node starts. OpenTelemetry allows one global
    provider per process, so a second call returns the reader of the first. If
    someone else already installed a provider, the returned reader is detached and
    /metrics shows only what it can (nothing), with a warning logged.
    """
    global _reader
    env = os.environ if env is None else env
    with _lock:
        if _reader is not None:
            return _reader
        reader = InMemoryMetricReader()
        readers: list[MetricReader] = [reader]
        otlp = _otlp_reader(env)
        if otlp is not None:
            readers.append(otlp)
        resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME", service_name)})
        provider = MeterProvider(metric_readers=readers, resource=resource, views=_views())
        current = metrics.get_meter_provider()
        if isinstance(current, MeterProvider):
            _log.warning("a MeterProvider is already installed; /metrics will be empty")
        else:
            metrics.set_meter_provider(provider)
        _reader = reader
        _register_node_gauges()
        return reader


def metrics_reader() -> InMemoryMetricReader | None:
    """The reader installed by :func:`install_meter_provider`, if any."""
    return _reader


# ---------------------------------------------------------------------------------------------
# Gauges and counters over Node.stats()

_nodes: weakref.WeakSet[MetricsNode] = weakref.WeakSet()
_gauges_registered = False

NODE_GAUGES: Final = {
    "routing_table_size": ("routing_table_size", "Peers in the routing table"),
    "connected_peers": ("connections", "Peers with an open libp2p connection"),
    "queries_running": ("queries_running", "Queries (lookups, broadcasts) in progress"),
    "requests_in_flight": ("requests_running", "Outbound kad requests awaiting an answer"),
}
"""Gauge name → (``Node.stats()`` key, description)."""

NODE_COUNTERS: Final = {
    "sent_requests": ("requests_sent", "Outbound kad requests sent"),
    "sent_request_errors": ("requests_failed", "Outbound kad requests that failed"),
    "requests_cancelled": ("requests_cancelled", "Outbound kad requests cancelled by a query"),
    "requests_dropped": ("requests_dropped", "Requests the coordinator dropped (overload)"),
}
"""Monotonic counter name → (``Node.stats()`` key, description)."""


def _observe(stat: str) -> Any:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        out: list[Observation] = []
        for node in list(_nodes):
            try:
                value = node.stats().get(stat)
            except Exception:  # a closing node must not break the whole scrape
                continue
            if value is not None:
                out.append(Observation(value, {"peer_id": str(node.peer_id)}))
        return out

    return callback


def _register_node_gauges() -> None:
    global _gauges_registered
    if _gauges_registered:
        return
    _gauges_registered = True
    meter = telemetry.meter()
    for name, (stat, description) in NODE_GAUGES.items():
        meter.create_observable_gauge(name, callbacks=[_observe(stat)], description=description)
    for name, (stat, description) in NODE_COUNTERS.items():
        meter.create_observable_counter(name, callbacks=[_observe(stat)], description=description)


def add_metrics_route(
    app: web.Application, node: MetricsNode, reader: InMemoryMetricReader | None = None
) -> None:
    """Mount GET /metrics (and Kubo's /debug/metrics/prometheus) on ``app``; observe ``node``.

    The node's table and connections are observed as gauges.

    ``reader`` defaults to the one :func:`install_meter_provider` installed (installing
    it now if nobody did).
    """
    with _lock:
        _nodes.add(node)
    chosen = reader if reader is not None else install_meter_provider()

    async def handle_metrics(request: web.Request) -> web.Response:
        """Serve one scrape: collect now, render as Prometheus text."""
        data = chosen.get_metrics_data()
        return web.Response(
            body=render_prometheus(data).encode("utf-8"),
            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get(KUBO_METRICS_PATH, handle_metrics)


# ---------------------------------------------------------------------------------------------
# Prometheus text format 0.0.4

_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_REPEATED_UNDERSCORES = re.compile(r"__+")


def _metric_name(name: str, unit: str, *, counter: bool) -> str:
    base = _REPEATED_UNDERSCORES.sub("_", _INVALID_NAME_CHARS.sub("_", name))
    if base and base[0].isdigit():
        base = "_" + base
    suffix = _UNIT_SUFFIXES.get(unit, "")
    if not suffix and unit and not unit.startswith("{") and unit != "1":
        suffix = _INVALID_NAME_CHARS.sub("_", unit).strip("_")
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if counter and not base.endswith("_total"):
        base += "_total"
    return base


def _label_name(key: str) -> str:
    name = _REPEATED_UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", key))
    return "_" + name if name[:1].isdigit() else name


def _escape_value(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(attributes: Mapping[str, object] | None, extra: Sequence[tuple[str, str]] = ()) -> str:
    pairs: dict[str, str] = {}
    for key, value in (attributes or {}).items():
        label = _label_name(key)
        # two keys sanitised to one label: join values, as the OTel exporter does
        pairs[label] = (
            f"{pairs[label]};{_escape_value(value)}" if label in pairs else _escape_value(value)
        )
    for key, value in extra:
        pairs[key] = value
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_prometheus(data: MetricsData | None) -> str:
    """Render one SDK collection as Prometheus text: ``# HELP``, ``# TYPE``, then samples.

    Monotonic sums are counters (``_total``), other sums and gauges are gauges,
    histograms give cumulative ``_bucket{le=…}`` series plus ``_sum`` and ``_count``.
    Families of the same name from different scopes are merged under one header.
    """
    families: dict[str, tuple[str, str, list[str]]] = {}

    def family(name: str, kind: str, description: str) -> list[str]:
        if name not in families:
            families[name] = (kind, description, [])
        return families[name][2]

    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                point_data = metric.data
                if isinstance(point_data, Sum):
                    counter = point_data.is_monotonic
                    name = _metric_name(metric.name, metric.unit or "", counter=counter)
                    kind = "counter" if counter else "gauge"
                    lines = family(name, kind, metric.description or "")
                    for point in point_data.data_points:
                        lines.append(f"{name}{_labels(point.attributes)} {_number(point.value)}")
                elif isinstance(point_data, Gauge):
                    name = _metric_name(metric.name, metric.unit or "", counter=False)
                    lines = family(name, "gauge", metric.description or "")
                    for point in point_data.data_points:
                        lines.append(f"{name}{_labels(point.attributes)} {_number(point.value)}")
                elif isinstance(point_data, Histogram):
                    name = _metric_name(metric.name, metric.unit or "", counter=False)
                    lines = family(name, "histogram", metric.description or "")
                    for hp in point_data.data_points:
                        cumulative = 0
                        bounds = [*hp.explicit_bounds, math.inf]
                        for bound, count in zip(bounds, hp.bucket_counts, strict=False):
                            cumulative += count
                            le = (("le", _number(float(bound))),)
                            lines.append(f"{name}_bucket{_labels(hp.attributes, le)} {cumulative}")
                        lines.append(f"{name}_sum{_labels(hp.attributes)} {_number(hp.sum)}")
                        lines.append(f"{name}_count{_labels(hp.attributes)} {hp.count}")
    out: list[str] = []
    for name, (kind, description, lines) in families.items():
        if description:
            out.append(f"# HELP {name} {_escape_help(description)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""
