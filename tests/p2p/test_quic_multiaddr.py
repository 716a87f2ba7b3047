"""``/quic-v1`` addresses: building them, recognising the dialable form, refusing the rest."""

from __future__ import annotations

import pytest

from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr

PEER = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"


def test_from_quic_round_trips_through_text_and_bytes() -> None:
    addr = Multiaddr.from_quic("127.0.0.1", 4001)
    assert str(addr) == "/ip4/127.0.0.1/udp/4001/quic-v1"
    # 04 <ip4> 0111 (udp, 273) <port> cd03 (quic-v1, 461, no value)
    assert addr.to_bytes().hex() == "047f00000191020fa1cd03"
    assert Multiaddr.from_bytes(addr.to_bytes()) == addr
    assert str(Multiaddr.from_quic("::1", 9)) == "/ip6/::1/udp/9/quic-v1"


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("/ip4/127.0.0.1/udp/4001/quic-v1", ("127.0.0.1", 4001)),
        (f"/ip6/::1/udp/5/quic-v1/p2p/{PEER}", ("::1", 5)),
        ("/ip4/1.2.3.4/udp/5/quic", None),  # draft-29: not spoken
        ("/ip4/1.2.3.4/tcp/5", None),
        ("/dns4/example.com/udp/5/quic-v1", None),  # resolve first
        ("/ip4/1.2.3.4/udp/5/quic-v1/webtransport", None),
    ],
)
def test_quic_endpoint(text: str, endpoint: tuple[str, int] | None) -> None:
    assert Multiaddr.parse(text).quic_endpoint() == endpoint


def test_quic_address_is_not_a_tcp_endpoint() -> None:
    assert Multiaddr.from_quic("127.0.0.1", 1).tcp_endpoint() is None


def test_from_quic_refuses_bad_ports_and_names() -> None:
    with pytest.raises(InvalidMultiaddrError):
        Multiaddr.from_quic("127.0.0.1", 70000)
    with pytest.raises(ValueError):
        Multiaddr.from_quic("example.com", 1)
