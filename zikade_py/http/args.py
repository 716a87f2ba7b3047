"""Parsing of command arguments shared by the CLI and the daemon's RPC API.

Both faces must reject the same bad input with the same one-line message, so
peer ids, CIDs, record keys, multiaddrs and Kubo-style durations (``30s``,
``1m30s``, ``500ms``) are parsed here once. Every failure is an
:class:`ArgumentError` (local misuse, HTTP 400 on the RPC API).
"""

from __future__ import annotations

from multiformats import CID

from zikade_py.http.durations import format_duration, parse_duration
from zikade_py.http.errors import ArgumentError
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

__all__ = [
    "format_duration",
    "parse_cid",
    "parse_duration",
    "parse_lookup_key",
    "parse_multiaddr",
    "parse_peer_id",
    "parse_peer_or_addr",
    "parse_record_key",
]


def parse_peer_id(text: str) -> PeerID:
    """A peer id in base58 (``12D3Koo…``, ``Qm…``) or CIDv1 form."""
    try:
        return PeerID.from_string(text.strip())
    except (InvalidPeerIDError, ValueError, KeyError) as exc:
        raise ArgumentError(f"invalid peer ID {text!r}: {_reason(exc)}") from None


def parse_cid(text: str) -> CID:
    """A CID (v0 ``Qm…`` or v1 multibase)."""
    try:
        return CID.decode(text.strip())
    except Exception as exc:  # multiformats raises many unrelated types on bad input
        raise ArgumentError(f"invalid CID {text!r}: {_reason(exc)}") from None


def parse_multiaddr(text: str, *, need_peer: bool = False) -> Multiaddr:
    """A multiaddr; with ``need_peer`` it must end in ``/p2p/<peer id>``."""
    if not text.strip().startswith("/"):
        shape = "/ip4/<host>/tcp/<port>" + ("/p2p/<peer-id>" if need_peer else "")
        raise ArgumentError(f"invalid multiaddr {text!r}: expected {shape}")
    try:
        addr = Multiaddr.parse(text.strip())
    except (InvalidMultiaddrError, ValueError) as exc:
        raise ArgumentError(f"invalid multiaddr {text!r}: {_reason(exc)}") from None
    if need_peer and addr.peer_id() is None:
        raise ArgumentError(f"multiaddr {text!r} has no /p2p/<peer-id> component")
    return addr


def parse_peer_or_addr(text: str) -> PeerID | Multiaddr:
    """What ``ping`` takes: a peer id or a multiaddr with ``/p2p/``."""
    if text.startswith("/"):
        return parse_multiaddr(text, need_peer=True)
    return parse_peer_id(text)


def parse_lookup_key(text: str) -> bytes:
    """A ``closest-peers`` key: a peer id or a CID, as the multihash bytes looked up."""
    try:
        return parse_peer_id(text).multihash
    except ArgumentError:
        pass
    try:
        return bytes(parse_cid(text).digest)
    except ArgumentError:
        raise ArgumentError(f"invalid key {text!r}: not a peer ID or a CID") from None


def parse_record_key(text: str) -> bytes:
    """A value-record key ``/<namespace>/<name>`` as its routing key bytes.

    ``/ipns/`` and ``/pk/`` names are peer ids (or libp2p-key CIDs) and become
    ``/<ns>/<binary multihash>`` as in go-libp2p-kad-dht; other namespaces keep
    the name's UTF-8 bytes.
    """
    parts = text.split("/", 2)
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        raise ArgumentError(
            f"invalid key {text!r}: expected /<namespace>/<name>, e.g. /ipns/<peer-id>"
        )
    namespace, name = parts[1], parts[2]
    if namespace in ("ipns", "pk"):
        try:
            peer = parse_peer_id(name)
        except ArgumentError:
            raise ArgumentError(f"invalid key {text!r}: {name!r} is not a peer ID") from None
        return f"/{namespace}/".encode() + peer.multihash
    return text.encode()


def _reason(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument: show the message, not a quoted string
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__
