"""What the fuzz targets share: one target, several entry points (``cases`` and
``dispatch``), and input strategies used by more than one decoder."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from p2p.test_noise_fuzz import KEY

from zikade_py.p2p.crypto import KeyType
from zikade_py.p2p.peer_id import PeerID


def cases(**modes: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """``(mode, input)`` pairs: one target, several entry points of the same decoder."""
    return st.one_of(*(s.map(functools.partial(_tagged, name)) for name, s in modes.items()))


def _tagged(name: str, value: Any) -> tuple[str, Any]:
    return name, value


def dispatch(handlers: dict[str, Callable[..., Any]]) -> Callable[[tuple[str, Any]], Any]:
    """The run function of a ``cases`` target: the mode's handler, on the input's parts."""

    def run(case: tuple[str, Any]) -> Any:
        mode, value = case
        return handlers[mode](*value) if isinstance(value, tuple) else handlers[mode](value)

    return run


# --- inputs more than one decoder takes ------------------------------------------------------

KEY_BYTES = st.one_of(
    st.binary(max_size=80),
    st.just(KEY.public_key.to_protobuf()),
    st.tuples(st.sampled_from(list(KeyType)), st.binary(max_size=120)).map(
        lambda t: bytes((0x08, t[0], 0x12, len(t[1]))) + t[1]
    ),
)
"""Public-key protobufs: random, a real Ed25519 key, each key type with random data."""

MA_WORDS = st.sampled_from(
    [
        "ip4",
        "ip6",
        "tcp",
        "udp",
        "dns",
        "dns4",
        "dns6",
        "dnsaddr",
        "p2p",
        "ipfs",
        "quic-v1",
        "webtransport",
        "certhash",
        "p2p-circuit",
        "ws",
        "wss",
        "127.0.0.1",
        "::1",
        "4001",
        "0",
    ]
)
"""Multiaddr protocol names and values, for text that looks like an address."""

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ID_TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=B58, max_size=60),
    st.builds(
        lambda p, s: p + s,
        st.sampled_from(["1", "Qm", "12D3KooW", "b", "B", "k", "K", "z", "f", "m", "u", "bafz"]),
        st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz=", max_size=70),
    ),
)
"""Peer-id-like text: any, base58, or a multibase prefix with base32/36-ish text."""

PEER = PeerID.from_public_key(KEY.public_key)
"""The identity of the test key the Noise fuzz tests use (identify checks keys against it)."""
