"""Models of the network the simulated nodes talk over.

What a real network does to a Kademlia lookup, reduced to the few knobs that
change its outcome:

* **Latency per link** — every pair of nodes has one stable one-way delay drawn
  from a distribution (fixed, or log-normal around a median), so a slow link
  stays slow for every message, as on the internet; each message adds its own
  **jitter** on top (up to ``jitter`` × the link delay, uniform).
* **Connections** — the first request between two nodes pays ``handshake_rtts``
  round trips (TCP + Noise + Yamux, or QUIC) before it leaves; later requests
  reuse the connection. Each node keeps at most ``max_connections`` (least
  recently used first out, as a connection manager trims), so the state stays
  bounded however long the run. ``stream_rtts`` round trips open the stream of
  every request (multistream-select; 0 when it is pipelined).
* **Loss** — each message (request or response) vanishes with probability
  ``loss``; the requester only learns of it when its request deadline passes.
* **Unresponsive nodes** — accept connections and requests, never answer.
* **Undialable nodes** — still named in routing tables, but a dial to them hangs
  until the dial timeout or the request deadline (NAT, firewall, gone address).
* **Departed nodes** (churn) — dials to them hang the same way; nothing refuses.
* **Client-mode nodes** — look things up but never serve: no server ever puts
  them in its table and nobody sends them requests.
* **Slow nodes** — answer, but only after an extra delay.
* **Churn** — nodes leave and fresh nodes join, at ``churn`` × live nodes per minute.

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
    jitter: float = 0.0
    """Per-message extra delay, uniform in [0, ``jitter`` × link delay]."""
    handshake_rtts: float = 0.0
    """Round trips a first request to a peer waits for the connection (0: always connected)."""
    stream_rtts: float = 0.0
    """Round trips to open the stream of each request before it is written."""
    max_connections: int = 128
    """Connections a node keeps open; the least recently used is closed beyond it."""
    dial_timeout: float = 10.0
    """Seconds a dial to an undialable or departed node hangs before it fails."""
    loss: float = 0.0
    """Probability that one message (request or response) is lost."""
    unresponsive: float = 0.0
    """Fraction of nodes that stop answering when the operations start."""
    undialable: float = 0.0
    """Fraction of server nodes that cannot be dialled any more when the operations start."""
    clients: float = 0.0
    """Fraction of nodes in client mode (never serve, never in a server's table)."""
    slow: float = 0.0
    """Fraction of nodes that answer ``slow_delay`` seconds late."""
    slow_delay: float = 2.0
    """Extra delay of a slow node's answers, in seconds."""
    churn: float = 0.0
    """Fraction of live nodes replaced per virtual minute (each leave is matched by a join)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for probabilities outside [0, 1] or negative rates."""
        self.latency.validate()
        for name in ("loss", "unresponsive", "undialable", "clients", "slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.loss >= 1.0:
            raise ValueError("loss must be below 1 or no message ever arrives")
        if self.clients >= 1.0:
            raise ValueError("clients must be below 1: somebody has to serve")
        for name in ("jitter", "handshake_rtts", "stream_rtts", "slow_delay", "churn"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.dial_timeout <= 0:
            raise ValueError("dial_timeout must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


class Network:
    """The network model of one simulation: link delays, connections, loss and churn timing.

    Link latencies are a pure function of the seed and the two node numbers (a
    hash picks one of 4,096 precomputed quantiles of the distribution), so no
    memory grows with the number of links and the same pair always sees the
    same delay. Connection state exists only when handshakes cost something,
    and only per node that has talked (created lazily, bounded by
    ``max_connections``).
    """

    __slots__ = (
        "_churn_per_s",
        "_conns",
        "_handshake",
        "_jitter",
        "_loss",
        "_max_conns",
        "_quantiles",
        "_rng",
        "_salt",
        "_stream",
        "config",
        "handshakes",
        "instant_send",
    )

    def __init__(self, config: NetworkConfig, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self._rng = rng
        self._salt = rng.getrandbits(64)
        self._loss = config.loss
        self._jitter = config.jitter
        self._handshake = config.handshake_rtts
        self._stream = config.stream_rtts
        self._max_conns = config.max_connections
        self.instant_send = self._handshake == 0.0 and self._stream == 0.0
        """Requests leave when asked (no handshake, no stream set-up): :meth:`send_at` is
        ``now``, so a hot loop may skip the call."""
        self._conns: dict[int, dict[int, float]] = {}
        """node → {peer: time the connection is ready}, least recently used first."""
        self.handshakes = 0
        """Connections set up so far (first contacts, or contacts after an eviction)."""
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

    def delay(self, a: int, b: int) -> float:
        """The delay of one message between ``a`` and ``b``: link latency plus jitter."""
        # latency() and _mix64() written out: two messages per request come through here.
        if a > b:
            a, b = b, a
        x = (self._salt + (a << 32) + b) & _MASK64
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        lat = self._quantiles[(x ^ (x >> 31)) & (_QUANTILES - 1)]
        if self._jitter > 0.0:
            return lat + lat * self._jitter * self._rng.random()
        return lat

    def send_at(self, src: int, dst: int, now: float) -> float:
        """When a request from ``src`` to ``dst`` asked for at ``now`` leaves ``src``.

        Pays the handshake if the two have no connection (a request made while a
        handshake is under way waits for that same handshake), then the stream set-up.
        """
        ready = now
        if self._handshake > 0.0:
            rtt = 2.0 * self.latency(src, dst)
            conns = self._conns.get(src)
            if conns is None:
                conns = self._conns[src] = {}
            at = conns.pop(dst, None)
            if at is None:
                self.handshakes += 1
                at = now + self._handshake * rtt
                self._connect_back(dst, src, at)
            conns[dst] = at  # (re-)inserted: the most recently used is last
            if len(conns) > self._max_conns:
                self._evict(src, conns, keep=dst)
            if at > ready:
                ready = at
        if self._stream > 0.0:
            ready += self._stream * 2.0 * self.latency(src, dst)
        return ready

    def _connect_back(self, node: int, peer: int, at: float) -> None:
        conns = self._conns.get(node)
        if conns is None:
            conns = self._conns[node] = {}
        conns[peer] = at
        if len(conns) > self._max_conns:
            self._evict(node, conns, keep=peer)

    def _evict(self, node: int, conns: dict[int, float], keep: int) -> None:
        for peer in conns:
            if peer != keep:
                break
        else:
            return
        del conns[peer]
        other = self._conns.get(peer)
        if other is not None:
            other.pop(node, None)

    def disconnect(self, node: int) -> None:
        """``node`` left or went dark: every connection to it is gone."""
        conns = self._conns.pop(node, None)
        if conns is None:
            return
        for peer in conns:
            other = self._conns.get(peer)
            if other is not None:
                other.pop(node, None)

    def connections(self, node: int) -> int:
        """Open connections of ``node`` (for tests and reports)."""
        conns = self._conns.get(node)
        return 0 if conns is None else len(conns)

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

    def chance(self, probability: float) -> bool:
        """A seeded coin with ``probability`` of heads (e.g. a churn join in client mode)."""
        return probability > 0.0 and self._rng.random() < probability
