"""OpenTelemetry names and set-up for zikade-py.

One tracer and one meter, both named :data:`INSTRUMENTATION_NAME`. Spans are named
``<Component>.<Op>`` (``DHT.FindPeer``, ``Query.Run``, ``Router.SendMessage``,
``DHT.Handle.FIND_NODE``); state-machine transitions are span events.

Export is configured the standard way (ECOSYSTEM.md A3): :func:`configure_from_env`
reads ``OTEL_TRACES_EXPORTER`` (``otlp`` / ``console`` / ``none``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_SERVICE_NAME`` and friends, because code that builds its own
``TracerProvider`` must honour them itself. The library never configures
anything on import: only the CLI and the daemon call it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from opentelemetry import metrics, trace
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext

INSTRUMENTATION_NAME = "zikade_py"
"""Name of the tracer and the meter (DESIGN.md §7)."""

DEFAULT_OTLP_HTTP_ENDPOINT = "http://127.0.0.1:4318"
"""Where ``--trace`` sends spans when no endpoint is configured (Jaeger's OTLP/HTTP port)."""


def tracer() -> trace.Tracer:
    """The tracer every zikade-py span comes from (uses the global provider)."""
    return trace.get_tracer(INSTRUMENTATION_NAME)


def meter() -> metrics.Meter:
    """The meter every zikade-py metric comes from (uses the global provider)."""
    return metrics.get_meter(INSTRUMENTATION_NAME)


def current_span_context() -> SpanContext:
    """The span context of the current span, invalid when there is none.

    This is what a core event carries (DESIGN.md §2 rule 3).
    """
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else INVALID_SPAN_CONTEXT


def key_attribute(key: bytes) -> str:
    """A binary key as a span attribute (OTLP attributes must be UTF-8): base64url."""
    return base64.urlsafe_b64encode(key).decode("ascii").rstrip("=")


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for trace export."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter in ("none", ""):
        return exporter == "" and bool(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    return True


def configure_from_env(
    service_name: str = "zikade",
    *,
    force_otlp_endpoint: str | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Install a global TracerProvider exporting as the ``OTEL_*`` variables say.

    ``force_otlp_endpoint`` is the CLI's ``--trace`` shortcut: export over
    OTLP/HTTP to that endpoint even when no variable is set. Returns whether an
    exporter was installed. Honours ``OTEL_SDK_DISABLED``.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if force_otlp_endpoint is None and not tracing_requested(env):
        return False

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if force_otlp_endpoint is not None and not (
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            exporter = OTLPSpanExporter(
                endpoint=force_otlp_endpoint.rstrip("/") + "/v1/traces"
            )
        else:
            exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Flush and stop the global provider if it is the SDK's (CLI exit, daemon stop)."""
    provider = trace.get_tracer_provider()
    shutdown_fn = getattr(provider, "shutdown", None)
    if callable(shutdown_fn):
        shutdown_fn()
