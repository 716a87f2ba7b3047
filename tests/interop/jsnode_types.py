"""Values, result shapes and errors of the js-libp2p harness (see jsnode.py).

Kept apart so the process driver in jsnode.py stays one idea: the JSON results of
jsnode.mjs are described here as TypedDicts (field names as js sends them).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


class JsNodeError(Exception):
    """Base class for harness failures."""


class JsNodeStartError(JsNodeError):
    """The js process did not come up (no ready line in time, or it exited)."""


class JsNodeExitedError(JsNodeError):
    """The js process went away while commands were pending or being sent."""


class JsCommandError(JsNodeError):
    """A command failed inside the js node; ``name`` is the js error class name."""

    def __init__(self, cmd: str, name: str, message: str) -> None:
        super().__init__(f"{cmd}: {name}: {message}")
        self.cmd = cmd
        self.name = name
        self.message = message


@dataclass(frozen=True, slots=True)
class JsNodeOptions:
    """How to build the js node (mirrors the option object documented in jsnode.mjs)."""

    dht: bool = True
    kad_protocol: str = "/ipfs/kad/1.0.0"
    client_mode: bool = False
    private_key: bytes | None = None
    """Protobuf-encoded private key (e.g. :attr:`JsKeyPair.private_key`); None = fresh Ed25519."""
    user_agent: str | None = None
    monitor: bool = True
    """js-libp2p's connection monitor pings every connection (default every 10 s) and
    aborts connections whose ping fails."""
    monitor_interval_ms: int | None = None
    kad: Mapping[str, int | bool | str] = field(default_factory=dict)
    """Extra ``KadDHTInit`` fields, e.g. ``{"kBucketSize": 20}``."""
    key_type: str | None = None
    """Identity of a fresh key: ``"Ed25519"`` (default), ``"secp256k1"``, ``"RSA"`` (2048
    bits) or ``"ECDSA"`` (P-256); ignored with :attr:`private_key`."""
    autonat: Mapping[str, int | bool | str] | None = None
    """Run @libp2p/autonat (AutoNAT v1 client and server) with these ``AutoNATServiceInit``
    fields (``{}``: its defaults); ``None``: no AutoNAT."""
    autonat_v2: Mapping[str, int | bool | str] | None = None
    """Run @libp2p/autonat-v2 (client and server) with these fields; ``None``: not."""
    loopback_public: bool = False
    """Treat 127.0.0.0/8 as public in js-libp2p (loopback_public_hooks.mjs): the js side of
    ``--public-net 127.0.0.0/8`` for AutoNAT on a loopback network (docs/autonat.md)."""
    transports: tuple[str, ...] = ("tcp",)
    """``"tcp"`` and/or ``"quic"`` (@chainsafe/libp2p-quic), each listening on 127.0.0.1."""

    def to_json(self) -> str:
        """The JSON object jsnode.mjs reads from argv[2]."""
        opts: dict[str, Any] = {
            "dht": self.dht,
            "kadProtocol": self.kad_protocol,
            "clientMode": self.client_mode,
            "monitor": self.monitor,
            "kad": dict(self.kad),
        }
        if self.private_key is not None:
            opts["privateKey"] = base64.b64encode(self.private_key).decode()
        if self.user_agent is not None:
            opts["userAgent"] = self.user_agent
        if self.monitor_interval_ms is not None:
            opts["monitorIntervalMs"] = self.monitor_interval_ms
        if self.key_type is not None:
            opts["keyType"] = self.key_type
        if self.autonat is not None:
            opts["autonat"] = dict(self.autonat)
        if self.autonat_v2 is not None:
            opts["autonatV2"] = dict(self.autonat_v2)
        if self.loopback_public:
            opts["loopbackPublic"] = True
        if self.transports != ("tcp",):
            opts["transports"] = list(self.transports)
        return json.dumps(opts)


@dataclass(frozen=True, slots=True)
class JsKeyPair:
    """A fresh Ed25519 identity made by js-libp2p, to build records without our own crypto."""

    peer_id: str
    multihash: bytes
    public_key: bytes
    """PublicKey protobuf: the value of a valid ``/pk/`` record."""
    private_key: bytes
    """PrivateKey protobuf: usable as :attr:`JsNodeOptions.private_key`."""

    @property
    def pk_record_key(self) -> bytes:
        """``/pk/`` ‖ peer id multihash: the DHT key whose valid value is :attr:`public_key`."""
        return b"/pk/" + self.multihash


@dataclass(frozen=True, slots=True)
class JsValue:
    """A record found by ``getValue``: the best value and where it came from."""

    value: bytes
    from_peer: str
    peers_with_record: tuple[str, ...]


class StreamInfo(TypedDict):
    """One stream of a js connection."""

    id: str
    protocol: str | None
    direction: str
    status: str


class ConnectionInfo(TypedDict):
    """One js connection (``connections``/``dial``)."""

    id: str
    peer: str
    remoteAddr: str
    direction: str
    status: str
    multiplexer: str | None
    encryption: str | None
    rtt: float | None
    openedAt: float | None
    streamCount: int
    streams: list[StreamInfo]


class PeerAddrs(TypedDict):
    """A peer id with multiaddrs (``peers``, ``getClosestPeers``, ``findPeer``)."""

    id: str
    addrs: list[str]


# A findPeer/findProviders answer; "from" (a Python keyword) is the peer that told us.
FoundPeer = TypedDict("FoundPeer", {"id": str, "addrs": list[str], "from": str})


class PeerStoreEntry(TypedDict):
    """What the js peer store knows about a peer (identify results included)."""

    id: str
    protocols: list[str]
    addrs: list[str]
    agentVersion: str | None
    protocolVersion: str | None
    tags: list[str]


class ProvideResult(TypedDict):
    """``provide``: peers that were sent ADD_PROVIDER, and per-peer errors."""

    cid: str
    sentTo: list[str]
    errors: list[str]


class PutResult(TypedDict):
    """``putValue``: peers that echoed the PUT_VALUE, and per-peer errors."""

    storedAt: list[str]
    errors: list[str]


class RoutingV1Record(TypedDict):
    """A peer record from the Delegated Routing V1 HTTP client (ID as a peer id string)."""

    schema: str
    id: str
    addrs: list[str]
    protocols: list[str]
