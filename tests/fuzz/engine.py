"""Runs a decoder target for N hypothesis examples and counts what went wrong.

A fuzz *test* stops at the first failure; a fuzz *run* at volume must keep going and
report how many examples ran, how many crashed (an exception outside the decoder's
documented error types, or a bug the code swallowed and the target detected) and how
many hung (an example over the time bound), with the first few failures kept for
replay. So the example function never raises into hypothesis: it records.

Hangs are caught two ways, both per example. Every example runs under an
``ITIMER_PROF`` timer of ``timeout`` seconds of CPU time of this process, whose ``SIGPROF``
raises :class:`Hang` wherever a busy loop is stuck (CPU time is immune to other load on
the machine; SIGPROF, not SIGALRM, because pytest-timeout owns SIGALRM). A coroutine also
runs under ``asyncio.timeout`` of :data:`WALL_FACTOR` times ``timeout`` in wall time: an
await that never ends uses no CPU, and every fuzz input ends in EOF or a close, so a
correct decoder always finishes. The wall bound is generous because on a loaded machine
a process may get a tenth of a core, and one garbage collection of hypothesis' heap can
then take seconds of wall time (a 5 s wall bound saw exactly that once).

Examples are generated in batches with seeds derived from one base seed, so a run is
reproducible and hypothesis never has to remember 100,000 examples at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

BATCH = 5_000
"""Examples per hypothesis call; each batch gets its own seed."""

WALL_FACTOR = 6
"""A coroutine example's wall-clock bound, in multiples of its CPU-time bound."""

KEEP_FAILURES = 5
"""Failures kept in full (input, traceback) per target; the rest are only counted."""


class Hang(Exception):
    """An example exceeded the time bound (raised by the watchdog or by a target)."""


class Crash(Exception):
    """A target found a bug the decoder hid (e.g. an unexpected error swallowed into a
    generic close); raised by targets, counted as a crash."""


@dataclass(frozen=True, slots=True)
class Target:
    """One decoder under fuzz: what to feed it, how, and which errors it documents.

    ``run`` takes one drawn input and returns ``None`` or a coroutine (run on the
    engine's event loop). An exception that is an instance of ``errors`` is the
    decoder refusing bad input as documented; anything else is a crash.
    """

    name: str
    doc: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], Any]
    errors: tuple[type[BaseException], ...]


@dataclass(slots=True)
class Failure:
    """One crash or hang, kept for replay."""

    kind: str
    exception: str
    input: str
    traceback: list[str]


@dataclass(slots=True)
class Report:
    """What one target's run found; ``to_json`` is the per-decoder JSON object."""

    name: str
    examples: int = 0
    crashes: int = 0
    hangs: int = 0
    wall_s: float = 0.0
    refused: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {
            "examples": self.examples,
            "crashes": self.crashes,
            "hangs": self.hangs,
            "wall_s": round(self.wall_s, 2),
            "examples_per_s": round(self.examples / self.wall_s) if self.wall_s else None,
            "refused": dict(self.refused.most_common()),
            "failures": [dataclasses.asdict(f) for f in self.failures],
        }


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    raise Hang("example exceeded its CPU-time bound")


