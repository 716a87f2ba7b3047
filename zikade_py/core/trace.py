"""The trace a core event carries: its OpenTelemetry span context and deadline.

DESIGN.md §2 rule 3: every event carries the span context of the operation that
caused it and that operation's deadline. An event caused by another copies the
cause's :class:`Trace` unchanged; a side effect that must outlive its cause (a
routing candidate found during a query) takes :data:`NO_TRACE`, so cancelling
the caller cannot kill it.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext

from zikade_py.core.frozen_init import speed_up_init


@dataclass(frozen=True, slots=True)
class Trace:
    """Span context and absolute deadline (in the machine's ``now`` units) of an event."""

    span_context: SpanContext = INVALID_SPAN_CONTEXT
    deadline: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the deadline has passed at ``now``."""
        return self.deadline is not None and now >= self.deadline

    def with_deadline(self, deadline: float | None) -> Trace:
        """The same span context with the earlier of the two deadlines."""
        if deadline is None:
            return self
        if self.deadline is None or deadline < self.deadline:
            return Trace(self.span_context, deadline)
        return self


speed_up_init(Trace)

NO_TRACE = Trace()
"""A fresh trace: invalid span context, no deadline (for side-effect events)."""


def earliest(*times: float | None) -> float | None:
    """The earliest of the given due times, ignoring ``None`` (nothing due)."""
    due: float | None = None
    for t in times:
        if t is not None and (due is None or t < due):
            due = t
    return due
