"""The Node bootstraps through name-based entries (issue 10): a bare ``/dnsaddr/<name>``
stands for every peer its records name, ``/dnsaddr/<name>/p2p/<id>`` for that one peer,
``/dns4`` is resolved, and a name that does not resolve is that entry's one-line failure.
The resolver's home is p2p (dns.py); this drives it through ``Node.bootstrap``
(dht/seeds.py), against a DNS stub on 127.0.0.1 and our own nodes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zikade_py.core.event import FinishReason
from zikade_py.dht import Node, NodeConfig
from zikade_py.dht.seeds import resolve_seeds
from zikade_py.p2p.dns import DNS_RESOLVER_ENV, DnsResolver
from zikade_py.p2p.multiaddr import Multiaddr

from .dns_stub import DnsStub

pytestmark = pytest.mark.timeout(60)


def loopback(**kwargs: object) -> NodeConfig:
    return NodeConfig(
        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        mode="server",
        republish=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[DnsStub]:
    with DnsStub() as s:
        monkeypatch.setenv(DNS_RESOLVER_ENV, s.server)
        yield s


async def test_bootstrap_through_a_bare_dnsaddr_name(stub: DnsStub) -> None:
    async with Node(loopback(bootstrap=[])) as a, Node(loopback(bootstrap=[])) as b:
        pa = str(a.listen_addrs[0].with_peer_id(a.peer_id))
        port_b = b.listen_addrs[0].tcp_endpoint()[1]  # type: ignore[index]
        stub.add_txt(
            "_dnsaddr.seeds.test", f"dnsaddr={pa}", f"dnsaddr=/dnsaddr/b.seeds.test/p2p/{b.peer_id}"
        )
        stub.add_txt(
            "_dnsaddr.b.seeds.test", f"dnsaddr=/dns4/b.host.test/tcp/{port_b}/p2p/{b.peer_id}"
        )
        stub.add_a("b.host.test", "127.0.0.1")
        async with Node(loopback(bootstrap=["/dnsaddr/seeds.test", "/dnsaddr/gone.test"])) as c:
            result = await c.bootstrap(timeout=20)
            assert set(result.connected) == {a.peer_id, b.peer_id}
            assert result.failed == [
                (
                    "/dnsaddr/gone.test",
                    f"resolving _dnsaddr.gone.test: no such domain ({stub.server})",
                )
            ]
            assert result.reason is FinishReason.DONE
            # the address book keeps the resolved IP addresses, not the names
            assert all(not str(x).startswith("/dns") for x in c.host.peerstore.addrs(b.peer_id))


async def test_seed_entries_resolve_per_peer(stub: DnsStub) -> None:
    resolver = DnsResolver()
    stub.add_txt(
        "_dnsaddr.two.test",
        "dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
        "dnsaddr=/ip4/127.0.0.2/tcp/1/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
        "dnsaddr=/ip4/127.0.0.3/tcp/3",  # names no peer: nothing to dial it as
    )
    seeds, failures = await resolve_seeds(resolver, ["/dnsaddr/two.test"], timeout=5)
    assert failures == []
    ((peer, addrs, text),) = seeds
    assert str(peer) == "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
    assert sorted(map(str, addrs)) == ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.2/tcp/1"]
    assert text == "/dnsaddr/two.test"
    stub.add_txt("_dnsaddr.none.test", "dnsaddr=/ip4/127.0.0.3/tcp/3")
    seeds, failures = await resolve_seeds(
        resolver, [Multiaddr.parse("/dnsaddr/none.test")], timeout=5
    )
    assert seeds == [] and failures == [
        ("/dnsaddr/none.test", "the name resolved to no peer address")
    ]
    with pytest.raises(ValueError, match="no /p2p/"):
        await resolve_seeds(resolver, ["/ip4/127.0.0.1/tcp/1"], timeout=5)