@contextmanager
def _watchdog() -> Iterator[None]:
    """Install the SIGPROF handler for the duration of a run (main thread only)."""
    previous = signal.signal(signal.SIGPROF, _on_sigprof)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _short_repr(value: Any, limit: int = 2000) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class _Runner:
    """Feeds one target's examples, one event loop for all of them."""

    def __init__(
        self, target: Target, timeout: float, on_failure: Callable[[Failure], None] | None
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.on_failure = on_failure
        self.report = Report(target.name)
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self._drain_tasks()
        self.loop.close()

    def _drain_tasks(self) -> None:
        """Cancel what an example left running so the next one starts clean."""
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    async def _bounded(self, coro: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout * WALL_FACTOR):
                await coro
        except TimeoutError:
            raise Hang(f"example still awaiting after {self.timeout * WALL_FACTOR}s") from None

    def example(self, value: Any) -> None:
        report = self.report
        report.examples += 1
        signal.setitimer(signal.ITIMER_PROF, self.timeout)
        try:
            result = self.target.run(value)
            if inspect.iscoroutine(result):
                self.loop.run_until_complete(self._bounded(result))
        except KeyboardInterrupt:
            raise
        except Hang as exc:
            self._failed("hang", exc, value)
            self._reset_loop()
        except self.target.errors as exc:
            report.refused[type(exc).__name__] += 1
        except BaseException as exc:  # everything else is what we are looking for
            self._failed("crash", exc, value)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            self._drain_tasks()
        except Exception as exc:  # a task that will not die on cancel is a bug too
            self._failed("crash", exc, value)
            self._reset_loop()

    def _reset_loop(self) -> None:
        """A hang may have been interrupted inside the loop's own machinery: start afresh."""
        old = self.loop
        self.loop = asyncio.new_event_loop()
        try:
            for task in asyncio.all_tasks(old):
                task.cancel()
            old.close()
        except Exception:  # the old loop is beyond repair; it is dropped either way
            pass

    def _failed(self, kind: str, exc: BaseException, value: Any) -> None:
        report = self.report
        if kind == "hang":
            report.hangs += 1
        else:
            report.crashes += 1
        if len(report.failures) < KEEP_FAILURES:
            lines = traceback.format_exception(exc)
            failure = Failure(
                kind, f"{type(exc).__name__}: {exc}"[:500], _short_repr(value), lines[-12:]
            )
            report.failures.append(failure)
            if self.on_failure is not None:
                self.on_failure(failure)


def run_target(
    target: Target,
    examples: int,
    *,
    seed: int = 0,
    timeout: float = 5.0,
    on_batch: Callable[[Report], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> Report:
    """Run ``target`` for ``examples`` generated inputs (fewer only if hypothesis runs out
    of distinct inputs) and return what happened; ``on_batch`` sees the report so far
    after every batch (a long run's progress), ``on_failure`` each kept failure as it
    happens (a long run's findings survive the run being stopped)."""
    runner = _Runner(target, timeout, on_failure)
    started = time.perf_counter()
    batch_no = 0
    try:
        with _watchdog():
            while runner.report.examples < examples:
                before = runner.report.examples
                size = min(BATCH, examples - before)
                settings_ = settings(
                    max_examples=size,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    derandomize=False,
                )

                def one(value: Any) -> None:
                    runner.example(value)

                batch = hypothesis_seed(seed * 1_000_003 + batch_no)(
                    settings_(given(target.strategy)(one))
                )
                batch()
                batch_no += 1
                if on_batch is not None:
                    runner.report.wall_s = time.perf_counter() - started
                    on_batch(runner.report)
                if runner.report.examples == before:
                    break  # the strategy is exhausted
    finally:
        runner.report.wall_s = time.perf_counter() - started
        runner.close()
    return runner.report


def run_targets(
    targets: list[Target],
    examples: int,
    *,
    seed: int = 0,
    timeout: float = 5.0,
    progress: Callable[[Report], None] | None = None,
    on_batch: Callable[[Report], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> dict[str, Any]:
    """Run each target in turn; the JSON document ``scripts/fuzz`` prints. ``progress``
    sees each finished target's report, ``on_batch`` the running one's after each batch,
    ``on_failure`` every kept failure at once."""
    import hypothesis

    reports: dict[str, Any] = {}
    for target in targets:
        report = run_target(
            target, examples, seed=seed, timeout=timeout, on_batch=on_batch, on_failure=on_failure
        )
        reports[target.name] = report.to_json()
        if progress is not None:
            progress(report)
    return {
        "examples_per_decoder": examples,
        "seed": seed,
        "timeout_cpu_s": timeout,
        "timeout_wall_s": timeout * WALL_FACTOR,
        "python": sys.version.split()[0],
        "hypothesis": hypothesis.__version__,
        "decoders": reports,
        "crashes": sum(r["crashes"] for r in reports.values()),
        "hangs": sum(r["hangs"] for r in reports.values()),
        "wall_s": round(sum(r["wall_s"] for r in reports.values()), 2),
    }
