"""A node SIGKILLed in the middle of a reprovide cycle resumes it after a restart: the
regions it had finished are not announced again before their next slot, the regions whose
slot passed while it was down are announced first, before those not due yet, the rest of
the cycle is done, and no key is lost (the repo's SQLite file is the only memory it has)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zikade_py.core.sweep_region import Region

from .conftest import start_network

pytestmark = pytest.mark.timeout(180)

INTERVAL = 30.0
KEYS = 200
MARGIN = 2.5
"""Regions due within this long after the restart are neither overdue nor clearly later."""
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    proc: subprocess.Popen[str]
    events: queue.Queue[dict[str, object] | None] = field(default_factory=queue.Queue)
    seen: list[dict[str, object]] = field(default_factory=list)

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put(None)

    def next(self, timeout: float) -> dict[str, object] | None:
        try:
            doc = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        assert doc is not None, f"the child exited: {self.stderr()}"
        self.seen.append(doc)
        return doc

    def wait(self, event: str, timeout: float = 60.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.next(deadline - time.monotonic())
            if doc is not None and doc["event"] == event:
                return doc
        raise AssertionError(f"no {event} event in time")

    def dones(self, *, burst: bool) -> list[dict[str, object]]:
        return [d for d in self.seen if d["event"] == "done" and d["ok"] and d["burst"] is burst]

    def schedule(self) -> list[tuple[str, float, float | None]]:
        """The last schedule the child printed (region, due, last done; wall clock)."""
        for doc in reversed(self.seen):
            if doc["event"] == "stat" and doc.get("schedule"):
                rows = doc["schedule"]
                assert isinstance(rows, list)
                return [(str(r), float(due), None if last is None else float(last))
                        for r, due, last in rows]  # fmt: skip
        return []

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]


def spawn(repo: Path, boot: str, keys: int) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.dht.reprovide_child", str(repo), boot,
         str(INTERVAL), str(keys)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    child = Child(proc)
    threading.Thread(target=child.pump, daemon=True).start()
    return child


def overlaps(a: str, b: str) -> bool:
    ra, rb = Region.parse(a), Region.parse(b)
    return ra.covers(rb) or rb.covers(ra)


async def test_sigkill_mid_cycle_then_resume(tmp_path: Path) -> None:
    import asyncio

    async with start_network(15, min_table=2) as net:
        boot = str(net.bootstrap.multiaddrs[0])
        repo = tmp_path / "repo"
        first = spawn(repo, boot, KEYS)
        try:
            ready = await asyncio.to_thread(first.wait, "ready")
            stat = ready["stat"]
            assert isinstance(stat, dict) and stat["keys"] == KEYS
            # The burst, then reprovides at the regions' slots; kill after the first one.
            deadline = time.monotonic() + 60
            while not first.dones(burst=False):
                assert time.monotonic() < deadline, "no region reprovided in time"
                await asyncio.to_thread(first.next, 1.0)
            regions_before = first.seen[-1]
            await asyncio.sleep(0.5)  # its schedule write is queued: let it commit
            await asyncio.to_thread(first.next, 0.6)  # and the schedule printed after it
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        finally:
            if first.proc.poll() is None:
                first.proc.kill()
        finished = {str(d["region"]): float(str(d["at"])) for d in first.dones(burst=False)}
        assert regions_before and first.dones(burst=True), "the burst came first"
        killed_at = time.time()
        planned = first.schedule()
        assert planned, "the child printed no schedule"
        # Dead until the slot of the next region has passed: it is overdue at the restart,
        # the regions after it are not due yet.
        dues = sorted(due for r, due, _ in planned if r not in finished)
        await asyncio.sleep(max(1.0, (dues[0] if dues else 0.0) + 0.3 - time.time()))

        spawned = time.time()
        second = spawn(repo, boot, 0)
        try:
            ready = await asyncio.to_thread(second.wait, "ready")
            stat = ready["stat"]
            assert isinstance(stat, dict)
            assert stat["keys"] == KEYS, "keys were lost"
            total = int(str(stat["regions"]))
            assert total > len(finished), "nothing left of the cycle to resume"
            started = time.time()
            # Regions not finished whose slot passed while the node was dead are overdue;
            # those whose slot lies clearly after the restart are not due yet.
            waiting = [(r, due) for r, due, _ in planned if r not in finished]
            overdue = {r for r, due in waiting if due < spawned}
            later = {r for r, due in waiting if due > started + MARGIN}
            assert overdue and later, (
                f"the scenario needs both: schedule {planned} (killed at {killed_at}, "
                f"restarted {spawned}..{started}); finished {finished}"
            )
            # Watch the rest of the cycle: until every region not due yet had its slot.
            deadline = max(killed_at + INTERVAL, max(due for _, due in waiting) + 3.0)
            while time.time() < deadline:
                await asyncio.to_thread(second.next, 0.5)
        finally:
            second.proc.kill()
            second.proc.wait(timeout=10)
        redone = second.dones(burst=False)
        assert not second.dones(burst=True), "keys announced before the crash were burst again"
        for doc in redone:
            region, at = str(doc["region"]), float(str(doc["at"]))
            for old, when in finished.items():
                if overlaps(region, old):
                    assert at - when >= INTERVAL / 2, (
                        f"region {region} announced {at - when:.1f}s after {old} was finished"
                    )
        assert redone, "the restarted node did not resume the cycle"
        resumed = [d for d in redone if not any(overlaps(str(d["region"]), o) for o in finished)]
        assert resumed, (
            f"finished before the kill: {finished}; after the restart: "
            f"{[(d['region'], float(str(d['at'])) - killed_at) for d in redone]}"
        )
        # Overdue first: every overdue region was announced before any region not due yet
        # (a region announced together with an overdue one, a widened exploration, counts
        # as overdue's).
        story = (
            f"overdue {sorted(overdue)}, later {sorted(later)}, restarted at {spawned:.1f}; "
            f"after the restart: {[(d['region'], round(float(str(d['at'])), 1)) for d in redone]}"
        )
        first_done = {}
        for region in overdue:
            times = [float(str(d["at"])) for d in redone if overlaps(str(d["region"]), region)]
            assert times, f"overdue region {region} was never announced: {story}"
            first_done[region] = min(times)
        later_times = [
            float(str(d["at"])) for d in redone
            if any(overlaps(str(d["region"]), r) for r in later)
            and not any(overlaps(str(d["region"]), r) for r in overdue)
        ]  # fmt: skip
        assert later_times, f"no region due later was announced: {story}"
        assert max(first_done.values()) < min(later_times), f"not overdue first: {story}"
        # No key lost: every region of the schedule was announced before the kill or after.
        announced = list(finished) + [str(d["region"]) for d in redone]
        for region, _, _ in planned:
            assert any(overlaps(region, a) for a in announced), f"{region} never announced"
