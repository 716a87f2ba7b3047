"""Models of the network the simulated nodes talk over.

What a real network does to a Kademlia lookup, reduced to the few knobs that
change its outcome:

* **Latency per link** — every pair of nodes has one stable one-way delay drawn
  from a distribution (fixed, or log-normal around a median), so a slow link
  stays slow for every message, as on the internet.
* **Loss** — each message (request or response) vanishes with probability
  ``loss``; the requester only learns of it when its request deadline passes.
* **Unresponsive nodes** — accept connections and requests, never answer.
* **Slow nodes** — answer, but only after an extra delay.
* **Churn** — nodes leave (a departed node answers nothing and connections to
  it are refused) and fresh nodes join, at ``churn`` × live nodes per minute.

The model decides *what* happens to a message; the simulation decides *when*
to ask. All randomness comes from the seeded ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist

_QUANTILES = 4096
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a fast, well-spread, deterministic 64-bit hash of an int."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    """One-way link latency: ``median`` seconds, log-normal spread ``sigma`` (0 → fixed)."""

    median: float = 0.05
    """Median one-way delay in seconds (50 ms is a typical intercontinental mix)."""
    sigma: float = 0.5
    """Standard deviation of the log of the delay; 0 makes every link exactly ``median``."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a latency no link could have."""
        if self.median < 0:
            raise ValueError("median latency must not be negative")
        if self.sigma < 0:
            raise ValueError("latency sigma must not be negative")


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Everything the network does to messages and nodes; defaults are a perfect network."""

    latency: LatencyConfig = field(default_factory=LatencyConfig)
    loss: float = 0.0
    """Probability that one message (request or response) is lost."""
    unresponsive: float = 0.0
    """Fraction of nodes that stop answering when the lookup phase starts."""
    slow: float = 0.0
    """Fraction of nodes that answer ``slow_delay`` seconds late."""
    slow_delay: float = 2.0
    """Extra delay of a slow node's answers, in seconds."""
    churn: float = 0.0
    """Fraction of live nodes replaced per virtual minute (each leave is matched by a join)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for probabilities outside [0, 1] or negative rates."""
        self.latency.validate()
        for name in ("loss", "unresponsive", "slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.loss >= 1.0:
            raise ValueError("loss must be below 1 or no message ever arrives")
        if self.slow_delay < 0:
            raise ValueError("slow_delay must not be negative")
        if self.churn < 0:
            raise ValueError("churn must not be negative")


class Network:
    """The network model of one simulation: link latencies, loss and churn timing.

    Latencies are a pure function of the seed and the two node numbers (a hash
    picks one of 4,096 precomputed quantiles of the distribution), so no memory
    grows with the number of links and the same pair always sees the same delay.
    """

    __slots__ = ("_churn_per_s", "_loss", "_quantiles", "_rng", "_salt", "config")

    def __init__(self, config: NetworkConfig, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self._rng = rng
        self._salt = rng.getrandbits(64)
        self._loss = config.loss
        self._churn_per_s = config.churn / 60.0
        lat = config.latency
        if lat.sigma == 0 or lat.median == 0:
            self._quantiles = [lat.median] * _QUANTILES
        else:
            normal = NormalDist()
            self._quantiles = [
                lat.median * math.exp(lat.sigma * normal.inv_cdf((i + 0.5) / _QUANTILES))
                for i in range(_QUANTILES)
            ]

    def latency(self, a: int, b: int) -> float:
        """One-way delay between nodes ``a`` and ``b`` (symmetric, stable for the run)."""
        if a > b:
            a, b = b, a
        h = _mix64((self._salt + (a << 32) + b) & _MASK64)
        return self._quantiles[h & (_QUANTILES - 1)]

    def lost(self) -> bool:
        """Whether the next message is lost."""
        return self._loss > 0.0 and self._rng.random() < self._loss

    def next_churn_gap(self, live: int) -> float | None:
        """Virtual seconds until the next leave-and-join, ``None`` without churn."""
        rate = self._churn_per_s * live
        if rate <= 0.0:
            return None
        return self._rng.expovariate(rate)

    def pick_fraction(self, candidates: list[int], fraction: float) -> list[int]:
        """A random ``fraction`` of ``candidates`` (rounded), in the order they were given."""
        count = round(len(candidates) * fraction)
        if count <= 0:
            return []
        chosen = set(self._rng.sample(range(len(candidates)), count))
        return [c for i, c in enumerate(candidates) if i in chosen]
