"""Estimating how many DHT servers there are, from what lookups find.

The sweep sizes its regions so that each holds about ``k`` to ``2k`` servers:
one exploration then finds every server a region's keys belong to. That needs
the network's size ``N``. A lookup for a random target ends with the ``k``
servers closest to it; in a network of ``N`` servers spread uniformly over the
keyspace, the ``i``-th closest lies at a normalised XOR distance of about
``i / (N + 1)``. A least-squares fit of the distances found gives one estimate
of ``1 / N`` per lookup (as go-libp2p-kad-dht's ``netsize`` package does); the
estimator keeps the latest ``window`` of them and answers with their median,
which one unlucky lookup cannot drag far.

Before any lookup has ended, the routing table gives a rough prior: a bucket
of common prefix length ``b`` that is not full holds about ``N / 2^(b+1)`` of
the servers, so each such bucket estimates ``N`` as ``count * 2^(b+1)``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

from zikade_py.core.key import KEY_BITS

_SCALE = float(1 << KEY_BITS)


class NetworkSizeEstimator:
    """Keeps recent per-lookup estimates of the server count (see the module docstring)."""

    __slots__ = ("_inverse", "min_samples")

    def __init__(self, window: int = 64, min_samples: int = 3) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        self._inverse: deque[float] = deque(maxlen=window)
        self.min_samples = min_samples
        """Samples needed before :meth:`estimate` answers."""

    def add_lookup(self, target: int, closest: Sequence[int]) -> None:
        """Learn from a lookup for ``target`` that ended with the servers ``closest``."""
        dists = sorted((target ^ v) / _SCALE for v in closest)
        if len(dists) < 2:
            return
        num = sum((i + 1) * d for i, d in enumerate(dists))
        den = sum((i + 1) ** 2 for i in range(len(dists)))
        inv = num / den
        if inv > 0:
            self._inverse.append(inv)

    def add_estimate(self, size: float) -> None:
        """Learn a whole estimate from elsewhere (the routing table, a stored value)."""
        if size >= 1:
            self._inverse.append(1.0 / size)

    @property
    def samples(self) -> int:
        """Estimates held."""
        return len(self._inverse)

    def estimate(self) -> float | None:
        """The estimated number of servers, or ``None`` before ``min_samples`` lookups."""
        if len(self._inverse) < self.min_samples:
            return None
        ordered = sorted(self._inverse)
        mid = len(ordered) // 2
        inv = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return max(1.0, 1.0 / inv - 1.0)

    def clear(self) -> None:
        """Forget every sample (the node went offline for long)."""
        self._inverse.clear()


REGION_MARGIN = 1.5
"""Regions aim at ``REGION_MARGIN * k`` servers or more on average: with an estimate a
third too high, or a region a third below the average, a region still holds ``k`` and
needs no widening (measured in the simulator: at 10,000 nodes, aiming at ``k`` made half
the regions too small and cost 14 % more records)."""


def prefix_length(size: float, k: int, max_bits: int) -> int:
    """The region prefix length for ``size`` servers: the longest with at least
    ``REGION_MARGIN * k`` servers per region on average, within ``0..max_bits``."""
    want = REGION_MARGIN * k
    if size < 2 * want:
        return 0
    return max(0, min(max_bits, math.floor(math.log2(size / want))))


def size_from_buckets(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """A rough server count from ``(cpl, entries)`` of routing-table buckets (prior only).

    Only buckets that are not full say something: a full bucket only bounds the
    count from below.
    """
    estimates = [n * float(1 << (b + 1)) for b, n in counts if 0 < n < k]
    if not estimates:
        return None
    estimates.sort()
    return estimates[len(estimates) // 2]


__all__ = ["REGION_MARGIN", "NetworkSizeEstimator", "prefix_length", "size_from_buckets"]
