"""Joining through ``/dnsaddr/bootstrap.libp2p.io`` (issue 10, acceptance 1), all on loopback.

A DNS server on 127.0.0.1 (tests/p2p/dns_stub.py) publishes ``_dnsaddr.bootstrap.libp2p.io``
TXT records that lead, through a nested ``/dnsaddr`` level, to a real js-libp2p node;
``ZIKADE_DNS_RESOLVER`` points our processes at it, so no public resolver is ever asked
(and the suite's dial guard would refuse one). With it, ``zikade init --bootstrap
/dnsaddr/bootstrap.libp2p.io`` followed by ``zikade find-peer`` works, and so does a
daemon's bootstrap; an entry with another peer's id under a ``/p2p/``-named level is
ignored; a resolver that never answers gives one error line within the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from interop.jsnode import JS_UNAVAILABLE_REASON, JsNode, js_available
from p2p.dns_stub import DnsStub

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not js_available(), reason=JS_UNAVAILABLE_REASON),
]

NAME = "bootstrap.libp2p.io"
NESTED = "ams.bootstrap.libp2p.io"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _bare(addr: str) -> str:
    return addr.split("/p2p/")[0]


@contextlib.asynccontextmanager
async def _js_pair() -> AsyncIterator[tuple[JsNode, JsNode]]:
    """Two js-libp2p DHT servers that know each other: ``seed`` and ``target``."""
    async with JsNode() as seed, JsNode() as target:
        await target.bootstrap([f"{_bare(seed.addrs[0])}/p2p/{seed.peer_id}"], timeout_ms=20_000)
        await seed.wait_routing_table(1)
        yield seed, target


def _publish(stub: DnsStub, seed: JsNode, wrong: PeerID) -> None:
    """The top level names the nested one; the nested one holds the seed, and an entry of
    another peer (``wrong``) that the ``/p2p/<seed>`` filter must drop."""
    seed_addr = f"{_bare(seed.addrs[0])}/p2p/{seed.peer_id}"
    stub.add_txt(f"_dnsaddr.{NAME}", f"dnsaddr=/dnsaddr/{NESTED}/p2p/{seed.peer_id}")
    stub.add_txt(
        f"_dnsaddr.{NESTED}",
        f"dnsaddr={seed_addr}",
        f"dnsaddr=/ip4/127.0.0.1/tcp/{_closed_port()}/p2p/{wrong}",
        "dnsaddr=/this/is/not/a/multiaddr",
    )


async def test_init_with_dnsaddr_then_find_peer_and_daemon_bootstrap(
    daemons, zikade_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = PeerID.from_public_key(PrivateKey.generate().public_key)
    with DnsStub() as stub:
        monkeypatch.setenv("ZIKADE_DNS_RESOLVER", stub.server)  # inherited by every child
        async with _js_pair() as (seed, target):
            _publish(stub, seed, wrong)

            repo = tmp_path / "cli"
            made = await asyncio.to_thread(
                zikade_run, "init", "--bootstrap", f"/dnsaddr/{NAME}", repo=repo
            )
            made.ok()
            listed = await asyncio.to_thread(zikade_run, "bootstrap", "list", repo=repo)
            assert listed.ok().lines == [f"/dnsaddr/{NAME}"]

            found = await asyncio.to_thread(
                zikade_run, "find-peer", target.peer_id, "-v", "--timeout", "60s", repo=repo
            )
            found.ok()
            assert _bare(target.addrs[0]) in found.lines
            assert f"bootstrap: resolving {NAME}" in found.err
            assert f"connected to 1 bootstrap peers: {seed.peer_id}" in found.err
            assert str(wrong) not in found.err  # the other peer's entry was never dialed
            assert (f"_dnsaddr.{NESTED}", "TXT") in stub.queries  # the nested level was followed

            # a daemon on a new repo made the same way bootstraps through the /dnsaddr entry
            made = await asyncio.to_thread(
                zikade_run, "init", "--bootstrap", f"/dnsaddr/{NAME}", repo=tmp_path / "daemon"
            )
            made.ok()
            daemon = await asyncio.to_thread(daemons.start, "daemon")  # keeps that config
            report = await asyncio.to_thread(_wait_err_line, daemon, "bootstrap: ")
            assert report.startswith("bootstrap: reached 1 of 1 peers"), daemon.err_lines
            table = await asyncio.to_thread(zikade_run, "routing-table", "--json", repo=daemon.repo)
            ids = {p["ID"] for b in json.loads(table.ok().out)["Buckets"] for p in b["Peers"]}
            assert seed.peer_id in ids
            assert str(wrong) not in "\n".join(daemon.err_lines)
            # and answers find-peer for the js node through the peer it joined by
            via_daemon = await asyncio.to_thread(
                zikade_run, "find-peer", target.peer_id, "--timeout", "60s", repo=daemon.repo
            )
            assert _bare(target.addrs[0]) in via_daemon.ok().lines


def _wait_err_line(child: object, prefix: str, timeout: float = 60.0) -> str:
    """The first stderr line of a daemon child starting with ``prefix`` (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(child.err_lines):  # type: ignore[attr-defined]
            if line.startswith(prefix):
                return str(line)
        time.sleep(0.1)
    raise AssertionError(f"no stderr line starting {prefix!r}: {child.err_lines}")  # type: ignore[attr-defined]


def test_a_resolver_that_does_not_answer_is_one_line(
    zikade_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DnsStub(silent=True) as silent:
        monkeypatch.setenv("ZIKADE_DNS_RESOLVER", silent.server)
        repo = tmp_path / "cli"
        zikade_run("init", "--bootstrap", f"/dnsaddr/{NAME}", repo=repo).ok()
        peer = PeerID.from_public_key(PrivateKey.generate().public_key)
        res = zikade_run("find-peer", str(peer), "--timeout", "6s", repo=repo, timeout=60)
        line = res.one_error("could not reach any bootstrap peer", f"/dnsaddr/{NAME}")
        assert f"no answer from {silent.server}" in line
        assert silent.queries  # it was asked, and only it
