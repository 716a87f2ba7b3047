"""``pip install .`` into a fresh venv: no top-level ``cli`` package, the console script works.

The ``cli/`` folder is installed as ``zikade_cli`` (pyproject.toml says why: PyPI has
a distribution named ``cli``). The test builds the wheel from a copy of the sources
(the build writes ``build/`` and ``*.egg-info`` next to them, and the working tree
is shared), installs it with pip into a venv made for the test, and runs the
installed ``zikade``. Only the runtime dependencies come from the project's venv
(a ``.pth`` file added after the install, so pip never sees them); the project
itself comes from the wheel alone. About 10 s: marked slow, and it runs in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=240, check=False, env=env
    )
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding only the wheel built from the sources (plus a .pth to the deps)."""
    base = tmp_path_factory.mktemp("pkg")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("zikade_py", "cli"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(base / "dist"), "./src"], cwd=base)
    (wheel,) = (base / "dist").glob("zikade_py-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         cwd=base)  # fmt: skip
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base)
        .strip()
    )  # fmt: skip
    # the dependencies (click, rich, …) from this venv, visible only from now on
    deps = sysconfig.get_path("purelib")
    (purelib / "zz_test_deps.pth").write_text(deps + "\n")
    return venv


def _site(venv: Path) -> Path:
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    return purelib


def test_no_top_level_cli_package(fresh: Path) -> None:
    purelib = _site(fresh)
    assert not (purelib / "cli").exists()
    assert (purelib / "zikade_cli" / "main.py").is_file()
    (record,) = purelib.glob("zikade_py-*.dist-info/RECORD")
    tops = {line.split("/", 1)[0] for line in record.read_text().splitlines() if "/" in line}
    assert "cli" not in tops
    assert {"zikade_py", "zikade_cli"} <= tops
    proc = subprocess.run(
        [str(fresh / "bin" / "python"), "-c", "import cli"],
        cwd=fresh,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "No module named 'cli'" in proc.stderr
    where = _run(
        [str(fresh / "bin" / "python"), "-c",
         "import zikade_cli, zikade_py; print(zikade_cli.__file__, zikade_py.__file__)"],
        fresh,
    ).split()  # fmt: skip
    assert all(Path(w).is_relative_to(purelib) for w in where), where


def test_wheel_holds_every_package_of_the_sources(fresh: Path) -> None:
    """The package list in pyproject.toml is explicit: a new subpackage must be added there."""
    purelib = _site(fresh)
    wanted = {p.parent.relative_to(ROOT) for p in (ROOT / "zikade_py").rglob("__init__.py")}
    missing = sorted(str(p) for p in wanted if not (purelib / p / "__init__.py").is_file())
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert list((purelib / "zikade_py" / "p2p" / "pb").glob("*_pb2.py"))
    assert (purelib / "zikade_py" / "py.typed").is_file()


def test_installed_console_script_works(fresh: Path, tmp_path: Path) -> None:
    zikade = str(fresh / "bin" / "zikade")
    assert "from zikade_cli.main import main" in Path(zikade).read_text()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ZIKADE_PATH": str(tmp_path / "r"),
        "ZIKADE_DIAL_ALLOW": os.environ["ZIKADE_DIAL_ALLOW"],  # the suite's guard
        "ZIKADE_DIAL_REFUSED_LOG": os.environ.get("ZIKADE_DIAL_REFUSED_LOG", ""),
    }
    assert "find-providers" in _run([zikade, "--help"], tmp_path, env)
    assert "0.1.0" in _run([zikade, "--version"], tmp_path, env)
    _run([zikade, "init", "--no-bootstrap"], tmp_path, env)
    assert '"ID"' in _run([zikade, "id"], tmp_path, env)
    # the in-process node (dht, p2p, protobuf) loads from the wheel too
    proc = subprocess.run(
        [zikade, "find-peer", PEER, "--bootstrap", f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "could not reach any bootstrap peer" in proc.stderr, proc.stderr
