"""Helpers for the ``zikade`` command-line tests: run the installed console script, and
start daemons / devnets as child processes on 127.0.0.1 (always stopped at teardown).

Everything is bounded: every command has a subprocess timeout, every wait for a
daemon's output line a deadline.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from zikade_py.http.repo import load_config, save_config

ZIKADE = Path(sys.executable).parent / "zikade"
COMMAND_TIMEOUT = 90.0
READY_TIMEOUT = 45.0


@dataclass
class Result:
    """What one ``zikade`` run did."""

    status: int
    out: str
    err: str
    raw_out: bytes = b""

    @property
    def lines(self) -> list[str]:
        """Non-empty stdout lines."""
        return [line for line in self.out.splitlines() if line.strip()]

    def ok(self) -> Result:
        """Assert success; return self for chaining."""
        assert self.status == 0, f"status {self.status}\nstdout: {self.out}\nstderr: {self.err}"
        return self

    def one_error(self, *fragments: str) -> str:
        """Assert exactly one ``Error: …`` line on stderr and status 1; return the line."""
        assert self.status == 1, f"status {self.status}\nstdout: {self.out}\nstderr: {self.err}"
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("Error: "), self.err
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        return lines[0]


def clean_env(repo: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: no tracing export, the repo in ZIKADE_PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("ZIKADE_PATH", None)
    if repo is not None:
        env["ZIKADE_PATH"] = str(repo)
    env.update(extra or {})
    return env


def zikade(
    *args: str,
    repo: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = COMMAND_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Result:
    """Run ``zikade ARGS`` (``ZIKADE_PATH=repo``) and wait for it, bounded."""
    proc = subprocess.run(
        [str(ZIKADE), *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=clean_env(repo, env),
        timeout=timeout,
        check=False,
    )
    return Result(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        proc.stdout,
    )


@dataclass
class Child:
    """A long-running ``zikade`` child (daemon or devnet) whose output lines we watch."""

    proc: subprocess.Popen[str]
    repo: Path
    lines: list[str] = field(default_factory=list)
    err_lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_readers(self) -> None:
        """Pump stdout into :meth:`wait_line` and keep stderr for failure messages."""

        def pump_out() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        def pump_err() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.err_lines.append(line.rstrip("\n"))

        threading.Thread(target=pump_out, daemon=True).start()
        threading.Thread(target=pump_err, daemon=True).start()

    def wait_line(self, prefix: str, timeout: float = READY_TIMEOUT) -> str:
        """The next stdout line starting with ``prefix`` (earlier lines are kept in ``lines``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {prefix!r} in time: {self.describe()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"child exited before {prefix!r}: {self.describe()}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def describe(self) -> str:
        """Output so far, for assertion messages."""
        return "\nstdout:\n" + "\n".join(self.lines) + "\nstderr:\n" + "\n".join(self.err_lines)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig``, wait (bounded), kill if needed; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@dataclass
class DaemonChild(Child):
    """A ``zikade daemon`` child after ``Daemon is ready``."""

    peer_id: str = ""
    swarm_addr: str = ""
    """The first ``Swarm listening on`` address, with ``/p2p/``."""
    api_addr: str = ""


def spawn(args: list[str], repo: Path, cls: type[Child] = Child) -> Child:
    """Start ``zikade ARGS`` as a child with its output pumped."""
    proc = subprocess.Popen(
        [str(ZIKADE), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(repo),
    )
    child = cls(proc=proc, repo=repo)
    child.start_readers()
    return child


def init_repo(repo: Path, *extra: str) -> Result:
    """``zikade init`` on ``repo`` (every command but init and devnet needs a repo), with
    an empty bootstrap list unless ``extra`` names peers: never the public default list."""
    empty = () if "--bootstrap" in extra else ("--no-bootstrap",)
    return zikade("init", "--repo", str(repo), *empty, *extra).ok()


def start_daemon(repo: Path, *extra: str) -> DaemonChild:
    """``zikade init`` (unless done) and ``zikade daemon`` on loopback with free ports.

    Returns once the daemon is ready. Like ``ipfs daemon``, the daemon refuses a
    directory without a repo, so the repo is made first, explicitly.
    """
    if not (repo / "config").is_file():
        init_repo(repo)
    cfg = load_config(repo)
    if "--mode" not in extra and cfg.mode == "auto":  # auto stays a client on loopback
        save_config(repo, replace(cfg, mode="server"))
    args = ["daemon", "--repo", str(repo), "--listen", "/ip4/127.0.0.1/tcp/0"]
    if "--api" not in extra:
        args += ["--api", "127.0.0.1:0"]
    child = spawn([*args, *extra], repo, DaemonChild)
    assert isinstance(child, DaemonChild)
    try:
        child.peer_id = child.wait_line("peer identity: ").split()[-1]
        child.swarm_addr = child.wait_line("Swarm listening on ").split()[-1]
        child.api_addr = child.wait_line("RPC API server listening on ").split()[-1]
        child.wait_line("Daemon is ready")
    except BaseException:
        child.stop(signal.SIGKILL)
        raise
    return child


class Daemons:
    """Starts daemons for a test and stops every one of them at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.children: list[Child] = []

    def start(self, name: str, *extra: str) -> DaemonChild:
        """A daemon on repo ``<base>/<name>``."""
        child = start_daemon(self.base / name, *extra)
        self.children.append(child)
        return child

    def spawn(self, args: list[str], repo: Path) -> Child:
        """Any long-running zikade child (devnet), stopped at teardown."""
        child = spawn(args, repo)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        """SIGTERM each child, kill stragglers."""
        for child in self.children:
            child.stop()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Function-scoped daemon starter."""
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.stop_all()


@dataclass
class Net:
    """Two daemons: ``a`` the seed, ``b`` joined through it."""

    a: DaemonChild
    b: DaemonChild


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """A seed daemon and a second daemon bootstrapped from it, shared by a module."""
    d = Daemons(tmp_path_factory.mktemp("net"))
    try:
        a = d.start("a")
        b = d.start("b", "--bootstrap", a.swarm_addr)
        # wait (bounded) until the seed's table holds b
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            res = zikade("routing-table", "--json", repo=a.repo)
            if b.peer_id in res.out:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("b never entered a's routing table")
        yield Net(a, b)
    finally:
        d.stop_all()


def free_port() -> int:
    """A port nothing listens on right now (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An initialised repo (``zikade init``): commands other than init refuse to run without."""
    path = tmp_path / "repo"
    init_repo(path)
    return path


@pytest.fixture
def zikade_run() -> object:
    """The :func:`zikade` runner (fixtures are how test modules reach these helpers)."""
    return zikade


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return free_port()
