"""A node with a repo that reprovides with the sweep, run as a child process by
``test_reprovide_restart.py`` (so the test can SIGKILL it mid-cycle).

``python -m tests.dht.reprovide_child REPO BOOTSTRAP INTERVAL KEYS``

It joins through BOOTSTRAP, provides KEYS CIDs if KEYS > 0, and prints one
JSON line per event on stdout: ``ready`` (with the provide statistics after
start), ``done`` for every region the sweep finishes (burst or reprovide),
``stat`` every half second (with the sweep's schedule: each region, when it is
due and when it was last done, in wall-clock seconds). Small regions
(``replication=2``) give a dozen loopback servers several regions; INTERVAL is
the cycle in seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from multiformats import CID, multihash

from tests.dht.conftest import LOOPBACK_COORDINATOR, loopback_config
from zikade_py.core.sweep import SweepConfig
from zikade_py.core.sweep_events import SweepOutput, SweepRegionDone
from zikade_py.dht import Node


def cids(n: int) -> list[CID]:
    """The ``n`` CIDs the test provides."""
    digests = (multihash.digest(b"restart-%d" % i, "sha2-256") for i in range(n))
    return [CID("base32", 1, "raw", d) for d in digests]


def say(doc: dict[str, object]) -> None:
    print(json.dumps(doc), flush=True)


async def main(repo: Path, bootstrap: str, interval: float, keys: int) -> None:
    sweep = SweepConfig(
        replication=2, reprovide_interval=interval, burst_delay=0.1, calibration_retry=0.5
    )
    cfg = loopback_config(
        repo=repo, bootstrap=[bootstrap], republish=True,
        coordinator=replace(LOOPBACK_COORDINATOR, sweep=sweep),
    )
    node = Node(cfg)
    await node.start()
    rep = node.reprovider
    assert rep is not None
    forward = rep.on_output

    def spy(out: SweepOutput) -> None:
        if isinstance(out, SweepRegionDone):
            say({"event": "done", "region": str(out.region), "at": time.time(),
                 "burst": out.burst, "ok": out.ok, "keys": out.keys_announced})  # fmt: skip
        forward(out)

    rep.on_output = spy  # type: ignore[method-assign]
    await node.bootstrap()
    if keys:
        await node.provide_many(cids(keys))
    say({"event": "ready", "stat": await node.provide_stat()})
    while True:
        await asyncio.sleep(0.5)
        say({"event": "stat", "stat": await node.provide_stat(), "schedule": schedule(node)})


def schedule(node: Node) -> list[tuple[str, float, float | None]]:
    """The sweep's schedule in wall-clock seconds (the core runs on ``time.monotonic``)."""
    sweep = node.driver.coordinator.sweep
    if sweep is None:
        return []
    off = time.time() - time.monotonic()
    return [
        (str(region), due + off, None if last is None else last + off)
        for region, due, last in sweep.schedule()
    ]


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
