"""go's AutoNAT confidence and scheduling rules, on the sans-IO tracker (explicit time)."""

from __future__ import annotations

from zikade_py.p2p.autonat_status import (
    FORCED_PROBE_DELAY,
    MAX_CONFIDENCE,
    AutoNATConfig,
    Reachability,
    ReachabilityTracker,
)

PUBLIC, PRIVATE, UNKNOWN = Reachability.PUBLIC, Reachability.PRIVATE, Reachability.UNKNOWN


def test_public_is_believed_at_once_and_confidence_grows_to_three() -> None:
    t = ReachabilityTracker()
    assert t.observe(PUBLIC) and t.status is PUBLIC and t.confidence == 0
    for expected in (1, 2, 3, 3):
        assert not t.observe(PUBLIC)
        assert t.confidence == expected


def test_private_must_wear_confidence_down_first() -> None:
    t = ReachabilityTracker()
    t.observe(PUBLIC)
    t.observe(PUBLIC)
    t.observe(PUBLIC)  # confidence 2
    assert not t.observe(PRIVATE) and t.status is PUBLIC and t.confidence == 1
    assert not t.observe(PRIVATE) and t.confidence == 0
    assert t.observe(PRIVATE) and t.status is PRIVATE and t.confidence == 0
    assert not t.observe(PRIVATE) and t.confidence == 1


def test_one_failure_from_unknown_is_private() -> None:
    t = ReachabilityTracker()
    assert t.observe(PRIVATE) and t.status is PRIVATE


def test_unknown_lowers_confidence_then_flips() -> None:
    t = ReachabilityTracker()
    t.observe(PUBLIC)
    t.observe(PUBLIC)  # confidence 1
    assert not t.observe(UNKNOWN) and t.status is PUBLIC and t.confidence == 0
    assert t.observe(UNKNOWN) and t.status is UNKNOWN
    assert not t.observe(UNKNOWN)


def test_schedule() -> None:
    cfg = AutoNATConfig(retry_interval=90.0, refresh_interval=900.0)
    t = ReachabilityTracker(cfg)
    assert t.next_probe(5.0) == 5.0  # never probed: now
    t.probed(100.0)
    assert t.next_probe(100.0, forced=True) == 100.0 + FORCED_PROBE_DELAY
    assert t.next_probe(100.0) == 190.0  # unknown: retry
    t.observe(PUBLIC)
    assert t.next_probe(100.0) == 190.0  # not confident yet
    for _ in range(MAX_CONFIDENCE):
        t.observe(PUBLIC)
    assert t.next_probe(100.0) == 1000.0  # sure: refresh
    t.inbound_from_public_peer(150.0)
    assert t.next_probe(100.0) == 1900.0  # public and dialed since: twice as long
    t.addresses_changed()
    assert t.confidence == MAX_CONFIDENCE - 1 and t.next_probe(100.0) == 190.0
    assert t.next_probe(5000.0) == 5000.0  # overdue: now


def test_private_but_dialed_retries_soon() -> None:
    t = ReachabilityTracker(AutoNATConfig(retry_interval=90.0, refresh_interval=900.0))
    t.observe(PRIVATE)
    for _ in range(MAX_CONFIDENCE):
        t.observe(PRIVATE)
    t.probed(0.0)
    assert t.next_probe(0.0) == 900.0
    t.inbound_from_public_peer(1.0)
    assert t.next_probe(1.0) == 90.0
