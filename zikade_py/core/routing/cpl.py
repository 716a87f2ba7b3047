"""Random keys at an exact common prefix length, for bucket exploration.

To refresh bucket ``b`` a node looks up a random key sharing exactly ``b``
leading bits with its own key. Two ways to get one:

* :func:`random_digest_with_cpl` builds the *digest* directly from an int. The
  core only ever compares digests, so this is all the simulator needs; the
  key's preimage is empty, and a driver that must put the key on the wire
  (FIND_NODE carries a preimage that the receiver hashes) would have to find a
  preimage itself — which is why real nodes use the next function.
* :func:`random_key_with_cpl` draws random 32-byte preimages until their
  SHA-256 has exactly that CPL (≈2^(b+1) hashes on average). Like go's
  pre-computed table it is limited to ``b <= 15`` (≈65,000 hashes at worst on
  average). Servers hash whatever bytes FIND_NODE carries (WIRE.md §8.10), so a
  random 32-byte preimage is as good as a random peer id.

Both take an injected :class:`random.Random`, so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from zikade_py.core.key import KEY_BITS, Key

MAX_PREIMAGE_CPL = 15
"""Highest CPL :func:`random_key_with_cpl` searches for (go's bound, cost 2^16 hashes)."""

_MAX_TRIES_FACTOR = 64
"""Tries allowed per expected try before giving up (failure odds ≈ e^-64)."""


def _check_cpl(cpl: int, limit: int) -> None:
    if not 0 <= cpl <= limit:
        raise ValueError(f"cpl must be within 0..{limit}, got {cpl}")


def random_digest_with_cpl(self_key: Key, cpl: int, rng: random.Random) -> Key:
    """A random key (empty preimage) sharing exactly ``cpl`` leading bits with ``self_key``.

    Fast and int-only: keep ``self_key``'s first ``cpl`` bits, flip the next
    one, draw the rest at random. For the simulator and for tests.
    """
    _check_cpl(cpl, KEY_BITS - 1)
    low_bits = KEY_BITS - 1 - cpl
    flip = 1 << low_bits
    prefix = (self_key.value >> (low_bits + 1)) << (low_bits + 1)
    value = prefix | ((self_key.value & flip) ^ flip) | rng.getrandbits(low_bits)
    return Key.from_int(value)


def random_key_with_cpl(self_key: Key, cpl: int, rng: random.Random) -> Key:
    """A key with a real preimage whose SHA-256 shares exactly ``cpl`` bits with ``self_key``.

    Searches random 32-byte preimages; ``cpl`` is bounded by
    :data:`MAX_PREIMAGE_CPL`. Raises ``RuntimeError`` only if an absurdly
    unlucky search exceeds its bound.
    """
    _check_cpl(cpl, MAX_PREIMAGE_CPL)
    own = self_key.value
    tries = _MAX_TRIES_FACTOR << (cpl + 1)
    for _ in range(tries):
        preimage = rng.randbytes(32)
        digest = hashlib.sha256(preimage).digest()
        value = int.from_bytes(digest, "big")
        if KEY_BITS - (own ^ value).bit_length() == cpl:
            return Key(digest, preimage)
    raise RuntimeError(f"no preimage with cpl {cpl} found in {tries} tries")


def preimage_targets(self_key: Key, rng: random.Random) -> Callable[[int], Key]:
    """A walk-target generator for a real node: :func:`random_key_with_cpl` bound to its key."""
    return lambda cpl: random_key_with_cpl(self_key, cpl, rng)


def digest_targets(self_key: Key, rng: random.Random) -> Callable[[int], Key]:
    """A walk-target generator for the simulator: :func:`random_digest_with_cpl`."""
    return lambda cpl: random_digest_with_cpl(self_key, cpl, rng)
