"""The Kademlia routing table: k-buckets by common prefix length, seniority kept.

Rules of the table (read top to bottom as a table):

* A node lives in bucket ``cpl(self, node)`` (0..255). There is one bucket per
  CPL and no splitting: buckets are created on first use and dropped when they
  empty, so a table holds only the handful of buckets a real network fills
  (about log2(N) of them), which keeps 10,000 simulated tables small.
* A bucket holds at most ``bucket_size`` (k = 20) nodes, in seniority order
  (oldest first). A full bucket never evicts a live node: :meth:`add` answers
  :attr:`AddResult.BUCKET_FULL` and leaves the table untouched (WIRE.md §8.6).
* The caller may then park the (checked) candidate in the bucket's small
  replacement cache (:meth:`offer_replacement`). When a node leaves the table,
  the most recently offered replacement the filter still allows takes its
  place; :meth:`take_promoted` hands those promotions to whoever must announce
  them (the routing behaviour does, and has them checked soon: a parked
  replacement may have gone stale while it waited).
* :meth:`proves_useful` is the one rule for "does this answer earn (or keep)
  a seat": an answer must name at least one closer node, unless the table
  holds fewer than ``bucket_size`` nodes (go's ``lookupCheck``: a young
  table in a tiny network is not picky).
* A pluggable :class:`NodeFilter` may refuse a node (:attr:`AddResult.FILTERED`);
  :class:`GroupDiversityFilter` implements the IP-diversity rule without the
  core knowing what an IP address is.
* :meth:`nearest` walks buckets in XOR order from the target and sorts only the
  buckets it takes nodes from (see its docstring for why that order is exact).
  It can leave one node out (a server never names the asker back to it).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Protocol

from zikade_py.core.key import KEY_BITS, Key

DEFAULT_BUCKET_SIZE = 20
"""k: nodes per bucket (every implementation uses 20, WIRE.md §9)."""

DEFAULT_REPLACEMENT_CAPACITY = 5
"""Checked candidates parked per full bucket, waiting for a seat to free up."""


class AddResult(Enum):
    """What :meth:`RoutingTable.add` did with a node."""

    ADDED = "added"
    """The node took a free seat in its bucket."""
    ALREADY_PRESENT = "already-present"
    """The node was in the table already (its seniority is unchanged)."""
    BUCKET_FULL = "bucket-full"
    """Its bucket has k nodes; seniority wins, the caller may offer it as a replacement."""
    FILTERED = "filtered"
    """The node filter refused it (for example, too many nodes from one IP group)."""
    SELF = "self"
    """The node is the table's own key."""


class NodeFilter(Protocol):
    """Admission policy hook: decides which nodes may enter a table.

    The table asks :meth:`allow` before every insertion (also for promotions
    from the replacement cache) and reports every insertion and removal, so a
    stateful filter can keep its counts exact. A filter instance belongs to one
    table.
    """

    def allow(self, table: RoutingTable, node: Key) -> bool:
        """Whether ``node`` may enter ``table`` now."""
        ...

    def on_add(self, table: RoutingTable, node: Key) -> None:
        """``node`` entered ``table``."""
        ...

    def on_remove(self, table: RoutingTable, node: Key) -> None:
        """``node`` left ``table``."""
        ...


