"""Keyspace regions for the reprovide sweep: prefixes, coverage, schedule slots, allocation.

A :class:`Region` is a binary prefix of the 256-bit keyspace: every key whose
first ``length`` bits are ``bits``. The sweep groups the keys it provides by
region, explores each region once (finds every server whose key has the
prefix) and announces every key of the region to its ``k`` closest servers
among them. Why that is enough: a server under the prefix is closer (XOR) to a
key under the prefix than any server outside it, so when a region holds at
least ``k`` servers, every key's ``k`` closest servers are inside it.

The functions here are pure and int-based (keys are compared as ints, the
fastest ordering Python has): what a lookup's answer covers, which parts of a
region are still unexplored, where a region's slot lies in the reprovide
cycle, and which keys go to which server.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zikade_py.core.key import KEY_BITS, Key


@dataclass(frozen=True, slots=True, order=True)
class Region:
    """The keys whose first ``length`` bits are ``bits`` (``length`` 0: the whole keyspace)."""

    length: int
    bits: int

    def __post_init__(self) -> None:
        if not 0 <= self.length <= KEY_BITS:
            raise ValueError(f"a region prefix is 0..{KEY_BITS} bits, got {self.length}")
        if not 0 <= self.bits < (1 << self.length):
            raise ValueError(f"prefix bits {self.bits} do not fit in {self.length} bits")

    @classmethod
    def of(cls, value: int, length: int) -> Region:
        """The region of ``length`` bits that holds the key value ``value``."""
        return cls(length, value >> (KEY_BITS - length))

    @classmethod
    def parse(cls, text: str) -> Region:
        """A region from its bit string (``""`` is the whole keyspace), as stored and shown."""
        if text and set(text) - {"0", "1"}:
            raise ValueError(f"a region is a string of 0 and 1, got {text!r}")
        return cls(len(text), int(text, 2) if text else 0)

    @property
    def lo(self) -> int:
        """The smallest key value in the region."""
        return self.bits << (KEY_BITS - self.length)

    @property
    def hi(self) -> int:
        """One past the largest key value in the region."""
        return (self.bits + 1) << (KEY_BITS - self.length)

    def contains(self, value: int) -> bool:
        """Whether the key value ``value`` lies in the region."""
        return value >> (KEY_BITS - self.length) == self.bits

    def covers(self, other: Region) -> bool:
        """Whether ``other`` lies entirely inside this region (or is it)."""
        return other.length >= self.length and (
            other.bits >> (other.length - self.length) == self.bits
        )

    def child(self, bit: int) -> Region:
        """The half of the region whose next bit is ``bit``."""
        return Region(self.length + 1, (self.bits << 1) | bit)

    def parent(self) -> Region:
        """The region one bit shorter (the whole keyspace is its own parent)."""
        if self.length == 0:
            return self
        return Region(self.length - 1, self.bits >> 1)

    def __str__(self) -> str:
        return format(self.bits, f"0{self.length}b") if self.length else ""


WHOLE = Region(0, 0)
"""The whole keyspace."""


def cpl(a: int, b: int) -> int:
    """Common prefix length of two key values."""
    return KEY_BITS - (a ^ b).bit_length()


def covered_region(target: int, closest: Sequence[int], k: int) -> Region:
    """The region whose every server a lookup for ``target`` found.

    ``closest`` are the servers the lookup ended with. If it found fewer than
    ``k``, it found every server there is (the whole keyspace is covered).
    Otherwise the farthest of them shares ``c`` bits with the target, so every
    server sharing more than ``c`` bits is closer and was found: the region of
    ``target``'s first ``c + 1`` bits is covered (go: ``ShortestCoveredPrefix``).
    """
    if len(closest) < k:
        return WHOLE
    least = min(cpl(target, v) for v in closest)
    return Region.of(target, min(least + 1, KEY_BITS))


def gaps(region: Region, covered: Iterable[Region]) -> list[Region]:
    """The parts of ``region`` that no region of ``covered`` covers, in key order."""
    inside = [c for c in covered if region.covers(c) or c.covers(region)]
    return _gaps(region, inside)


def _gaps(region: Region, covered: list[Region]) -> list[Region]:
    if any(c.covers(region) for c in covered):
        return []
    below = [c for c in covered if region.covers(c)]
    if not below:
        return [region]
    return _gaps(region.child(0), below) + _gaps(region.child(1), below)


def slot_offset(region: Region, order: int, interval: float, max_bits: int = 24) -> float:
    """Where ``region``'s reprovide lies in the cycle, in seconds from the cycle's start.

    Regions of one prefix length get evenly spread slots; the prefix is XORed
    with ``order`` (our own key) first, so regions near our key come first in
    the cycle, as go's ``reprovideTimeForPrefix`` does. Prefixes longer than
    ``max_bits`` use their first ``max_bits`` bits.
    """
    length = min(region.length, max_bits)
    if length == 0:
        return 0.0
    bits = region.bits >> (region.length - length)
    index = bits ^ (order >> (KEY_BITS - length))
    return interval * index / (1 << length)


def next_slot(offset: float, cycle_start: float, interval: float, after: float) -> float:
    """The first ``cycle_start + offset + m * interval`` (integer ``m``) not before ``after``."""
    base = cycle_start + offset
    if after <= base:
        return base
    m = math.ceil((after - base) / interval)
    return base + m * interval


def allocate(keys: Sequence[Key], servers: Sequence[Key], k: int) -> dict[Key, list[Key]]:
    """Each of ``keys`` (sorted by value) assigned to its ``k`` closest of ``servers``.

    Returns the keys per server, each list in key order. Keys that share their
    first ``D`` bits, where ``D - 1`` is the longest common prefix of any two
    servers, see all servers in the same XOR order (two servers compare at the
    first bit where they differ, and those keys agree on it), so the order is
    computed once per such group rather than once per key.
    """
    out: dict[Key, list[Key]] = {}
    if not keys or not servers or k < 1:
        return out
    ordered = sorted(servers, key=lambda s: s.value)
    deepest = max(
        (cpl(a.value, b.value) for a, b in itertools.pairwise(ordered)), default=0
    )
    shift = KEY_BITS - min(deepest + 1, KEY_BITS)
    values = [s.value for s in ordered]
    by_value = {s.value: s for s in ordered}
    group = -1
    chosen: list[list[Key]] = []
    for key in keys:
        g = key.value >> shift
        if g != group:
            group = g
            near = sorted(values, key=key.value.__xor__)[:k]
            chosen = [out.setdefault(by_value[v], []) for v in near]
        for lst in chosen:
            lst.append(key)
    return out


__all__ = [
    "WHOLE",
    "Region",
    "allocate",
    "covered_region",
    "cpl",
    "gaps",
    "next_slot",
    "slot_offset",
]
