"""256-bit Kademlia keys and the XOR metric.

A :class:`Key` is the SHA-256 digest of a *preimage* (a peer id's multihash
bytes, a CID's multihash, a record key). The digest places it in the keyspace;
the preimage is what travels on the wire (a FIND_NODE carries the preimage and
the receiver hashes it), so the key keeps both.

Distances are plain ``int`` values: XOR of two 256-bit integers. Comparing
ints is the fastest ordering Python has, which matters when the simulator runs
thousands of lookups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

KEY_BITS = 256
"""Bit length of every key in the keyspace."""


@dataclass(frozen=True, slots=True)
class Key:
    """A point in the Kademlia keyspace, with the preimage it was hashed from.

    Two keys are equal when their digests are equal; the preimage does not take
    part in equality or hashing, so a key built from a digest alone still finds
    its twin in a dict.
    """

    digest: bytes
    preimage: bytes = field(default=b"", compare=False)
    value: int = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.digest) != KEY_BITS // 8:
            raise ValueError(f"a key digest is {KEY_BITS // 8} bytes, got {len(self.digest)}")
        value = int.from_bytes(self.digest, "big")
        object.__setattr__(self, "value", value)
        # Keys live in dicts and sets on every hot path: hash the 256-bit int once.
        object.__setattr__(self, "_hash", hash(value))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def from_preimage(cls, preimage: bytes) -> Key:
        """The key of ``preimage``: SHA-256 of its bytes, keeping the bytes."""
        return cls(hashlib.sha256(preimage).digest(), preimage)

    @classmethod
    def from_int(cls, value: int, preimage: bytes = b"") -> Key:
        """A key whose digest is ``value`` (used for random walk targets and tests)."""
        return cls(value.to_bytes(KEY_BITS // 8, "big"), preimage)

    def distance(self, other: Key) -> int:
        """XOR distance to ``other`` as an integer."""
        return self.value ^ other.value

    def common_prefix_length(self, other: Key) -> int:
        """Number of leading bits shared with ``other`` (256 for equal keys)."""
        return KEY_BITS - (self.value ^ other.value).bit_length()

    def bit(self, i: int) -> int:
        """The ``i``-th bit counted from the most significant one."""
        return (self.value >> (KEY_BITS - 1 - i)) & 1

    def hex(self) -> str:
        """The digest in hexadecimal (as logs and traces show keys)."""
        return self.digest.hex()

    def short(self) -> str:
        """A short prefix of the digest for log lines."""
        return self.digest[:4].hex()

    def __str__(self) -> str:
        return self.short()


def common_prefix_length(a: Key, b: Key) -> int:
    """Shared leading bits of two keys; the bucket index in a routing table."""
    return a.common_prefix_length(b)


def sort_by_distance(keys: Iterable[Key], target: Key) -> list[Key]:
    """``keys`` ordered from closest to farthest from ``target``."""
    t = target.value
    return sorted(keys, key=lambda k: k.value ^ t)


def closest(keys: Iterable[Key], target: Key, n: int) -> list[Key]:
    """The ``n`` keys closest to ``target``, closest first."""
    return sort_by_distance(keys, target)[:n]
