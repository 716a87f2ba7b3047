"""Server spans for the daemon's HTTP endpoints, joined to the caller's trace.

Why: a ``zikade find-peer`` run against a daemon is one trace only if the daemon's
work hangs under the CLI's root span. The CLI's RPC client sends a W3C
``traceparent`` header; :func:`tracing_middleware` extracts it with the globally
configured propagator and opens a SERVER span ``HTTP <METHOD> <route>`` that is the
current span while the handler runs, so ``DHT.FindPeer`` and everything below it
become its children. The route is the matched resource's template
(``/routing/v1/peers/{peer-id}``), never the raw path, to keep span names few.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from zikade_py import telemetry

__all__ = ["UNMATCHED_ROUTE", "route_template", "span_name", "tracing_middleware"]

UNMATCHED_ROUTE: Final = "unmatched"
"""The route name used in span names when no resource matched the request."""


def route_template(request: web.Request) -> str:
    """The matched resource's path template, or :data:`UNMATCHED_ROUTE`."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return UNMATCHED_ROUTE
    canonical = resource.canonical
    return canonical or UNMATCHED_ROUTE


def span_name(request: web.Request) -> str:
    """``HTTP <METHOD> <route>`` — the name of the server span of ``request``."""
    return f"HTTP {request.method} {route_template(request)}"


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` inside a SERVER span whose parent is the request's ``traceparent``.

    Records ``http.request.method``, ``http.route``, ``url.path`` and
    ``http.response.status_code``; a 5xx or an exception marks the span as an error.
    """
    parent = propagate.extract(request.headers)
    route = route_template(request)
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "http.route": route,
        "url.path": request.path,
    }
    if request.remote:
        attributes["client.address"] = request.remote
    with telemetry.tracer().start_as_current_span(
        f"HTTP {request.method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        # an HTTPException is an answer, not a failure: handled below
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _record_status(span, exc.status)
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        _record_status(span, response.status)
        return response


def _record_status(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
