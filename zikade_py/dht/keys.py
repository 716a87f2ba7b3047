"""What users type, turned into what the wire carries (WIRE.md §8.4, §8.8).

Users name content by CID, peers by their id string, records by
``/pk/<peer id>`` or ``/ipns/<name>``; the DHT works on multihashes and binary
keys. These helpers are the only place that translation happens, so the CLI,
the HTTP API and the Python API agree on it:

* providers rendezvous on the CID's **multihash**, never the CID bytes, so a
  CIDv0 and a CIDv1 of the same content meet (WIRE.md §10 pt 11);
* record keys are ``/<namespace>/<binary peer id>``; a text peer id or a CID of
  a ``libp2p-key`` after the namespace is converted to its binary form.
"""

from __future__ import annotations

from multiformats import CID

from zikade_py.blocks.cid_text import text_multihash
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

_RECORD_NAMESPACES = ("pk", "ipns")


def content_multihash(cid: str | bytes | CID) -> bytes:
    """The multihash of a CID given as text, as a ``multiformats.CID`` or as CID bytes.

    Raises ``ValueError`` for something that is not a CID.
    """
    try:
        if isinstance(cid, str):
            return text_multihash(cid)  # fast for the common forms (millions are provided)
        parsed = cid if isinstance(cid, CID) else CID.decode(cid)
    except Exception as exc:  # multiformats raises several unrelated error types
        raise ValueError(f"not a CID: {cid!r}: {exc}") from None
    return bytes(parsed.digest)


def lookup_key(key: bytes | str | PeerID) -> bytes:
    """The preimage a FIND_NODE walk carries.

    A :class:`PeerID` or a peer id string gives its multihash; another string is
    read as a CID (its multihash); bytes are used as they are.
    """
    if isinstance(key, PeerID):
        return key.multihash
    if isinstance(key, bytes):
        if not key:
            raise ValueError("an empty key cannot be looked up")
        return key
    try:
        return PeerID.from_string(key).multihash
    except InvalidPeerIDError:
        return content_multihash(key)


def parse_peer(peer: PeerID | str) -> PeerID:
    """A peer id from its object or text form (``ValueError`` otherwise)."""
    if isinstance(peer, PeerID):
        return peer
    return PeerID.from_string(peer)


def record_key(key: bytes | str) -> bytes:
    """The binary record key: bytes as given; text ``/pk/<id>`` or ``/ipns/<id>`` with the
    id in text form (base58 or CID) converted to the binary peer id; other text as UTF-8."""
    if isinstance(key, bytes):
        return key
    for namespace in _RECORD_NAMESPACES:
        prefix = f"/{namespace}/"
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            try:
                return prefix.encode() + PeerID.from_string(rest).multihash
            except InvalidPeerIDError:
                break
    return key.encode("utf-8")


def peer_multiaddr(addr: str | Multiaddr) -> tuple[PeerID, Multiaddr]:
    """``(peer id, address without /p2p)`` of a multiaddr that ends in ``/p2p/<id>``."""
    ma = addr if isinstance(addr, Multiaddr) else Multiaddr.parse(addr)
    peer = ma.peer_id()
    if peer is None:
        raise ValueError(f"{addr} does not name a peer (/p2p/<peer id> is missing)")
    return peer, ma.without_peer_id()


__all__ = ["content_multihash", "lookup_key", "parse_peer", "peer_multiaddr", "record_key"]
