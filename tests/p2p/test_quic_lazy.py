"""The QUIC transport is made at the first QUIC listen or dial: a process that only
dials TCP never imports aioquic and its TLS stack (~0.1 s of CPU per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)


def test_importing_the_node_leaves_aioquic_out() -> None:
    code = (
        "import sys\n"
        "import zikade_py.dht.node, zikade_py.p2p.host\n"
        "heavy = ('aioquic', 'service_identity')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_a_tcp_host_makes_no_quic_transport_and_a_quic_listen_makes_one() -> None:
    tcp = Host(PrivateKey.generate(), HostConfig())
    await tcp.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        assert tcp._quic_transport is None
    finally:
        await tcp.close()
    quic = Host(PrivateKey.generate(), HostConfig())
    await quic.start([Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")])
    try:
        assert quic._quic_transport is not None
        assert any(a.quic_endpoint() is not None for a in quic.listen_addrs)
    finally:
        await quic.close()
