"""The package's layering (DESIGN.md §1), checked by reading imports with ``ast``.

* ``p2p`` knows nothing of Kademlia: it imports no other ``zikade_py`` package.
* ``sim`` drives ``core`` directly with virtual time: no ``p2p``/``dht``/``http``,
  no sockets, no asyncio.
* ``dht`` builds on ``core`` and ``p2p`` only (never ``sim``, ``http`` or ``cli``).
* ``http`` and ``cli`` use the node's public API: nothing from ``core`` internals
  or ``sim``.

(The stricter rules for ``core`` itself are in ``tests/core/test_import_boundary.py``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted(
        p for p in (ROOT / package).rglob("*.py") if not p.name.endswith("_pb2.py")
    )


CLI = ("cli", "zikade_cli")
"""The command line's folder and the name it is installed under (pyproject.toml)."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "zikade_py/p2p": (
        "zikade_py.core",
        "zikade_py.dht",
        "zikade_py.blocks",
        "zikade_py.unixfs",
        "zikade_py.bitswap",
        "zikade_py.sim",
        "zikade_py.http",
        *CLI,
    ),
    "zikade_py/sim": (
        "zikade_py.p2p",
        "zikade_py.dht",
        "zikade_py.http",
        *CLI,
        "asyncio",
        "socket",
    ),
    "zikade_py/dht": ("zikade_py.sim", "zikade_py.http", *CLI),
    "zikade_py/http": ("zikade_py.core", "zikade_py.sim", *CLI),
    "cli": ("zikade_py.core", "zikade_py.sim", *CLI),  # inside cli/ imports are relative
    # blocks and files know nothing of networks; bitswap builds on p2p, blocks and the
    # DHT's session() only (providers come in as a callable, not from dht itself)
    "zikade_py/blocks": ("zikade_py.core", "zikade_py.dht", "zikade_py.sim", "zikade_py.http",
                         "zikade_py.bitswap", "zikade_py.unixfs", *CLI, "asyncio.streams",
                         "socket"),
    "zikade_py/unixfs": ("zikade_py.core", "zikade_py.dht", "zikade_py.sim", "zikade_py.http",
                         "zikade_py.bitswap", *CLI, "socket"),
    "zikade_py/bitswap": ("zikade_py.core", "zikade_py.dht", "zikade_py.sim", "zikade_py.http",
                          "zikade_py.unixfs", *CLI),
    "zikade_py/files": ("zikade_py.core", "zikade_py.sim", "zikade_py.http", *CLI),
}

ALLOWED: dict[str, tuple[str, ...]] = {
    "zikade_py/bitswap": ("zikade_py.dht.session",),
}
"""Exceptions to FORBIDDEN: the one module of a banned package a package may use."""


def _cases() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in FORBIDDEN for path in modules(pkg)]


def _case_id(value: object) -> str:
    return str(value.relative_to(ROOT)) if isinstance(value, Path) else str(value)


@pytest.mark.parametrize(("package", "path"), _cases(), ids=_case_id)
def test_layering(package: str, path: Path) -> None:
    bad = sorted(
        name
        for name in imports_of(path)
        for banned in FORBIDDEN[package]
        if (name == banned or name.startswith(banned + "."))
        and name not in ALLOWED.get(package, ())
    )
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}, which {package} must not use"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from zikade_py.core.query import Query\nimport asyncio\n")
    assert {"zikade_py.core.query", "asyncio"} <= imports_of(bad)
