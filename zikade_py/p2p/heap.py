"""Hand heap memory that Python has freed back to the OS after a burst (glibc only).

Why: a flood of junk (issue 9, scenario 1c) makes the receive path allocate and free
tens of MiB of 64 KiB buffers (Noise frames, plaintext, yamux payloads). Python frees
every one of them, but glibc keeps the freed chunks resident inside its heap: the heap
can only shrink from its top, and one small live allocation above them pins the rest.
The process then stays tens of MiB above its baseline although nothing uses that
memory. ``malloc_trim(0)`` returns the free pages anywhere in the heap
(``madvise(MADV_DONTNEED)``). It runs only when glibc's own count of free heap bytes
(``mallinfo2``) passes a threshold, so a quiet node never pays for it.

Elsewhere (musl, macOS, no ``mallinfo2`` before glibc 2.33) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys

MiB = 1024 * 1024
TRIM_THRESHOLD = 4 * MiB
"""glibc's own top-of-heap trim threshold (:func:`tune_thresholds`)."""
FREE_THRESHOLD = 2 * MiB
"""Free bytes in the heap above which :meth:`HeapTrimmer.maybe_trim` trims. Below
:data:`TRIM_THRESHOLD`: a burst's freed chunks lie under live ones, where glibc never
trims (after 400 identities came and went, 3.9 MB stayed free and resident under a 4 MiB
threshold)."""

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    """Resident bytes of this process (Linux: /proc/self/statm, one read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


MIN_SPACING = 20.0
"""Seconds after a trim before a smaller growth than the threshold justifies another."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class HeapTrimmer:
    """Trims glibc's heap when it holds more than ``threshold`` free bytes."""

    __slots__ = ("_free_after", "_libc", "_rss_after", "_trimmed_at", "threshold", "trims")

    def __init__(self, threshold: int = FREE_THRESHOLD) -> None:
        self.threshold = threshold
        self.trims = 0
        """Times the heap was trimmed."""
        self._free_after = 0  # free heap bytes right after the last trim
        self._rss_after = 0  # resident bytes right after the last trim
        self._trimmed_at = float("-inf")
        self._libc: ctypes.CDLL | None = None
        if sys.platform.startswith("linux"):
            try:  # the C library is loaded already (find_library would run ldconfig)
                libc = ctypes.CDLL(None)
                libc.mallinfo2.restype = _MallInfo2
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
            except (OSError, AttributeError):
                return  # not glibc >= 2.33: nothing to do
            self._libc = libc

    @property
    def available(self) -> bool:
        """Whether this platform's allocator can be asked (glibc >= 2.33)."""
        return self._libc is not None

    def free_bytes(self) -> int:
        """Bytes the heap holds in free chunks (0 where unknown)."""
        if self._libc is None:
            return 0
        return int(self._libc.mallinfo2().fordblks)

    def maybe_trim(self, now: float) -> bool:
        """Trim if more than ``threshold`` bytes are free in the heap and the process has
        been busy since the last trim: the free bytes grew by ``threshold``, or the free
        bytes or the resident size moved by a MiB and that trim is :data:`MIN_SPACING` old
        (chunks reused and freed again after a trim are resident again, whatever the
        totals say). A trimmed chunk still counts as free, so without the activity test an
        idle fragmented heap would be trimmed at every look. Returns whether it trimmed."""
        if self._libc is None:
            return False
        free = self.free_bytes()
        if free <= self.threshold:
            return False
        grown = free - self._free_after
        busy = abs(grown) > MiB or abs(_rss() - self._rss_after) > MiB
        if grown <= self.threshold and not (busy and now - self._trimmed_at >= MIN_SPACING):
            return False
        self._libc.malloc_trim(0)
        self._free_after = self.free_bytes()
        self._rss_after = _rss()
        self._trimmed_at = now
        self.trims += 1
        return True


MMAP_THRESHOLD = 512 * 1024
"""Allocations from this size up get pages of their own (glibc's default: 128 KiB)."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_thresholds() -> bool:
    """Fix glibc's mmap threshold (:data:`MMAP_THRESHOLD`) and top-of-heap trim threshold
    (:data:`TRIM_THRESHOLD`) once per process; returns whether they are set (glibc only).

    Why: asyncio reads a socket with ``recv(256 KiB)`` and shrinks the result to what
    arrived. Under the default 128 KiB mmap threshold every read, however small, is an
    mmap, an mremap and a munmap with fresh pages faulted in: a TCP handshake paid ~0.2 ms
    of CPU for it. glibc raises that threshold itself only when a large mapped chunk is
    freed unshrunk, which happened by luck while importing dnspython or aioquic, so making
    those imports lazy made every TCP dial dearer (issue 9 acceptance 6, 9ec9d4c). Bulk
    receives free a few hundred KiB at the top of the heap, which the default trim
    threshold handed back to the OS at once and faulted in again for the next segment
    (+50 % CPU per received MiB). Freed memory past :data:`TRIM_THRESHOLD` still goes
    back: glibc trims the top beyond it, :func:`trim_periodically` the rest."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or not hasattr(os, "confstr"):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False  # musl's mallopt takes no such parameters
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, ValueError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned


TRIM_INTERVAL = 10.0
"""Seconds between looks at the heap (a look is one ``mallinfo2`` call, ~40 us)."""

TRIMMER = HeapTrimmer()
"""The process's trimmer (the heap is the process's, whatever number of hosts run)."""


async def trim_periodically() -> None:
    """Every :data:`TRIM_INTERVAL`, trim the heap if it holds much freed memory (a host's
    maintenance task; a trim of a few tens of MiB takes a few ms)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(TRIM_INTERVAL)
        TRIMMER.maybe_trim(loop.time())
