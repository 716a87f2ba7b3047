"""The bases of every core event and state.

Events (what happened: inputs of a machine, outputs of the coordinator to its
driver) and states (what a machine wants next) are frozen, slotted dataclasses
of two distinct bases, :class:`Event` and :class:`State`. Both carry a
:class:`~zikade_py.core.trace.Trace` as the keyword-only field ``trace``; the
properties ``span_context`` and ``deadline`` read it.
Machines handle their event unions with ``match`` and ``typing.assert_never``.
Every subclass gets the cheaper ``__init__`` of :mod:`~zikade_py.core.frozen_init`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import Enum

from opentelemetry.trace import SpanContext

from zikade_py.core.frozen_init import speed_up_init
from zikade_py.core.trace import NO_TRACE, Trace


@dataclass(frozen=True, slots=True)
class Traced:
    """Anything that carries the trace of the operation it belongs to."""

    _: KW_ONLY
    trace: Trace = NO_TRACE

    def __init_subclass__(cls) -> None:
        # Called twice per subclass: for the class statement, then for the slotted copy
        # that @dataclass(slots=True) builds (with its generated __init__): that one is
        # given the cheaper __init__ (see frozen_init).
        speed_up_init(cls)

    @property
    def span_context(self) -> SpanContext:
        """The OpenTelemetry span context of the operation (may be invalid)."""
        return self.trace.span_context

    @property
    def deadline(self) -> float | None:
        """Absolute deadline of the operation, or ``None`` for none."""
        return self.trace.deadline


@dataclass(frozen=True, slots=True)
class Event(Traced):
    """Something that happened: what a machine is advanced with, or what a driver is told."""


@dataclass(frozen=True, slots=True)
class State(Traced):
    """What a machine wants next, returned by its ``advance`` (never fed back in as an event)."""


class FinishReason(Enum):
    """Why a query, broadcast or routing walk ended: every ending has one (rule 2)."""

    DONE = "done"
    """The query reached its goal or ran out of nodes to ask."""
    TIMEOUT = "timeout"
    """The query's deadline or the pool's query timeout passed."""
    CANCELLED = "cancelled"
    """The caller stopped it."""
    FAILED = "failed"
    """It could not run (for example, no node to start from)."""
