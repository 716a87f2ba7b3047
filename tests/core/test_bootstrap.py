"""Bootstrap: self-lookup runs, timeouts reported as Finished, cancels, late answers."""

from __future__ import annotations

import pytest

from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key, sort_by_distance
from zikade_py.core.routing.bootstrap import (
    BOOTSTRAP_QUERY_ID,
    Bootstrap,
    BootstrapCancelRequest,
    BootstrapConfig,
    BootstrapFindCloser,
    BootstrapFindCloserFailure,
    BootstrapFindCloserResponse,
    BootstrapFinished,
    BootstrapIdle,
    BootstrapPoll,
    BootstrapStart,
    BootstrapState,
    BootstrapStop,
    BootstrapWaiting,
)
from zikade_py.core.trace import Trace

SELF = Key.from_preimage(b"self")


def node(i: int) -> Key:
    return Key.from_preimage(f"node-{i}".encode())


def drain(boot: Bootstrap, first: BootstrapState, now: float) -> list[BootstrapState]:
    """``first`` and every state after it until waiting/finished/idle (bounded)."""
    out = [first]
    for _ in range(100):
        if not isinstance(out[-1], BootstrapFindCloser | BootstrapCancelRequest):
            return out
        out.append(boot.advance(BootstrapPoll(), now))
    raise AssertionError("bootstrap did not settle")


def requested(states: list[BootstrapState]) -> list[Key]:
    return [s.node for s in states if isinstance(s, BootstrapFindCloser)]


def test_run_finishes_with_the_closest_nodes() -> None:
    seeds = (node(1), node(2), node(3))
    boot = Bootstrap(SELF)
    states = drain(boot, boot.advance(BootstrapStart(seeds), 0.0), 0.0)
    assert set(requested(states)) == set(seeds)
    assert isinstance(states[-1], BootstrapWaiting)
    first = states[0]
    assert isinstance(first, BootstrapFindCloser)
    assert first.query_id == BOOTSTRAP_QUERY_ID and first.target == SELF
    assert first.deadline == 10.0  # the request deadline, not the run's
    assert boot.running and boot.next_due() == 10.0
    # Seed 1 knows node 4; everyone else knows nobody new.
    state = boot.advance(BootstrapFindCloserResponse(node(1), (node(4), SELF)), 1.0)
    states = drain(boot, state, 1.0)
    assert requested(states) == [node(4)]  # self is never asked
    last: BootstrapState = states[-1]
    for i, n in enumerate((node(2), node(3), node(4))):
        last = boot.advance(BootstrapFindCloserResponse(n), 2.0 + i)
    assert isinstance(last, BootstrapFinished)
    assert last.reason is FinishReason.DONE
    expected = sort_by_distance([node(i) for i in range(1, 5)], SELF)
    assert list(last.closest) == expected
    assert last.stats.requests == 4 and last.stats.success == 4
    assert not boot.running and boot.next_due() is None
    assert isinstance(boot.advance(BootstrapPoll(), 5.0), BootstrapIdle)


def test_timeout_is_reported_with_a_cancel_for_every_outstanding_request() -> None:
    seeds = tuple(node(i) for i in range(5))
    boot = Bootstrap(SELF, BootstrapConfig(timeout=5.0, request_timeout=30.0))
    states = drain(boot, boot.advance(BootstrapStart(seeds), 0.0), 0.0)
    asked = requested(states)
    assert len(asked) == 5
    assert boot.next_due() == 5.0
    boot.advance(BootstrapFindCloserResponse(node(0)), 1.0)  # one answered, four outstanding
    states = drain(boot, boot.advance(BootstrapPoll(), 5.0), 5.0)
    cancels = [s for s in states if isinstance(s, BootstrapCancelRequest)]
    assert {c.node for c in cancels} == set(asked) - {node(0)} and len(cancels) == 4
    assert all(c.query_id == BOOTSTRAP_QUERY_ID for c in cancels)
    finished = states[-1]
    assert isinstance(finished, BootstrapFinished) and finished.reason is FinishReason.TIMEOUT
    assert finished.closest == (node(0),)
    # Late answers are ignored; the machine is idle and never crashes.
    for late in (
        BootstrapFindCloserResponse(node(1), (node(9),)),
        BootstrapFindCloserFailure(node(2), "reset"),
        BootstrapStop(),
        BootstrapPoll(),
    ):
        assert isinstance(boot.advance(late, 6.0), BootstrapIdle)


def test_the_start_events_deadline_bounds_the_run() -> None:
    boot = Bootstrap(SELF, BootstrapConfig(timeout=60.0, request_timeout=30.0))
    boot.advance(BootstrapStart((node(1),), trace=Trace(deadline=3.0)), 0.0)
    assert boot.next_due() == 3.0
    states = drain(boot, boot.advance(BootstrapPoll(), 3.0), 3.0)
    assert [type(s) for s in states] == [BootstrapCancelRequest, BootstrapFinished]
    assert states[-1].reason is FinishReason.TIMEOUT  # type: ignore[union-attr]


def test_empty_seeds_finish_failed() -> None:
    boot = Bootstrap(SELF)
    state = boot.advance(BootstrapStart(()), 0.0)
    assert isinstance(state, BootstrapFinished) and state.reason is FinishReason.FAILED
    assert state.closest == () and not boot.running
    # Only self as a seed is the same as none.
    state = boot.advance(BootstrapStart((SELF,)), 1.0)
    assert isinstance(state, BootstrapFinished) and state.reason is FinishReason.FAILED


def test_all_seeds_failing_finishes_failed() -> None:
    boot = Bootstrap(SELF)
    drain(boot, boot.advance(BootstrapStart((node(1), node(2))), 0.0), 0.0)
    boot.advance(BootstrapFindCloserFailure(node(1), "refused"), 1.0)
    state = boot.advance(BootstrapFindCloserFailure(node(2), "refused"), 1.0)
    assert isinstance(state, BootstrapFinished) and state.reason is FinishReason.FAILED


def test_stop_cancels_every_request_then_finishes_cancelled() -> None:
    seeds = (node(1), node(2), node(3))
    boot = Bootstrap(SELF)
    drain(boot, boot.advance(BootstrapStart(seeds), 0.0), 0.0)
    states = drain(boot, boot.advance(BootstrapStop(), 1.0), 1.0)
    assert {s.node for s in states if isinstance(s, BootstrapCancelRequest)} == set(seeds)
    assert len(states) == 4
    assert isinstance(states[-1], BootstrapFinished)
    assert states[-1].reason is FinishReason.CANCELLED


def test_start_while_running_is_ignored() -> None:
    boot = Bootstrap(SELF, BootstrapConfig(request_concurrency=1))
    state = boot.advance(BootstrapStart((node(1),)), 0.0)
    assert isinstance(state, BootstrapFindCloser) and state.node == node(1)
    state = boot.advance(BootstrapStart((node(2),)), 0.5)
    assert isinstance(state, BootstrapWaiting)
    state = boot.advance(BootstrapFindCloserResponse(node(1)), 1.0)
    assert isinstance(state, BootstrapFinished) and state.closest == (node(1),)


def test_a_new_run_can_follow_a_finished_one() -> None:
    boot = Bootstrap(SELF)
    boot.advance(BootstrapStart(()), 0.0)
    state = boot.advance(BootstrapStart((node(1),)), 1.0)
    assert isinstance(state, BootstrapFindCloser) and state.deadline == 11.0


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        BootstrapConfig(timeout=0.0).validate()
    with pytest.raises(ValueError):
        Bootstrap(SELF, BootstrapConfig(request_concurrency=0))
