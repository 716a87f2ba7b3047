"""The knobs of the reprovide sweep (:mod:`zikade_py.core.sweep`) and their defaults.

Defaults follow go-libp2p-kad-dht's ``provider`` package (v0.35) unless a
measurement said otherwise; each field says why it has its value.
"""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.core.key import KEY_BITS

REPROVIDE_INTERVAL = 22 * 3600.0
"""Seconds between two announcements of a key (go, Amino: 22 h; records live 48 h)."""

MAX_PREIMAGE_BITS = 16
"""Prefix bits a synthesised lookup target matches (2^16 hashes at most on average)."""


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """Knobs of the sweep; defaults follow go-libp2p-kad-dht's provider (v0.35)."""

    replication: int = 20
    """k: servers that get each key's record."""
    reprovide_interval: float = REPROVIDE_INTERVAL
    max_prefix_len: int = 24
    """Longest region prefix (and the resolution of the schedule)."""
    burst_delay: float = 1.0
    """Seconds new keys wait for company before their first announcement."""
    retry_interval: float = 300.0
    """Seconds before a failed region (or burst) is tried again (go: 5 min)."""
    max_regions: int = 4
    """Regions explored and announced at once (go: workers)."""
    max_sends: int = 20
    """Batch streams in flight per region (go: ``maxProvideConnsPerWorker``)."""
    batch_size: int = 2048
    """Keys sent on one stream at most."""
    page_keys: int = 32768
    """Keys of one region in memory at once: a region (or a burst) with more is read and
    announced page by page (each key costs ~0.5 kB while its region is announced)."""
    send_timeout: float = 60.0
    """Seconds one batch stream may take, plus ``send_timeout_per_key`` for each key."""
    send_timeout_per_key: float = 0.05
    """A slow receiver reads a batch of thousands of records for a while (go bounds each
    ADD_PROVIDER on its stream by itself); measured on a loaded loopback network, batches
    of 2,048 keys under a flat 60 s lost half their records."""
    max_lookups_per_region: int = 64
    """Exploration lookups per region at most (go: ``maxExplorationPrefixSearches``)."""
    individual_threshold: int = 2
    """Regions with at most this many keys are announced key by key, without exploring."""
    min_reachable_ratio: float = 0.2
    """Share of a region's servers that must take their records for it to count as done."""
    calibration_lookups: int = 4
    """Lookups to random targets that estimate the network size before placing new keys."""
    calibration_delay: float = 5.0
    """Seconds keys that were just announced (a single ``provide``) wait before calibration
    lookups are made for them: the provides' own lookups (:class:`SweepLookupSeen`) usually
    size the network meanwhile. Burst keys calibrate at once."""
    calibration_retry: float = 5.0
    """Seconds before calibrating again when every calibration lookup failed, or before a
    region is tried again when its lookup found nobody to ask (no peers yet: a node asked
    to provide, or restarted with overdue regions, before its routing table filled)."""
    drop_retry_delay: float = 0.5
    """Seconds before a batch refused by our own admission control is offered again."""
    send_retries: int = 1
    """Times a server's failed batches are sent again within one region (go: none; a
    server that misses its batch misses the keys until the next cycle)."""
    send_retry_delay: float = 5.0
    """Seconds before a failed batch is sent again."""
    preimage_targets: bool = True
    """Synthesised lookup targets get real preimages (the wire needs them; the simulator
    turns this off)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.replication < 1:
            raise ValueError("replication must be at least 1")
        if self.reprovide_interval <= 0:
            raise ValueError("reprovide_interval must be positive")
        if not 0 <= self.max_prefix_len <= KEY_BITS:
            raise ValueError(f"max_prefix_len must be within 0..{KEY_BITS}")
        if self.send_retries < 0:
            raise ValueError("send_retries must not be negative")
        for name in (
            "burst_delay", "drop_retry_delay", "send_retry_delay", "calibration_delay",
            "send_timeout_per_key",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("retry_interval", "send_timeout", "calibration_retry"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in (
            "max_regions", "max_sends", "batch_size", "max_lookups_per_region", "page_keys",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.individual_threshold < 0 or self.calibration_lookups < 1:
            raise ValueError("individual_threshold >= 0 and calibration_lookups >= 1 required")
        if not 0.0 < self.min_reachable_ratio <= 1.0:
            raise ValueError("min_reachable_ratio must be within (0, 1]")


__all__ = ["MAX_PREIMAGE_BITS", "REPROVIDE_INTERVAL", "SweepConfig"]
