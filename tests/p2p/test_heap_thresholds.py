"""A started host fixes glibc's mmap and trim thresholds (issue 9 acceptance 6: every small
socket read was an mmap + mremap + munmap, and bulk receives trimmed and re-faulted the top
of the heap, unless some import had raised glibc's dynamic thresholds by luck)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zikade_py.p2p import heap

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
import asyncio, ctypes, gc
gc.disable()
from zikade_py.p2p import heap
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host

KiB = 1024
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = heap._MallInfo2

def top_kept_after_freeing(chunks):
    # what glibc keeps at the top of the heap once the last 64 KiB buffers are freed
    bufs = [bytearray(64 * KiB - 100) for _ in range(chunks)]
    del bufs
    return libc.mallinfo2().keepcost

async def start_host():
    async with Host(PrivateKey.generate()) as host:
        await host.start([])

asyncio.run(start_host())
mapped = libc.mallinfo2().hblks
buf = bytearray(300 * KiB)  # asyncio reads with recv(256 KiB): this size class
assert libc.mallinfo2().hblks == mapped, "a read buffer got pages of its own"
del buf
kept = top_kept_after_freeing(32)
assert kept >= 1024 * KiB, f"the freed top of the heap was given back: {kept} bytes kept"
assert heap.tune_thresholds()  # idempotent
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not heap.TRIMMER.available, reason="glibc only"
)
def test_a_started_host_fixes_the_allocator_thresholds() -> None:
    """In a fresh interpreter that imports only the host: in the test suite's process a
    host has set the thresholds already, or an earlier test's allocations raised glibc's
    dynamic ones."""
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
