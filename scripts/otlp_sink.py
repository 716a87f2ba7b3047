#!/usr/bin/env python3
"""A stand-in for Jaeger when none can run: an OTLP/HTTP trace receiver that prints trees.

scripts/jaeger-demo.sh starts it on 127.0.0.1:4318 when no docker engine is available
and nothing else listens there, so the demo still shows what Jaeger would: each trace
as a tree of spans (service, name, duration, number of events). It accepts
``POST /v1/traces`` (protobuf, optionally gzip), keeps the spans, and prints every
trace when it gets SIGINT/SIGTERM (or after ``--duration`` seconds).

    python scripts/otlp_sink.py [--port 4318] [--max-children 12] [--min-spans 3] [--duration S]
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import signal
import sys
import threading
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True, slots=True)
class Span:
    """What the tree printer needs of one received span."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    events: int


_lock = threading.Lock()
_spans: list[Span] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/traces":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(length, 64 * 1024 * 1024))
        encoding = self.headers.get("Content-Encoding", "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            export = ExportTraceServiceRequest()
            export.ParseFromString(body)
        except Exception as exc:
            self.send_error(400, f"undecodable export: {exc}")
            return
        received: list[Span] = []
        for rs in export.resource_spans:
            service = next(
                (
                    kv.value.string_value
                    for kv in rs.resource.attributes
                    if kv.key == "service.name"
                ),
                "?",
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    received.append(
                        Span(
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            service,
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                            len(s.events),
                        )
                    )
        with _lock:
            _spans.extend(received)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _tree_printer(
    children: dict[str, list[Span]], max_children: int
) -> Callable[[Span, int], None]:
    def show(span: Span, depth: int) -> None:
        ms = (span.end_ns - span.start_ns) / 1e6
        events = f", {span.events} events" if span.events else ""
        print(f"{'  ' * depth}- {span.name}  [{span.service}, {ms:.1f} ms{events}]")
        kids = sorted(children.get(span.span_id, []), key=_start)
        for kid in kids[:max_children]:
            show(kid, depth + 1)
        if len(kids) > max_children:
            print(f"{'  ' * (depth + 1)}… {len(kids) - max_children} more")

    return show


def _start(span: Span) -> int:
    return span.start_ns


def print_traces(spans: list[Span], max_children: int, min_spans: int) -> None:
    """Each trace of a command (root ``CLI.*``) or of ``min_spans`` spans or more as an
    indented tree; the small background traces (inbound requests, routing checks) are
    only counted."""
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    print(f"otlp-sink: {len(spans)} spans in {len(by_trace)} traces")
    small: Counter[str] = Counter()
    for trace_id, members in sorted(by_trace.items(), key=lambda kv: min(map(_start, kv[1]))):
        ids = {s.span_id for s in members}
        children: dict[str, list[Span]] = defaultdict(list)
        for s in members:
            children[s.parent_id if s.parent_id in ids else ""].append(s)
        roots = sorted(children.get("", []), key=_start)
        if len(members) < min_spans and not any(r.name.startswith("CLI.") for r in roots):
            small.update(r.name for r in roots)
            continue
        print(f"\ntrace {trace_id} ({len(members)} spans)")
        show = _tree_printer(children, max_children)
        for root in roots:
            show(root, 0)
    if small:
        listed = ", ".join(f"{n}× {name}" for name, n in small.most_common())
        print(f"\nand {sum(small.values())} small background traces: {listed}")


def main() -> None:
    """Serve until a signal (or ``--duration``), then print what arrived."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--max-children", type=int, default=12)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument(
        "--min-spans", type=int, default=3, help="print traces of at least this many spans"
    )
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"otlp-sink: listening on http://127.0.0.1:{args.port}/v1/traces", flush=True)
    stop.wait(args.duration)
    server.shutdown()
    with _lock:
        print_traces(list(_spans), args.max_children, args.min_spans)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
