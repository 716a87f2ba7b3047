"""The core's dependency rule (DESIGN.md §1), checked by reading its imports with ``ast``.

Every module under ``zikade_py/core`` may import only the standard library,
``opentelemetry`` and ``zikade_py.core.*``. Within the standard library it may
not use I/O or concurrency (asyncio, socket, selectors, threading,
subprocess, ...), may not read a clock (``time.time``, ``time.monotonic``,
``datetime.now`` ...) and may use randomness only through an injected
``random.Random`` instance (``random.Random`` is the only name of ``random``
it may touch).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "zikade_py" / "core"

BANNED_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "selectors",
        "threading",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "ssl",
        "select",
        "signal",
        "secrets",
        "_thread",
    }
)
CLOCKS = {
    "time": frozenset(
        {
            "time",
            "time_ns",
            "monotonic",
            "monotonic_ns",
            "perf_counter",
            "perf_counter_ns",
            "process_time",
            "process_time_ns",
            "sleep",
            "localtime",
            "gmtime",
            "ctime",
        }
    ),
    "datetime": frozenset({"now", "utcnow", "today"}),
    "os": frozenset({"urandom", "getrandom"}),
}
RANDOM_ALLOWED = frozenset({"Random"})


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _resolve(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def violations(source: str, package: str = "zikade_py.core") -> list[str]:
    """Every breach of the core's import rules in ``source`` (a module of ``package``)."""
    tree = ast.parse(source)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the top-level module (or class) it stands for

    def check_module(name: str, line: int) -> None:
        top = _top(name)
        if name == "zikade_py.core" or name.startswith("zikade_py.core."):
            return
        if top == "opentelemetry":
            return
        if top in BANNED_MODULES:
            found.append(f"line {line}: imports banned module {name}")
        elif top not in sys.stdlib_module_names:
            found.append(f"line {line}: imports {name}, outside stdlib/opentelemetry/core")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(alias.name, node.lineno)
                aliases[alias.asname or _top(alias.name)] = _top(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node.module, node.level, package)
            check_module(module, node.lineno)
            for alias in node.names:
                if module == "random" and alias.name not in RANDOM_ALLOWED:
                    found.append(f"line {node.lineno}: from random import {alias.name}")
                if alias.name in CLOCKS.get(module, ()):
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
                if module == "datetime" and alias.name in ("datetime", "date"):
                    aliases[alias.asname or alias.name] = "datetime"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        # Resolve the leftmost name of a dotted chain such as datetime.datetime.now.
        chain = [node.attr]
        base: ast.expr = node.value
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or base.id not in aliases:
            continue
        module = aliases[base.id]
        if module == "random" and node.attr not in RANDOM_ALLOWED and len(chain) == 1:
            found.append(f"line {node.lineno}: random.{node.attr} (inject a random.Random)")
        if node.attr in CLOCKS.get(module, ()):
            found.append(f"line {node.lineno}: reads a clock or urandom via {module}.{node.attr}")
    return found


def core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "__pycache__" not in p.parts)


def test_core_has_modules() -> None:
    names = {p.relative_to(CORE).as_posix() for p in core_modules()}
    assert {"key.py", "query.py", "routing_table.py", "routing/probe.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_respects_the_boundary(path: Path) -> None:
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    package = ".".join(rel.parts[:-1])  # for __init__ too: its package is its folder
    assert violations(path.read_text(), package) == []


# -- the checker itself must catch what it claims to catch -----------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import socket",
        "from concurrent.futures import ThreadPoolExecutor",
        "import threading",
        "import subprocess",
        "import selectors",
        "import numpy",
        "from zikade_py.p2p import io",
        "from zikade_py.dht import node",
        "from ...p2p import io",
        "import time\nx = time.time()",
        "import time\nx = time.monotonic()",
        "import time as t\nx = t.perf_counter()",
        "from time import monotonic",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.now()",
        "import random\nx = random.random()",
        "import random\nx = random.choice([1])",
        "from random import shuffle",
        "import os\nx = os.urandom(8)",
    ],
)
def test_checker_flags(source: str) -> None:
    assert violations(source, "zikade_py.core.routing") != []


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import heapq\nimport bisect\nfrom collections import deque",
        "from opentelemetry.trace import SpanContext",
        "from zikade_py.core.key import Key",
        "from ..key import Key",
        "from . import cpl",
        "import random\ndef f(rng: random.Random) -> float:\n    return rng.random()",
        "from random import Random",
        "import time\nx = time.struct_time",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source, "zikade_py.core.routing") == []
