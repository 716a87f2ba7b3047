"""``scripts/fuzz`` in CI: every decoder for a small count, and the engine's own counting.

The benchmark runs the same entry with ``--examples 100000``; here a couple of hundred
examples per decoder keep the harness itself from rotting (a renamed error type or a
changed signature shows up as crashes at once).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import strategies as st

from .engine import Crash, Target, run_target, run_targets
from .targets import TARGETS

SMOKE_EXAMPLES = 200
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_decoder_survives_a_smoke_run() -> None:
    result = run_targets(list(TARGETS.values()), SMOKE_EXAMPLES, seed=1)
    failures = {
        name: report["failures"]
        for name, report in result["decoders"].items()
        if report["crashes"] or report["hangs"]
    }
    assert failures == {}
    for name, report in result["decoders"].items():
        assert report["examples"] == SMOKE_EXAMPLES, name


class Boom(Exception):
    """Not a documented error of the fake decoder below."""


def _fake_decoder(case: tuple[str, int]) -> object:
    kind, n = case
    if kind == "refuse":
        raise ValueError("documented refusal")
    if kind == "crash" and n == 3:
        raise Boom("undocumented")
    if kind == "hidden" and n == 4:
        raise Crash("a swallowed bug")
    if kind == "spin" and n == 5:
        while True:  # a decoder stuck in a loop: only the CPU watchdog can stop it
            pass
    if kind == "wait" and n == 6:
        return asyncio.Event().wait()  # awaits forever: the wall-clock bound stops it
    return None


FAKE = Target(
    "fake",
    "a decoder with every kind of failure",
    st.tuples(
        st.sampled_from(["ok", "refuse", "crash", "hidden", "spin", "wait"]), st.integers(0, 9)
    ),
    _fake_decoder,
    (ValueError,),
)


@pytest.mark.timeout(60)
def test_engine_counts_refusals_crashes_and_hangs() -> None:
    report = run_target(FAKE, 150, timeout=0.1)
    assert report.examples == 150
    assert report.refused["ValueError"] > 0
    kinds = {(f.kind, f.exception.split(":")[0]) for f in report.failures}
    assert report.crashes >= 2 and report.hangs >= 2
    assert ("crash", "Boom") in kinds or ("crash", "Crash") in kinds
    # the run goes on after a hang: the loop is replaced, later examples still run
    assert report.examples - report.crashes - report.hangs - sum(report.refused.values()) > 0


@pytest.mark.timeout(120)
def test_script_prints_json_and_fails_only_on_findings() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [ROOT / "scripts" / "fuzz", "--examples", "20", "--only", "multiaddr", "--only", "mss"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert sorted(result["decoders"]) == ["mss", "multiaddr"]
    for report in result["decoders"].values():
        assert report["examples"] == 20
        assert {"crashes", "hangs", "wall_s"} <= report.keys()