class GroupDiversityFilter:
    """IP diversity (WIRE.md §8.6): at most 2 nodes of a group per bucket, 3 per table.

    The core knows keys, not addresses, so the driver supplies ``group_of``:
    it maps a node to its IP group (IPv4 /16, IPv6 ASN or prefix) or to
    ``None`` when the node is exempt (no known address, loopback or private
    addresses in a test network) — exempt nodes are neither limited nor
    counted. The group is remembered at insertion so a later address change
    cannot unbalance the counts.
    """

    def __init__(
        self,
        group_of: Callable[[Key], str | None],
        max_per_bucket: int = 2,
        max_per_table: int = 3,
    ) -> None:
        if max_per_bucket < 1 or max_per_table < 1:
            raise ValueError("diversity limits must be at least 1")
        self._group_of = group_of
        self.max_per_bucket = max_per_bucket
        self.max_per_table = max_per_table
        self._member: dict[Key, tuple[str, int]] = {}
        self._per_table: Counter[str] = Counter()
        self._per_bucket: Counter[tuple[int, str]] = Counter()

    def allow(self, table: RoutingTable, node: Key) -> bool:
        """Refuse ``node`` when its group already fills its bucket's or the table's quota."""
        group = self._group_of(node)
        if group is None:
            return True
        if self._per_table[group] >= self.max_per_table:
            return False
        return self._per_bucket[(table.cpl(node), group)] < self.max_per_bucket

    def on_add(self, table: RoutingTable, node: Key) -> None:
        """Count ``node`` against its group's quotas."""
        group = self._group_of(node)
        if group is None or node in self._member:
            return
        cpl = table.cpl(node)
        self._member[node] = (group, cpl)
        self._per_table[group] += 1
        self._per_bucket[(cpl, group)] += 1

    def on_remove(self, table: RoutingTable, node: Key) -> None:
        """Release the quota ``node`` held."""
        member = self._member.pop(node, None)
        if member is None:
            return
        group, cpl = member
        self._per_table[group] -= 1
        if self._per_table[group] <= 0:
            del self._per_table[group]
        self._per_bucket[(cpl, group)] -= 1
        if self._per_bucket[(cpl, group)] <= 0:
            del self._per_bucket[(cpl, group)]

    def group_count(self, group: str) -> int:
        """Nodes of ``group`` in the table (for tests and metrics)."""
        return self._per_table[group]


class _Entry:
    """Per-node bookkeeping; plain slotted class to keep 10,000 tables small."""

    __slots__ = ("added_at", "key", "last_seen", "value")

    def __init__(self, key: Key, now: float) -> None:
        self.key = key
        self.value = key.value
        self.added_at = now
        self.last_seen = now


class _OwnNearest:
    """The table's nodes closest to its own key, kept between changes (see ``nearest``)."""

    __slots__ = ("cut", "distances", "keys", "n")

    def __init__(self, n: int, keys: list[Key], distances: list[int]) -> None:
        self.n = n
        """How many were asked for."""
        self.keys = keys
        self.distances = distances
        """Each key's distance to our own key: ascending, one per key."""
        self.cut = KEY_BITS - distances[-1].bit_length() if distances else 0
        """The shallowest bucket the keys come from: a change in a shallower one cannot
        reach them (nodes of deeper buckets are all closer to us)."""


