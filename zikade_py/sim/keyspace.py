"""Global knowledge of the keyspace: which nodes are live and which are truly closest.

A lookup is judged against the truth, so the simulator needs the exact k closest
live nodes to any target, thousands of times, over 10,000+ nodes. Sorting every
node by XOR distance per lookup would dominate the run; instead the live keys
are kept as a sorted list of ints. The nodes sharing the longest prefix with a
target form one contiguous, aligned range of that list, and every node inside
the range of prefix length ``p`` is closer than every node outside it, so the
closest ``n`` lie in the smallest such range holding ``n`` nodes — found with
a binary search over ``p`` and two bisections per step.

The same ranges give each node's true buckets, which is how ``--prefill``
fills routing tables without running the join.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable

from zikade_py.core.key import KEY_BITS


class LiveKeys:
    """Sorted key values of the nodes currently in the network, with their node numbers."""

    __slots__ = ("_node_of", "_values")

    def __init__(self) -> None:
        self._values: list[int] = []
        self._node_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: int, node: int) -> None:
        """Node ``node`` with key ``value`` is now live."""
        if value in self._node_of:
            raise ValueError("two simulated nodes share a key")
        bisect.insort(self._values, value)
        self._node_of[value] = node

    def remove(self, value: int) -> None:
        """The node with key ``value`` left."""
        del self._node_of[value]
        del self._values[bisect.bisect_left(self._values, value)]

    def _count(self, lo: int, shift: int) -> tuple[int, int]:
        values = self._values
        return bisect.bisect_left(values, lo), bisect.bisect_left(values, lo + (1 << shift))

    def closest(
        self, target: int, n: int, eligible: Callable[[int], bool] | None = None
    ) -> list[int]:
        """Node numbers of the ``n`` live nodes closest to ``target`` for which ``eligible`` holds.

        ``eligible`` takes a node number; it lets the caller exclude the node that
        asked, or nodes that joined after the lookup started.
        """
        values = self._values
        if not values or n <= 0:
            return []
        shift_lo, shift_hi = 0, KEY_BITS
        need = n
        while True:
            # smallest aligned block around target holding at least `need` keys
            lo_s, hi_s = shift_lo, shift_hi
            while lo_s < hi_s:
                mid = (lo_s + hi_s) // 2
                i, j = self._count((target >> mid) << mid, mid)
                if j - i >= need:
                    hi_s = mid
                else:
                    lo_s = mid + 1
            base = (target >> lo_s) << lo_s
            i, j = self._count(base, lo_s)
            block = sorted(values[i:j], key=lambda v: v ^ target)
            nodes = [self._node_of[v] for v in block]
            if eligible is not None:
                nodes = [x for x in nodes if eligible(x)]
            if len(nodes) >= n or lo_s >= KEY_BITS:
                return nodes[:n]
            need = (j - i) + (n - len(nodes))
            shift_lo = lo_s + 1

    def buckets(self, value: int, k: int, rng: random.Random) -> list[int]:
        """Node numbers for a true routing table of ``value``: up to ``k`` per bucket.

        Bucket ``c`` holds nodes sharing exactly ``c`` leading bits with ``value``;
        when more than ``k`` exist, a random ``k`` of them are taken.
        """
        out: list[int] = []
        values = self._values
        for cpl in range(KEY_BITS):
            own_shift = KEY_BITS - cpl
            i, j = self._count((value >> own_shift) << own_shift, own_shift)
            if j - i <= 1:
                break  # only `value` itself shares this prefix: deeper buckets are empty
            shift = KEY_BITS - 1 - cpl
            i, j = self._count(((value >> shift) ^ 1) << shift, shift)
            picked = range(i, j) if j - i <= k else sorted(rng.sample(range(i, j), k))
            out.extend(self._node_of[values[p]] for p in picked)
        return out
