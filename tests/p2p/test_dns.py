"""Name resolution for dialing (issue 10): /dnsaddr TXT records, /dns4|6, the resolver's
configuration, one-line failures, and hostile records. DNS is asked only of a stub
server on 127.0.0.1 (tests/p2p/dns_stub.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.dial_guard import DialGuard
from zikade_py.p2p.dns import (
    DNS_RESOLVER_ENV,
    DNSADDR_PREFIX,
    MAX_LOOKUPS,
    DnsError,
    DnsResolver,
    _parse_entry,
    needs_resolution,
    parse_server,
)
from zikade_py.p2p.host import DialError, Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .dns_stub import DnsStub

pytestmark = pytest.mark.timeout(60)

A = PeerID.from_public_key(PrivateKey.generate().public_key)
B = PeerID.from_public_key(PrivateKey.generate().public_key)


@pytest.fixture
def stub() -> Iterator[DnsStub]:
    with DnsStub() as s:
        yield s


@pytest.fixture
async def hosts(
    stub: DnsStub, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Host, Host]]:
    """A listening server host and a client host, both resolving names through ``stub``."""
    monkeypatch.setenv(DNS_RESOLVER_ENV, stub.server)
    server = Host(PrivateKey.generate())
    await server.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    client = Host(PrivateKey.generate())
    await client.start([])
    try:
        yield server, client
    finally:
        await client.close()
        await server.close()


def resolver(stub: DnsStub, **kwargs: float) -> DnsResolver:
    return DnsResolver(environ={DNS_RESOLVER_ENV: stub.server}, **kwargs)  # type: ignore[arg-type]


def texts(addrs: list[Multiaddr]) -> list[str]:
    return [str(a) for a in addrs]


def test_parse_server() -> None:
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("::1") == ("::1", 53)
    for bad in ("example.com:53", "127.0.0.1:0", "127.0.0.1:x", "[::1"):
        with pytest.raises(ValueError, match="invalid DNS resolver"):
            parse_server(bad)
    with pytest.raises(ValueError, match=DNS_RESOLVER_ENV):
        DnsResolver(environ={DNS_RESOLVER_ENV: "nonsense"})


async def test_ip_addresses_need_no_dns(stub: DnsStub) -> None:
    addr = Multiaddr.parse(f"/ip4/127.0.0.1/tcp/1/p2p/{A}")
    assert not needs_resolution(addr)
    assert await resolver(stub).resolve(addr) == [addr]
    assert stub.queries == []


async def test_dns4_and_dns_resolve_through_the_configured_server(stub: DnsStub) -> None:
    stub.add_a("node.test", "127.0.0.7", "127.0.0.8")
    r = resolver(stub)
    got = await r.resolve(Multiaddr.parse(f"/dns4/node.test/tcp/4001/p2p/{A}"))
    assert sorted(texts(got)) == [
        f"/ip4/127.0.0.7/tcp/4001/p2p/{A}",
        f"/ip4/127.0.0.8/tcp/4001/p2p/{A}",
    ]
    got = await r.resolve(Multiaddr.parse("/dns/node.test/tcp/1"))  # A and AAAA asked
    assert sorted(texts(got)) == ["/ip4/127.0.0.7/tcp/1", "/ip4/127.0.0.8/tcp/1"]
    assert ("node.test", "AAAA") in stub.queries


async def test_localhost_needs_no_query(stub: DnsStub) -> None:
    got = await resolver(stub).resolve(Multiaddr.parse("/dns4/localhost/tcp/9"))
    assert texts(got) == ["/ip4/127.0.0.1/tcp/9"]
    assert stub.queries == []


async def test_dnsaddr_nested_and_filtered_by_peer_id(stub: DnsStub) -> None:
    stub.add_txt(
        "_dnsaddr.boot.test",
        f"dnsaddr=/dnsaddr/nested.boot.test/p2p/{A}",
        f"dnsaddr=/ip4/127.0.0.2/tcp/2/p2p/{B}",
        f"dnsaddr=/ip4/127.0.0.9/tcp/9/p2p/{B}/p2p-circuit/p2p/{A}",  # ends in A: relayed
    )
    stub.add_txt(
        "_dnsaddr.nested.boot.test",
        f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}",
        f"dnsaddr=/dns4/a.boot.test/tcp/11/p2p/{A}",
        f"dnsaddr=/ip4/127.0.0.3/tcp/3/p2p/{B}",  # a wrong id under A's name: ignored
    )
    stub.add_a("a.boot.test", "127.0.0.11")
    r = resolver(stub)
    everything = texts(await r.resolve(Multiaddr.parse("/dnsaddr/boot.test")))
    assert f"/ip4/127.0.0.1/tcp/1/p2p/{A}" in everything
    assert f"/ip4/127.0.0.2/tcp/2/p2p/{B}" in everything
    only_a = texts(await r.resolve(Multiaddr.parse(f"/dnsaddr/boot.test/p2p/{A}")))
    assert sorted(only_a) == sorted(  # a TXT record set has no order
        [
            f"/ip4/127.0.0.1/tcp/1/p2p/{A}",
            f"/ip4/127.0.0.11/tcp/11/p2p/{A}",
            f"/ip4/127.0.0.9/tcp/9/p2p/{B}/p2p-circuit/p2p/{A}",
        ]
    )
    only_b = texts(await r.resolve(Multiaddr.parse(f"/dnsaddr/boot.test/p2p/{B}")))
    assert only_b == [f"/ip4/127.0.0.2/tcp/2/p2p/{B}"]


async def test_bad_txt_records_are_skipped(stub: DnsStub) -> None:
    stub.add_txt(
        "_dnsaddr.bad.test",
        "v=spf1 -all",
        "dnsaddr=",
        "dnsaddr=/garbage/1",
        "dnsaddr=/ip4/999.0.0.1/tcp/1",
        "dnsaddr=/p2p/notapeerid",
        "dnsaddr=" + "/ip4/127.0.0.1" * 20,  # > 255 bytes: two strings, joined
        "\u00e9t\u00e9=\u2603",
        f"dnsaddr=/ip4/127.0.0.5/tcp/5/p2p/{A}",
    )
    got = await resolver(stub).resolve(Multiaddr.parse("/dnsaddr/bad.test"))
    assert sorted(texts(got)) == sorted([f"/ip4/127.0.0.5/tcp/5/p2p/{A}", "/ip4/127.0.0.1" * 20])


async def test_records_that_loop_are_bounded(stub: DnsStub) -> None:
    stub.add_txt("_dnsaddr.loop.test", "dnsaddr=/dnsaddr/loop.test", "dnsaddr=/dnsaddr/loop.test")
    with pytest.raises(DnsError, match=r"loop\.test"):
        await resolver(stub).resolve(Multiaddr.parse("/dnsaddr/loop.test"))
    assert len(stub.queries) <= MAX_LOOKUPS


async def test_unknown_name_is_one_clear_line(stub: DnsStub) -> None:
    with pytest.raises(DnsError) as info:
        await resolver(stub).resolve(Multiaddr.parse("/dnsaddr/nowhere.test"))
    assert str(info.value) == f"resolving _dnsaddr.nowhere.test: no such domain ({stub.server})"
    stub.add_txt("_dnsaddr.empty.test", "nothing useful")
    assert await resolver(stub).resolve(Multiaddr.parse("/dnsaddr/empty.test")) == []


async def test_a_resolver_that_does_not_answer_times_out_in_one_line() -> None:
    with DnsStub(silent=True) as silent:
        r = DnsResolver(environ={DNS_RESOLVER_ENV: silent.server}, timeout=0.5)
        with pytest.raises(DnsError) as info:
            await r.resolve(Multiaddr.parse(f"/dnsaddr/boot.test/p2p/{A}"))
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"resolving _dnsaddr.boot.test: no answer from {silent.server}")
        assert silent.queries  # it was asked


async def test_env_overrides_the_config_and_suffixes_pick_servers(stub: DnsStub) -> None:
    config = {".": "127.0.0.1:1", "corp.test": stub.server}
    r = DnsResolver(config, environ={})
    assert r.server_for("x.corp.test") == parse_server(stub.server)
    assert r.server_for("corp.test.") == parse_server(stub.server)
    assert r.server_for("example.org") == ("127.0.0.1", 1)
    r = DnsResolver(config, environ={DNS_RESOLVER_ENV: "127.0.0.2:53"})
    assert r.server_for("x.corp.test") == ("127.0.0.2", 53)


@pytest.mark.dial_refusal
async def test_under_the_guard_dns_is_asked_only_of_an_allowed_resolver() -> None:
    guard = DialGuard.parse("127.0.0.0/8")
    system = DnsResolver(guard=guard, environ={})
    with pytest.raises(DnsError, match="through the system resolver under ZIKADE_DIAL_ALLOW"):
        await system.resolve(Multiaddr.parse("/dnsaddr/bootstrap.libp2p.io"))
    outside = DnsResolver(guard=guard, environ={DNS_RESOLVER_ENV: "192.0.2.53:53"})
    with pytest.raises(DnsError, match=r"refusing to ask DNS resolver 192\.0\.2\.53:53"):
        await outside.resolve(Multiaddr.parse("/dns4/example.org/tcp/1"))


async def test_host_dials_dnsaddr_and_dns4_addresses(
    stub: DnsStub, hosts: tuple[Host, Host]
) -> None:
    server, client = hosts
    port = server.listen_addrs[0].tcp_endpoint()[1]  # type: ignore[index]
    stub.add_txt(
        "_dnsaddr.boot.test",
        f"dnsaddr=/ip4/127.0.0.1/tcp/{port}/p2p/{A}",  # another peer's entry
        f"dnsaddr=/dns4/srv.boot.test/tcp/{port}/p2p/{server.peer_id}",
    )
    stub.add_a("srv.boot.test", "127.0.0.1")
    conn = await client.connect(
        server.peer_id, [Multiaddr.parse(f"/dnsaddr/boot.test/p2p/{server.peer_id}")]
    )
    assert conn.remote_peer == server.peer_id
    with pytest.raises(DialError, match="no dialable TCP address"):
        await client.connect(B, [Multiaddr.parse(f"/dnsaddr/boot.test/p2p/{B}")])
    with pytest.raises(DialError, match="no such domain"):
        await client.connect(B, [Multiaddr.parse(f"/dns4/nowhere.test/tcp/1/p2p/{B}")])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.builds(lambda s: DNSADDR_PREFIX + s, st.text(max_size=300)))
def test_any_txt_entry_parses_or_is_skipped(text: str) -> None:
    """A hostile TXT entry never raises: it is a multiaddr or it is ignored."""
    addr = _parse_entry(text)
    assert addr is None or isinstance(addr, Multiaddr)


async def test_a_known_peer_resolves_only_its_own_records(
    stub: DnsStub, hosts: tuple[Host, Host]
) -> None:
    """A peer whose book holds a bare ``/dnsaddr/<name>`` (``bootstrap add``) is dialed
    through its own entries only: other peers' nested names are never looked up."""
    server, client = hosts
    port = server.listen_addrs[0].tcp_endpoint()[1]  # type: ignore[index]
    stub.add_txt(
        "_dnsaddr.multi.test",
        f"dnsaddr=/dnsaddr/other.multi.test/p2p/{A}",
        f"dnsaddr=/dnsaddr/mine.multi.test/p2p/{server.peer_id}",
    )
    stub.add_txt("_dnsaddr.other.multi.test", f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}")
    stub.add_txt(
        "_dnsaddr.mine.multi.test", f"dnsaddr=/ip4/127.0.0.1/tcp/{port}/p2p/{server.peer_id}"
    )
    conn = await client.connect(server.peer_id, [Multiaddr.parse("/dnsaddr/multi.test")])
    assert conn.remote_peer == server.peer_id
    assert ("_dnsaddr.other.multi.test", "TXT") not in stub.queries


