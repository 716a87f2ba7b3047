"""Are we reachable from the public network? go-libp2p's AutoNAT v1 confidence rules, sans-IO.

Rules (go ``p2p/host/autonat/autonat.go``, ``recordObservation`` and ``scheduleProbe``):

* A dial-back that worked is a *public* observation, one that failed
  (``E_DIAL_ERROR``) a *private* one, anything else (no answer, a bad answer,
  ``E_INTERNAL_ERROR``, ``E_BAD_REQUEST``) an *unknown* one. ``E_DIAL_REFUSED``
  is no observation: the peer would not try, so another peer is asked soon.
* Public is believed at once (confidence drops to 0 when the status flips to
  it); each further public observation adds confidence, up to 3.
* Private or unknown must wear confidence down first: while confidence is above
  0 such an observation only lowers it; at 0 the status flips (to private, or to
  unknown). A private observation while private adds confidence.
* The next probe: 2 s when forced (a new AutoNAT peer appeared, or a peer
  refused) and the status is unknown; ``retry_interval`` (90 s) while unknown,
  unsure (confidence < 3), or private but dialed by a public peer since the last
  probe; ``2 × refresh_interval`` (≤ 24 h) when public and dialed recently;
  ``refresh_interval`` (15 min) otherwise.

:class:`ReachabilityTracker` holds the status and confidence and is advanced
with explicit ``now``; :mod:`.autonat` is the asyncio driver around it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

MAX_CONFIDENCE: Final = 3
"""go ``maxConfidence``."""

MAX_REFRESH_INTERVAL: Final = 24 * 3600.0
"""go ``maxRefreshInterval``."""

FORCED_PROBE_DELAY: Final = 2.0
"""Delay of a forced probe while the status is unknown (go: 2 s)."""


class Reachability(enum.Enum):
    """What AutoNAT believes about us (go ``network.Reachability``)."""

    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class AutoNATConfig:
    """Timings and limits of the AutoNAT client and server; defaults are go's."""

    boot_delay: float = 15.0
    """Wait this long after start before the first probe (connections settle)."""
    retry_interval: float = 90.0
    """Probe again this soon while unsure."""
    refresh_interval: float = 15 * 60.0
    """Probe again this often when sure."""
    request_timeout: float = 30.0
    """One dial-back request, from opening the stream to the answer."""
    throttle_peer_period: float = 90.0
    """A peer is asked at most once in this period."""
    max_pending_probes: int = 5
    """Probes in flight at once (go: more than 5 pending → no new probe)."""
    server: bool = True
    """Answer other peers' dial-back requests (disabled while we are private, as go)."""
    dial_timeout: float = 15.0
    """The server's budget for dialing one requester back (all its addresses)."""
    pad_failed_dials: bool = True
    """A failed dial-back is answered only when ``dial_timeout`` is spent, so the answer's
    timing says nothing about the target (go: the service is no port scanner)."""
    max_peer_addresses: int = 16
    """Addresses of one request that are dialed at most."""
    throttle_global_max: int = 30
    """Dial-backs per ``throttle_reset_period`` for all peers together (0: no limit)."""
    throttle_peer_max: int = 3
    """Dial-backs per ``throttle_reset_period`` for one peer."""
    throttle_reset_period: float = 60.0
    """The rate-limit window of the server."""
    max_concurrent_dials: int = 8
    """Dial-backs under way at once; further requests are refused (``E_DIAL_REFUSED``)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for settings no node can run with."""
        for name in (
            "retry_interval", "refresh_interval", "request_timeout", "dial_timeout",
            "throttle_reset_period",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"autonat {name} must be positive")
        for name in ("boot_delay", "throttle_peer_period"):
            if getattr(self, name) < 0:
                raise ValueError(f"autonat {name} must not be negative")
        for name in ("max_pending_probes", "max_peer_addresses", "throttle_peer_max",
                     "max_concurrent_dials"):
            if getattr(self, name) < 1:
                raise ValueError(f"autonat {name} must be at least 1")
        if self.throttle_global_max < 0:
            raise ValueError("autonat throttle_global_max must not be negative")


class ReachabilityTracker:
    """Status and confidence, changed by observations (see the module docstring)."""

    __slots__ = ("confidence", "config", "last_inbound", "last_probe", "status")

    def __init__(self, config: AutoNATConfig | None = None) -> None:
        self.config = config or AutoNATConfig()
        self.status = Reachability.UNKNOWN
        self.confidence = 0
        """0..3: how many observations back the status (go ``confidence``)."""
        self.last_probe: float | None = None
        self.last_inbound: float | None = None

    def observe(self, observation: Reachability) -> bool:
        """Take one observation; whether the status changed."""
        current = self.status
        if observation is Reachability.PUBLIC:
            if current is not Reachability.PUBLIC:
                self.confidence = 0
                self.status = observation
                return True
            self.confidence = min(self.confidence + 1, MAX_CONFIDENCE)
            return False
        if observation is Reachability.PRIVATE:
            if current is not Reachability.PRIVATE:
                if self.confidence > 0:
                    self.confidence -= 1
                    return False
                self.status = observation
                return True
            self.confidence = min(self.confidence + 1, MAX_CONFIDENCE)
            return False
        if self.confidence > 0:
            self.confidence -= 1
            return False
        self.status = Reachability.UNKNOWN
        return current is not Reachability.UNKNOWN

    def addresses_changed(self) -> None:
        """New addresses of ours: a confident status is re-checked sooner (go ``checkAddrs``)."""
        if self.confidence == MAX_CONFIDENCE:
            self.confidence -= 1

    def inbound_from_public_peer(self, now: float) -> None:
        """A public peer dialed us (a hint that we may be reachable)."""
        self.last_inbound = now

    def probed(self, now: float) -> None:
        """A probe round started at ``now``."""
        self.last_probe = now

    def next_probe(self, now: float, *, forced: bool = False) -> float:
        """When the next probe round is due (absolute time, never before ``now``)."""
        cfg = self.config
        if self.last_probe is None:
            return now
        after = cfg.refresh_interval
        inbound = self.last_inbound is not None and self.last_inbound > self.last_probe
        status = self.status
        if forced and status is Reachability.UNKNOWN:
            after = FORCED_PROBE_DELAY
        elif (
            status is Reachability.UNKNOWN
            or self.confidence < MAX_CONFIDENCE
            or (status is not Reachability.PUBLIC and inbound)
        ):
            after = cfg.retry_interval
        elif status is Reachability.PUBLIC and inbound:
            after = min(after * 2, MAX_REFRESH_INTERVAL)
        return max(self.last_probe + after, now)
