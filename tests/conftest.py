"""Suite-wide rules: nothing leaves the machine, and in CI interop tests never skip.

The dial guard: ``ZIKADE_DIAL_ALLOW`` is set to loopback for this process and
every child it spawns (the ``zikade`` subprocesses inherit the environment), so
a host refuses to dial anything else and DNS is asked only of a resolver a test
runs on 127.0.0.1 (``ZIKADE_DNS_RESOLVER``). Every refusal is written to a log
(``ZIKADE_DIAL_REFUSED_LOG``); a test that caused one fails, unless it is marked
``dial_refusal`` (it shows the refusal on purpose).

Interop tests (marker ``interop``) skip when Node.js or the npm modules of
``tests/interop`` are missing: fine on a laptop, but in CI a skip would let
the suite pass without ever talking to a js-libp2p peer. When
:func:`interop.jsnode.interop_required` (``CI`` set, as ``.ci/run`` runs, or
``ZIKADE_REQUIRE_INTEROP=1``), every skip of an interop test, whatever skipped
it (a ``skipif``, a fixture, a conftest hook), is reported as a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from interop.jsnode import interop_required

LOOPBACK_ONLY = "127.0.0.0/8,::1/128"
os.environ["ZIKADE_DIAL_ALLOW"] = LOOPBACK_ONLY  # before any host is built
_REFUSED_LOG = Path(tempfile.mkdtemp(prefix="zikade-dial-guard-")) / "refused.log"
os.environ["ZIKADE_DIAL_REFUSED_LOG"] = str(_REFUSED_LOG)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that provoke a refusal on purpose."""
    config.addinivalue_line(
        "markers", "dial_refusal: the test expects the dial guard to refuse a destination"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the refusal log and its directory."""
    shutil.rmtree(_REFUSED_LOG.parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_dial_refused(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the dial guard refused anything (in this process or a child)."""
    start = _REFUSED_LOG.stat().st_size if _REFUSED_LOG.exists() else 0
    yield
    if request.node.get_closest_marker("dial_refusal"):
        return
    if _REFUSED_LOG.exists() and _REFUSED_LOG.stat().st_size > start:
        with _REFUSED_LOG.open() as f:
            f.seek(start)
            refused = f.read().strip()
        pytest.fail(f"the dial guard refused a destination during this test:\n{refused}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    """Turn the skip of an interop test into a failure when interop is required."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and item.get_closest_marker("interop") and interop_required():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"interop test skipped where it must run (CI or ZIKADE_REQUIRE_INTEROP=1): {reason}"
        )
