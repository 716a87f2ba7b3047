#!/usr/bin/env python3
"""Where the node's memory is after an attack scenario: prints ONE JSON object to stderr.

Runs one ``scripts/bench/attack.py`` scenario (``--no-js``) and, in the node's own process,
reads before the attack and after ``settle`` seconds: RSS, glibc's heap (``mallinfo2``:
bytes in use, bytes free inside the heap), CPython's small-object allocator (arenas,
bytes in allocated and in available blocks), optionally a ``tracemalloc`` diff of the
Python objects still alive (``--trace``, slow), and RSS once more after ``malloc_trim(0)``.
That tells apart objects still held, freed memory glibc keeps resident, and arenas that
a few surviving objects pin (issue 9, "back to baseline").

Usage: ``.venv/bin/python scripts/bench/attack_memory.py SCENARIO [SETTLE] [--trace]``.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib.util
import json
import os
import re
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ATTACK = Path(__file__).resolve().parent / "attack.py"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def heap(libc: Any) -> dict[str, int]:
    m = libc.mallinfo2()
    return {"brk_heap": m.arena, "mmapped": m.hblkhd, "in_use": m.uordblks,
            "free_in_heap": m.fordblks}  # fmt: skip


def pymalloc() -> dict[str, int]:
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    os.close(w)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = os.read(r, 1 << 20).decode()
    os.close(r)
    out = {}
    for key in ("arenas allocated current", "bytes in allocated blocks",
                "bytes in available blocks"):  # fmt: skip
        found = re.search(r"# " + key + r"\s*=\s*([\d,]+)", text)
        if found:
            out[key] = int(found.group(1).replace(",", ""))
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--trace"]
    trace = "--trace" in sys.argv
    spec = importlib.util.spec_from_file_location("attack", ATTACK)
    assert spec is not None and spec.loader is not None
    attack = importlib.util.module_from_spec(spec)
    sys.modules["attack"] = attack
    spec.loader.exec_module(attack)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    state: dict[str, Any] = {}
    start = attack.LagProbe.start

    def first_start(self: Any) -> None:  # right after the scenario's "before"
        if "before" not in state:
            gc.collect()
            if trace:
                tracemalloc.start(8)
                state["snapshot"] = tracemalloc.take_snapshot()
            state["before"] = {"rss": attack.rss_bytes(), "heap": heap(libc),
                               "pymalloc": pymalloc()}  # fmt: skip
        start(self)

    async def settle(seconds: float) -> dict[str, int]:
        await asyncio.sleep(seconds)
        gc.collect()
        now: dict[str, int] = attack.resources()
        out: dict[str, Any] = {"before": state["before"], "after": {
            "rss": now["rss"], "heap": heap(libc), "pymalloc": pymalloc()}}  # fmt: skip
        if trace:
            stats = tracemalloc.take_snapshot().compare_to(state["snapshot"], "filename")
            tracemalloc.stop()
            out["python_objects_growth"] = sum(s.size_diff for s in stats)
            out["by_file"] = [(s.size_diff, str(s.traceback)) for s in stats[:10]]
        libc.malloc_trim(0)
        out["after_malloc_trim"] = {"rss": attack.rss_bytes(), "heap": heap(libc)}
        print(json.dumps(out), file=sys.stderr)
        return now

    attack.LagProbe.start = first_start
    vars(attack)["settle_and_measure"] = settle  # attack.py's settled() calls it
    sys.argv = ["attack.py", "--scenario", args[0], "--no-js", "--settle",
                args[1] if len(args) > 1 else "30"]  # fmt: skip
    attack.main()


if __name__ == "__main__":
    main()
