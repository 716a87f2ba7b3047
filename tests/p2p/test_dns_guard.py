"""The dial guard (issue 10): under ``ZIKADE_DIAL_ALLOW`` a host dials nothing outside it.

The suite itself runs under the guard (tests/conftest.py sets ``127.0.0.0/8``), so
these tests also check that the suite's own setting is in force.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.dial_guard import (
    DIAL_ALLOW_ENV,
    REFUSED_LOG_ENV,
    DialGuard,
    DialRefusedError,
)
from zikade_py.p2p.host import DialError, Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

pytestmark = pytest.mark.timeout(60)

TEST_NET = "192.0.2.1"
"""RFC 5737 documentation address: never routed, and never dialed here anyway."""


def test_guard_parses_a_cidr_list() -> None:
    guard = DialGuard.parse("127.0.0.0/8, ::1/128")
    assert guard.active
    assert guard.allows("127.0.0.1") and guard.allows("127.255.0.3") and guard.allows("::1")
    assert guard.allows("::ffff:127.0.0.1")  # v4-mapped loopback is loopback
    assert not guard.allows(TEST_NET)
    assert not guard.allows("::2")
    assert not guard.allows("localhost")  # a name is never an allowed destination
    with pytest.raises(ValueError, match="not a CIDR network"):
        DialGuard.parse("127.0.0.0/8,nonsense")
    with pytest.raises(ValueError, match="names no network"):
        DialGuard.parse(" , ")


def test_guard_is_off_without_the_variable() -> None:
    guard = DialGuard.from_env({})
    assert not guard.active and guard.allows(TEST_NET)
    assert DialGuard.from_env({DIAL_ALLOW_ENV: "10.0.0.0/8"}).allows("10.1.2.3")


def test_the_suite_runs_under_the_guard() -> None:
    """tests/conftest.py sets the guard for this process and every child it spawns."""
    assert DialGuard.from_env().allows("127.0.0.1")
    assert not DialGuard.from_env().allows(TEST_NET)
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.environ['{DIAL_ALLOW_ENV}'])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "127.0.0.0/8" in child.stdout


@pytest.mark.dial_refusal
async def test_host_refuses_to_dial_outside_the_allowlist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One clear error, and not even a TCP connect is attempted."""
    attempts: list[object] = []

    async def no_connect(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("the guard let a connect through")

    monkeypatch.setattr(asyncio, "open_connection", no_connect)
    log = Path(os.environ[REFUSED_LOG_ENV])
    before = log.stat().st_size if log.exists() else 0
    host = Host(PrivateKey.generate())
    await host.start([])
    try:
        peer = PeerID.from_public_key(PrivateKey.generate().public_key)
        with pytest.raises(DialError) as info:
            await host.connect(peer, [Multiaddr.parse(f"/ip4/{TEST_NET}/tcp/4001")], timeout=5)
    finally:
        await host.close()
    assert attempts == []
    ((_addr, cause),) = info.value.errors
    assert isinstance(cause, DialRefusedError)
    message = str(info.value)
    assert "\n" not in message
    assert f"refusing to dial {TEST_NET}:4001: outside {DIAL_ALLOW_ENV}=127.0.0.0/8" in message
    with log.open() as f:
        f.seek(before)
        assert f"refusing to dial {TEST_NET}:4001" in f.read()
