"""How big the blockstore may grow and when unpinned blocks are collected (Kubo's
``Datastore.StorageMax``, ``StorageGCWatermark`` and ``GCPeriod``).

Why two numbers: ``StorageMax`` is a hard cap (a put that cannot fit even after
collecting every unpinned block fails, :class:`~.store.BlockstoreFullError`),
and the watermark keeps the store from living at the cap: once the store holds
more than ``watermark`` percent of it, unpinned blocks (what ``cat`` fetched,
``add --no-pin``) are collected, oldest first, down to ten points below the
watermark, so the next few fetches do not each trigger a collection. Kubo
removes every unpinned block instead; keeping the newest ones keeps a warm
cache for the content being served now. Pinned blocks are never collected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_STORAGE_MAX: Final = "10GB"
"""Kubo's default ``Datastore.StorageMax``."""
DEFAULT_GC_WATERMARK: Final = 90
"""Kubo's default ``Datastore.StorageGCWatermark`` (percent of ``StorageMax``)."""
DEFAULT_GC_PERIOD: Final = 3600.0
"""Kubo's default ``Datastore.GCPeriod`` (1 h): the backstop check of a running node."""
HYSTERESIS: Final = 10
"""Percentage points below the watermark a collection goes down to."""

_UNITS: Final = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes of a size as Kubo writes it (``10GB``, ``512MiB``, ``1048576``); raises
    ``ValueError`` for anything else."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    m = _SIZE.match(text)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(f"invalid size {text!r} (e.g. 10GB, 512MiB, 1048576)")
    return int(float(m.group(1)) * unit)


@dataclass(frozen=True, slots=True)
class StorageLimits:
    """The blockstore's cap and its collection watermark (see the module docstring)."""

    max_bytes: int | None = parse_size(DEFAULT_STORAGE_MAX)
    """Hard cap in bytes (``None``: unlimited, then nothing is collected automatically)."""
    gc_watermark: int = DEFAULT_GC_WATERMARK
    """Percent of ``max_bytes`` past which unpinned blocks are collected."""
    gc_period: float = DEFAULT_GC_PERIOD
    """Seconds between the periodic checks (puts through the node check at once)."""

    def __post_init__(self) -> None:
        if not 1 <= self.gc_watermark <= 100:
            raise ValueError(f"the GC watermark is a percentage (1..100), not {self.gc_watermark}")
        if self.gc_period <= 0:
            raise ValueError("the GC period must be positive")

    @property
    def trigger_bytes(self) -> int | None:
        """Above this many bytes a collection runs (``None``: never)."""
        if self.max_bytes is None:
            return None
        return self.max_bytes * self.gc_watermark // 100

    @property
    def target_bytes(self) -> int | None:
        """What a collection brings the store down to (``None``: no automatic collection)."""
        if self.max_bytes is None:
            return None
        return self.max_bytes * max(0, self.gc_watermark - HYSTERESIS) // 100


UNLIMITED: Final = StorageLimits(max_bytes=None)
"""No cap and no automatic collection (tests, ``ContentNode`` without a repo)."""

__all__ = [
    "DEFAULT_GC_PERIOD",
    "DEFAULT_GC_WATERMARK",
    "DEFAULT_STORAGE_MAX",
    "UNLIMITED",
    "StorageLimits",
    "parse_size",
]
