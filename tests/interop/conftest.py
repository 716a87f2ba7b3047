"""Fixtures for tests against real js-libp2p nodes (see jsnode.py).

Tests marked ``@pytest.mark.interop`` in this directory are skipped, with a clear
reason, only when node or tests/interop/node_modules is missing; scripts/test runs
``npm ci`` here. In CI (``CI`` set) or with ``ZIKADE_REQUIRE_INTEROP=1`` that skip
is a failure instead (tests/conftest.py), so missing interop can never pass unseen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .jsnode import (
    JS_UNAVAILABLE_REASON,
    JsNode,
    JsNodeOptions,
    Topology,
    connect_js_nodes,
    js_available,
)

requires_js = pytest.mark.skipif(not js_available(), reason=JS_UNAVAILABLE_REASON)
"""Apply to interop tests outside this directory (this conftest covers only its own)."""

StartJsNodes = Callable[..., Awaitable[list[JsNode]]]
"""``await start(n, topology="line", options=JsNodeOptions())`` → connected nodes."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip interop tests here when the js peers cannot run."""
    if item.get_closest_marker("interop") is not None and not js_available():
        pytest.skip(JS_UNAVAILABLE_REASON)


@pytest.fixture
async def js_node() -> AsyncIterator[JsNode]:
    """One js-libp2p node with the DHT in server mode, stopped after the test."""
    async with JsNode() as node:
        yield node


@pytest.fixture
async def start_js_nodes() -> AsyncIterator[StartJsNodes]:
    """A factory starting N js nodes, connected in ``topology``; all stopped at teardown.

    With the DHT enabled (the default) it returns once every node's routing table holds
    its direct neighbours.
    """
    started: list[JsNode] = []

    async def start(
        n: int, topology: Topology = "line", options: JsNodeOptions | None = None
    ) -> list[JsNode]:
        nodes = [JsNode(options) for _ in range(n)]
        # registered before starting: close() is safe in any state, so a failed or
        # cancelled start leaks no process
        started.extend(nodes)
        async with asyncio.TaskGroup() as tg:
            for node in nodes:
                tg.create_task(node.start())
        await connect_js_nodes(nodes, topology)
        return nodes

    try:
        yield start
    finally:
        await asyncio.gather(*(node.close() for node in started))
