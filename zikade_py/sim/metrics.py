"""What a simulation measured, and the report it prints.

Each lookup keeps a :class:`LookupRecord` while it runs (the sim fills in the
path depths and message count as requests and answers go by) and is judged
against the true closest live nodes when it ends. :func:`build_report` folds
the records and the run's counters into one flat, JSON-ready dict whose floats
are rounded, so the same seed prints the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from zikade_py.core.key import Key

ORIGIN_DEPARTED = "origin-departed"
"""End reason of a lookup whose own node left the network before it finished."""
UNFINISHED = "unfinished"
"""End reason of a lookup that never reported an end before the simulation's cap (a hang)."""


@dataclass(slots=True)
class LookupRecord:
    """One lookup while it runs and after it ends."""

    number: int
    origin: int
    target: Key
    start: float
    depth: dict[Key, int] = field(default_factory=dict)
    """Path length of every node the lookup heard of; seeds are depth 0."""
    messages: int = 0
    end: float | None = None
    reason: str | None = None
    found: tuple[Key, ...] = ()
    success: bool = False
    overlap: float = 0.0
    hops: int | None = None

    @property
    def done(self) -> bool:
        """Whether the lookup has ended (with any reason)."""
        return self.reason is not None


@dataclass(slots=True)
class Counters:
    """Run-wide tallies the simulation keeps as messages go by."""

    requests: int = 0
    responses: int = 0
    lost: int = 0
    """Requests or responses dropped by the loss model."""
    refused: int = 0
    """Requests to departed nodes (connection refused)."""
    timed_out: int = 0
    """Requests that reached their deadline unanswered (loss, unresponsive, too slow)."""
    cancelled: int = 0
    admission_dropped: int = 0
    """Requests the coordinators themselves refused (network admission limits)."""
    routing_updated: int = 0
    routing_removed: int = 0
    stuck_timers: int = 0
    """Times a coordinator asked to be woken in the past after it was polled dry."""
    events: int = 0
    churn_leaves: int = 0
    churn_joins: int = 0
    bootstrap_reasons: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0–100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, ``None`` when empty."""
    return sum(values) / len(values) if values else None


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    *,
    settings: dict[str, object],
    records: Sequence[LookupRecord],
    counters: Counters,
    phases: dict[str, float],
    table_sizes: Sequence[int],
) -> dict[str, object]:
    """The run as one flat dict (``settings`` first, then outcomes, then costs)."""
    judged = [r for r in records if r.reason not in (ORIGIN_DEPARTED, UNFINISHED)]
    reasons: dict[str, int] = {}
    for r in records:
        key = r.reason or UNFINISHED
        reasons[key] = reasons.get(key, 0) + 1
    hops = [float(r.hops) for r in judged if r.hops is not None]
    messages = [float(r.messages) for r in judged]
    latencies = [(r.end - r.start) * 1000.0 for r in judged if r.end is not None]
    success = [1.0 if r.success else 0.0 for r in judged]
    overlap = [r.overlap for r in judged]
    report: dict[str, object] = dict(settings)
    report.update(
        {
            "lookups_judged": len(judged),
            "success_rate": _r(mean(success)),
            "closest_overlap_mean": _r(mean(overlap)),
            "hops_p50": percentile(hops, 50),
            "hops_p95": percentile(hops, 95),
            "hops_mean": _r(mean(hops)),
            "messages_per_lookup_mean": _r(mean(messages)),
            "messages_per_lookup_p95": percentile(messages, 95),
            "virtual_latency_ms_p50": _r(percentile(latencies, 50), 3),
            "virtual_latency_ms_p95": _r(percentile(latencies, 95), 3),
            "virtual_latency_ms_max": _r(max(latencies) if latencies else None, 3),
            "finish_reasons": dict(sorted(reasons.items())),
            "table_size_mean": _r(mean([float(s) for s in table_sizes]), 3),
            "table_size_min": min(table_sizes) if table_sizes else None,
            "requests_total": counters.requests,
            "responses_total": counters.responses,
            "requests_lost": counters.lost,
            "requests_refused": counters.refused,
            "requests_timed_out": counters.timed_out,
            "requests_cancelled": counters.cancelled,
            "requests_dropped_admission": counters.admission_dropped,
            "routing_updated": counters.routing_updated,
            "routing_removed": counters.routing_removed,
            "bootstrap_reasons": dict(sorted(counters.bootstrap_reasons.items())),
            "churn_leaves": counters.churn_leaves,
            "churn_joins": counters.churn_joins,
            "stuck_timers": counters.stuck_timers,
            "events": counters.events,
        }
    )
    for name, value in phases.items():
        report[name] = _r(value, 3)
    return report


NON_DETERMINISTIC = ("wall_s", "cpu_s", "join_wall_s", "lookup_wall_s", "peak_rss_mb")
"""Report fields that measure the machine, not the simulation; everything else is seeded."""


def format_summary(report: dict[str, object]) -> str:
    """A readable multi-line summary of a report for humans at a terminal."""
    lines = [
        f"nodes {report.get('nodes')}  lookups {report.get('lookups')}  seed {report.get('seed')}"
        f"  prefill {report.get('prefill')}",
        f"loss {report.get('loss')}  unresponsive {report.get('unresponsive')}"
        f"  slow {report.get('slow')}  churn {report.get('churn')}/min",
        "",
        f"success rate          {report.get('success_rate')}",
        f"closest-20 overlap    {report.get('closest_overlap_mean')}",
        f"hops p50 / p95        {report.get('hops_p50')} / {report.get('hops_p95')}",
        f"messages per lookup   {report.get('messages_per_lookup_mean')}"
        f"  (p95 {report.get('messages_per_lookup_p95')})",
        f"latency ms p50 / p95  {report.get('virtual_latency_ms_p50')}"
        f" / {report.get('virtual_latency_ms_p95')}",
        f"finish reasons        {report.get('finish_reasons')}",
        "",
        f"table size mean / min {report.get('table_size_mean')} / {report.get('table_size_min')}",
        f"requests              {report.get('requests_total')}  lost {report.get('requests_lost')}"
        f"  timed out {report.get('requests_timed_out')}  refused {report.get('requests_refused')}"
        f"  cancelled {report.get('requests_cancelled')}"
        f"  dropped {report.get('requests_dropped_admission')}",
        f"join                  {report.get('join_virtual_s')} s virtual,"
        f" {report.get('join_wall_s')} s wall",
        f"lookups               {report.get('lookup_virtual_s')} s virtual,"
        f" {report.get('lookup_wall_s')} s wall",
        f"total                 {report.get('wall_s')} s wall, {report.get('cpu_s')} s CPU,"
        f" peak RSS {report.get('peak_rss_mb')} MB",
    ]
    return "\n".join(lines)