async def test_dns6_asks_for_aaaa_and_dns_takes_both(stub: DnsStub) -> None:
    stub.records[("v6.test", "AAAA")].append("::1")
    r = resolver(stub)
    got = await r.resolve(Multiaddr.parse(f"/dns6/v6.test/tcp/7/p2p/{A}"))
    assert texts(got) == [f"/ip6/::1/tcp/7/p2p/{A}"]
    assert stub.queries == [("v6.test", "AAAA")]
    stub.add_a("v6.test", "127.0.0.1")
    both = texts(await r.resolve(Multiaddr.parse("/dns/v6.test/tcp/7")))
    assert sorted(both) == ["/ip4/127.0.0.1/tcp/7", "/ip6/::1/tcp/7"]
    stub.records[("only6.test", "AAAA")].append("::1")
    with pytest.raises(DnsError, match=r"resolving only6\.test: no A records"):
        await r.resolve(Multiaddr.parse("/dns4/only6.test/tcp/7"))


def test_dnspython_is_imported_only_when_a_name_is_resolved() -> None:
    """A node, and every CLI command, starts without dnspython (~0.1 s of CPU to import
    in each process); it comes in with the first name resolved."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import zikade_py.dht.node, zikade_py.p2p.host, zikade_py.dht.messages\n"
        "print(sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
