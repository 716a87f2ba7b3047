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

    def heard(self, server: Key, closer: tuple[Key, ...]) -> None:
        """``server`` answered with ``closer``: they lie one step beyond it on the path."""
        if self.reason is not None:
            return
        depth = self.depth
        d = depth.get(server, 0) + 1
        for c in closer:
            old = depth.get(c)
            if old is None or old > d:
                depth[c] = d


@dataclass(slots=True)
class ProvideRecord:
    """One provide (a broadcast of an ADD_PROVIDER) while it runs and after it ends."""

    number: int
    origin: int
    key: Key
    start: float
    optimistic: bool
    settled: float | None = None
    """When the strategy said the caller may return (optimistic: most replicas stored)."""
    end: float | None = None
    reason: str | None = None
    stored: int = 0
    """Stores that succeeded (ADD_PROVIDER written)."""

    @property
    def returned(self) -> float | None:
        """When a caller would get control back: settled if ever, else the end."""
        return self.settled if self.settled is not None else self.end


@dataclass(slots=True)
class FindRecord:
    """One find-providers query for a key some provide put in the network."""

    number: int
    origin: int
    key: Key
    start: float
    first: float | None = None
    """When the first answer naming a provider arrived."""
    end: float | None = None
    reason: str | None = None


@dataclass(slots=True)
class Counters:
    """Run-wide tallies the simulation keeps as messages go by."""

    requests: int = 0
    responses: int = 0
    lost: int = 0
    """Requests or responses dropped by the loss model."""
    refused: int = 0
    """Requests to nodes that never existed, or carrying a message the simulation cannot
    interpret (departed nodes are not refused: dials to them hang, see ``dial_failures``)."""
    timed_out: int = 0
    """Requests that failed by waiting: deadline unanswered (loss, unresponsive, too slow)
    or a dial that hung until the dial timeout."""
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
    handshakes: int = 0
    """Connections set up (first contact between two nodes, or after an eviction)."""
    join_requests: int = 0
    """Requests sent before the operations started (the join and any settling)."""
    dial_failures: int = 0
    """Requests to undialable or departed nodes (the dial hung until it timed out)."""
    join_requests_by_kind: dict[str, int] = field(default_factory=dict)
    """Join-phase requests by the query that sent them (bootstrap, explore, include, probe)."""
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


def _ms(values: Sequence[float], q: float) -> float | None:
    return _r(percentile([v * 1000.0 for v in values], q), 3)


def provider_report(
    provides: Sequence[ProvideRecord], finds: Sequence[FindRecord]
) -> dict[str, object]:
    """Provide and find-providers outcomes (empty when neither ran)."""
    if not provides and not finds:
        return {}
    ended = [p for p in provides if p.reason not in (None, ORIGIN_DEPARTED, UNFINISHED)]
    classic = [p.end - p.start for p in ended if not p.optimistic and p.end is not None]
    optimistic = [
        r - p.start for p in ended if p.optimistic and (r := p.returned) is not None
    ]
    judged = [f for f in finds if f.reason not in (ORIGIN_DEPARTED, UNFINISHED)]
    firsts = [f.first - f.start for f in judged if f.first is not None]
    return {
        "provides": len(provides),
        "provide_success_rate": _r(mean([1.0 if p.reason == "done" else 0.0 for p in ended])),
        "provide_stored_mean": _r(mean([float(p.stored) for p in ended])),
        "provide_ms_p50": _ms(classic, 50),
        "provide_ms_p90": _ms(classic, 90),
        "provide_optimistic_ms_p50": _ms(optimistic, 50),
        "provide_optimistic_ms_p90": _ms(optimistic, 90),
        "find_providers": len(finds),
        "find_providers_success_rate": _r(
            mean([1.0 if f.first is not None else 0.0 for f in judged])
        ),
        "find_providers_first_ms_p50": _ms(firsts, 50),
        "find_providers_first_ms_p90": _ms(firsts, 90),
    }


def build_report(
    *,
    settings: dict[str, object],
    records: Sequence[LookupRecord],
    counters: Counters,
    phases: dict[str, float],
    table_sizes: Sequence[int],
    extra: dict[str, object] | None = None,
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
            "handshakes": counters.handshakes,
            "dial_failures": counters.dial_failures,
            "join_requests": counters.join_requests,
            "join_requests_by_kind": dict(sorted(counters.join_requests_by_kind.items())),
            "stuck_timers": counters.stuck_timers,
            "events": counters.events,
        }
    )
    if extra:
        report.update(extra)
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
        *(
            [
                f"provide ms p50 / p90  {report.get('provide_ms_p50')}"
                f" / {report.get('provide_ms_p90')}  optimistic"
                f" {report.get('provide_optimistic_ms_p50')}"
                f" / {report.get('provide_optimistic_ms_p90')}",
                f"find-providers        success {report.get('find_providers_success_rate')}"
                f"  first ms p50 / p90 {report.get('find_providers_first_ms_p50')}"
                f" / {report.get('find_providers_first_ms_p90')}",
            ]
            if "provides" in report
            else []
        ),
        f"join requests / node  {report.get('join_requests_per_node_mean')}",
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
