"""Suite-wide rule: in CI an interop test that would be skipped fails instead.

Interop tests (marker ``interop``) skip when Node.js or the npm modules of
``tests/interop`` are missing: fine on a laptop, but in CI a skip would let
the suite pass without ever talking to a js-libp2p peer. When
:func:`interop.jsnode.interop_required` (``CI`` set, as ``.ci/run`` runs, or
``ZIKADE_REQUIRE_INTEROP=1``), every skip of an interop test, whatever skipped
it (a ``skipif``, a fixture, a conftest hook), is reported as a failure.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from interop.jsnode import interop_required


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