class RoutingTable:
    """k-buckets around ``self_key``; the node's view of the network.

    Only digests matter here; the keys stored are the ones given (with their
    preimages), so :meth:`nearest` returns keys that can go on the wire.
    """

    def __init__(
        self,
        self_key: Key,
        bucket_size: int = DEFAULT_BUCKET_SIZE,
        *,
        replacement_capacity: int = DEFAULT_REPLACEMENT_CAPACITY,
        node_filter: NodeFilter | None = None,
    ) -> None:
        if bucket_size < 1:
            raise ValueError("bucket_size must be at least 1")
        if replacement_capacity < 0:
            raise ValueError("replacement_capacity must not be negative")
        self.self_key = self_key
        self.bucket_size = bucket_size
        self.replacement_capacity = replacement_capacity
        self.node_filter = node_filter
        self._self_value = self_key.value
        # Buckets map a key's integer value to its entry: nearest() sorts plain ints.
        self._buckets: list[dict[int, _Entry]] = []
        """Bucket ``cpl`` at index ``cpl``, up to the deepest non-empty one (shallower
        empty buckets are empty dicts): the hot paths index a list, no dict lookup."""
        self._nonempty: list[int] = []
        self._replacements: dict[int, dict[Key, float]] = {}
        self._promoted: list[Key] = []
        self._size = 0
        self._own_nearest: _OwnNearest | None = None
        """:meth:`nearest` of our own key, kept while no change reaches the buckets it
        took from: every probe and include check a peer sends us asks for our own key."""

    # -- queries ---------------------------------------------------------------------------

    def cpl(self, node: Key) -> int:
        """The bucket index of ``node``: bits it shares with the table's own key."""
        return KEY_BITS - (self._self_value ^ node.value).bit_length()

    def __len__(self) -> int:
        return self._size

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Key) and self.contains(node)

    def contains(self, node: Key) -> bool:
        """Whether ``node`` is in the table (replacement candidates are not)."""
        buckets = self._buckets
        value = node.value
        cpl = KEY_BITS - (self._self_value ^ value).bit_length()
        return cpl < len(buckets) and value in buckets[cpl]

    def nodes(self) -> list[Key]:
        """Every node, bucket by bucket from CPL 0, oldest first within a bucket."""
        return [e.key for bucket in self._buckets for e in bucket.values()]

    def bucket(self, cpl: int) -> list[Key]:
        """The nodes of bucket ``cpl``, oldest first."""
        bucket = self._bucket_at(cpl)
        return [e.key for e in bucket.values()] if bucket is not None else []

    def bucket_sizes(self) -> list[int]:
        """Sizes of buckets 0 up to the last non-empty one (``[]`` for an empty table)."""
        return [len(bucket) for bucket in self._buckets]

    def deepest_bucket(self) -> int | None:
        """The highest non-empty bucket index; ``None`` for an empty table."""
        return self._nonempty[-1] if self._nonempty else None

    def last_seen(self, node: Key) -> float | None:
        """When ``node`` last proved alive (added, or :meth:`mark_seen`); ``None`` if absent."""
        entry = self._entry(node)
        return entry.last_seen if entry else None

    def added_at(self, node: Key) -> float | None:
        """When ``node`` entered the table (its seniority); ``None`` if absent."""
        entry = self._entry(node)
        return entry.added_at if entry else None

    def replacements(self, cpl: int) -> list[Key]:
        """Candidates parked for bucket ``cpl``, oldest offer first."""
        return list(self._replacements.get(cpl, ()))

    def is_full(self, cpl: int) -> bool:
        """Whether bucket ``cpl`` holds ``bucket_size`` nodes (no free seat to fill)."""
        bucket = self._bucket_at(cpl)
        return bucket is not None and len(bucket) >= self.bucket_size

    def proves_useful(self, closer_count: int) -> bool:
        """Whether an answer naming ``closer_count`` nodes shows a server worth a seat.

        A node that knows nobody cannot help a lookup; but while this table holds
        fewer than ``bucket_size`` nodes the network may be that small, so any
        answer will do (go-libp2p-kad-dht's ``lookupCheck`` rule).
        """
        return closer_count > 0 or self._size < self.bucket_size

    def would_add(self, node: Key) -> AddResult:
        """What :meth:`add` would answer now, without changing anything.

        Lets the include queue skip a connectivity check whose outcome could
        not change the table. Runs for every node named in every answer, so it
        compares plain ints (no ``Key`` equality).
        """
        value = node.value
        own = self._self_value
        if value == own:
            return AddResult.SELF
        buckets = self._buckets
        cpl = KEY_BITS - (own ^ value).bit_length()
        bucket = buckets[cpl] if cpl < len(buckets) else None
        if bucket is not None and value in bucket:
            return AddResult.ALREADY_PRESENT
        if self.node_filter is not None and not self.node_filter.allow(self, node):
            return AddResult.FILTERED
        if bucket is not None and len(bucket) >= self.bucket_size:
            return AddResult.BUCKET_FULL
        return AddResult.ADDED

    def seatable(self, nodes: Iterable[Key]) -> list[Key]:
        """The ``nodes`` that :meth:`add` would seat now (:attr:`AddResult.ADDED`), in order.

        :meth:`would_add` over a whole answer in one call: the include queue
        asks this for every node named in every answer.
        """
        own = self._self_value
        buckets = self._buckets
        depth = len(buckets)
        size = self.bucket_size
        node_filter = self.node_filter
        bits = KEY_BITS
        out: list[Key] = []
        for node in nodes:
            value = node.value
            cpl = bits - (own ^ value).bit_length()
            # A full bucket is the common case and the cheapest test (no int hash).
            if cpl < depth and (len(bucket := buckets[cpl]) >= size or value in bucket):
                continue
            if value != own and (node_filter is None or node_filter.allow(self, node)):
                out.append(node)
        return out

    def is_replacement(self, node: Key) -> bool:
        """Whether ``node`` is parked in its bucket's replacement cache."""
        cache = self._replacements.get(self.cpl(node))
        return cache is not None and node in cache

    def replacement_has_room(self, node: Key) -> bool:
        """Whether a full bucket's replacement cache would take ``node`` without evicting."""
        if self.replacement_capacity == 0:
            return False
        cache = self._replacements.get(self.cpl(node))
        return cache is None or node in cache or len(cache) < self.replacement_capacity

    def nearest(self, target: Key, n: int, exclude: Key | None = None) -> list[Key]:
        """The ``n`` nodes closest to ``target``, closest first, never ``exclude``.

        Why the bucket order is exact: let ``d = target XOR self``. A node of
        bucket ``i`` agrees with ``self`` above bit ``i`` and differs at bit
        ``i``, so its distance to the target equals ``d`` above bit ``i`` and
        has bit ``i`` equal to ``1 - d_i``. Hence, for ``i < j``, every node of
        bucket ``i`` is closer than every node of bucket ``j`` when ``d_i = 1``
        and farther when ``d_i = 0``. The exact order is therefore: buckets
        with ``d_i = 1`` by ascending ``i``, then buckets with ``d_i = 0`` by
        descending ``i``. Only the buckets whose nodes are returned are sorted.
        The answer for our own key (what every peer's probe and include check
        asks) is kept until a change reaches the buckets it was taken from.
        ``exclude`` is how a server leaves the asking node out of its answer.
        """
        if n <= 0 or self._size == 0:
            return []
        t = target.value
        d = t ^ self._self_value
        m = n if exclude is None else n + 1
        if d == 0:
            own = self._own_nearest
            if own is None or own.n != m:
                taken, distances = self._nearest(t, d, m)
                keys = [taken[x ^ t].key for x in distances]
                own = self._own_nearest = _OwnNearest(m, keys, distances)
            keys, distances = own.keys, own.distances
            if exclude is not None:
                i = bisect.bisect_left(distances, exclude.value ^ t)
                if i < len(distances) and distances[i] == exclude.value ^ t:
                    return keys[:i] + keys[i + 1 :]
            return keys[:n]
        taken, distances = self._nearest(t, d, m)
        if exclude is not None:
            x = exclude.value ^ t
            i = bisect.bisect_left(distances, x)
            if i < len(distances) and distances[i] == x:
                del distances[i]
            del distances[n:]
        return [taken[x ^ t].key for x in distances]

    def _nearest(self, t: int, d: int, n: int) -> tuple[dict[int, _Entry], list[int]]:
        """The entries of the buckets holding the ``n`` closest, and their sorted distances."""
        top = KEY_BITS - 1
        buckets = self._buckets
        nonempty = self._nonempty
        # Gather whole buckets in that order until n nodes are in, then sort once: every
        # node of an earlier bucket is closer than every node of a later one, so the
        # extra nodes of the last bucket sort behind the n closest.
        taken: dict[int, _Entry] = {}
        for i in nonempty:
            if (d >> (top - i)) & 1:
                taken.update(buckets[i])
                if len(taken) >= n:
                    break
        else:
            for i in reversed(nonempty):
                if not (d >> (top - i)) & 1:
                    taken.update(buckets[i])
                    if len(taken) >= n:
                        break
        # Sort plain ints (distance XOR target gives the value back): no key function.
        distances = sorted([value ^ t for value in taken])
        del distances[n:]
        return taken, distances

    # -- changes ---------------------------------------------------------------------------

    def add(self, node: Key, now: float) -> AddResult:
        """Insert ``node`` if its bucket has room and the filter allows it.

        A full bucket keeps its nodes (seniority); the answer is
        :attr:`AddResult.BUCKET_FULL` and the caller decides whether to
        :meth:`offer_replacement`.
        """
        result = self.would_add(node)
        if result is AddResult.ADDED:
            self._insert(node, self.cpl(node), now)
        return result

    def offer_replacement(self, node: Key, now: float) -> bool:
        """Park a checked candidate for its full bucket; ``False`` if it cannot be parked.

        The cache keeps the most recent offers; when full, the oldest offer is
        forgotten. Candidates that are in the table, self, or whose bucket has
        room (call :meth:`add` instead) are refused.
        """
        if self.replacement_capacity == 0 or node == self.self_key:
            return False
        cpl = self.cpl(node)
        bucket = self._bucket_at(cpl)
        if bucket is None or len(bucket) < self.bucket_size or node.value in bucket:
            return False
        cache = self._replacements.setdefault(cpl, {})
        cache.pop(node, None)
        cache[node] = now
        while len(cache) > self.replacement_capacity:
            del cache[next(iter(cache))]
        return True

    def mark_seen(self, node: Key, now: float) -> bool:
        """Record that ``node`` just proved alive; ``False`` if it is not in the table."""
        entry = self._entry(node)
        if entry is None:
            return False
        entry.last_seen = max(entry.last_seen, now)
        return True

    def remove(self, node: Key) -> bool:
        """Take ``node`` out of the table (and out of any replacement cache).

        Returns whether it was in the table. Its seat goes to the newest
        replacement the filter allows; see :meth:`take_promoted`.
        """
        cpl = self.cpl(node)
        cache = self._replacements.get(cpl)
        if cache is not None:
            cache.pop(node, None)
        bucket = self._bucket_at(cpl)
        if bucket is None or node.value not in bucket:
            return False
        del bucket[node.value]
        self._size -= 1
        self._changed(cpl)
        if self.node_filter is not None:
            self.node_filter.on_remove(self, node)
        self._promote(cpl)
        if not bucket:
            self._nonempty.remove(cpl)
            buckets = self._buckets
            while buckets and not buckets[-1]:
                buckets.pop()
        if cache is not None and not cache:
            del self._replacements[cpl]
        return True

    def take_promoted(self) -> list[Key]:
        """Replacements promoted into the table since the last call (oldest first).

        Whoever removes nodes drains this so each promotion is announced once
        (routing updated, probe scheduling).
        """
        promoted, self._promoted = self._promoted, []
        return promoted

    # -- internals -------------------------------------------------------------------------

    def _bucket_at(self, cpl: int) -> dict[int, _Entry] | None:
        buckets = self._buckets
        return buckets[cpl] if cpl < len(buckets) else None

    def _entry(self, node: Key) -> _Entry | None:
        buckets = self._buckets
        cpl = KEY_BITS - (self._self_value ^ node.value).bit_length()
        return buckets[cpl].get(node.value) if cpl < len(buckets) else None

    def _changed(self, cpl: int) -> None:
        """Bucket ``cpl`` gained or lost a node: forget our own nearest if it could change."""
        own = self._own_nearest
        if own is not None and (cpl >= own.cut or len(own.keys) < own.n):
            self._own_nearest = None

    def _insert(self, node: Key, cpl: int, now: float) -> None:
        buckets = self._buckets
        while len(buckets) <= cpl:
            buckets.append({})
        bucket = buckets[cpl]
        if not bucket:
            bisect.insort(self._nonempty, cpl)
        bucket[node.value] = _Entry(node, now)
        self._size += 1
        self._changed(cpl)
        cache = self._replacements.get(cpl)
        if cache is not None:
            cache.pop(node, None)
        if self.node_filter is not None:
            self.node_filter.on_add(self, node)

    def _promote(self, cpl: int) -> None:
        cache = self._replacements.get(cpl)
        if not cache:
            return
        for candidate in reversed(list(cache)):
            if self.node_filter is None or self.node_filter.allow(self, candidate):
                # It passed its check when offered: that is when it was last seen.
                self._insert(candidate, cpl, cache.pop(candidate))
                self._promoted.append(candidate)
                return
