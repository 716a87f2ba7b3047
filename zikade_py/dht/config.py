"""The Node's configuration, its result types and its errors.

Kept apart from :mod:`.node` so the CLI, the HTTP API and tests can build and
inspect configurations and results without importing the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.core.event import FinishReason
from zikade_py.core.query import QueryStats
from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.limits import StoreLimits
from zikade_py.p2p.autonat_status import AutoNATConfig
from zikade_py.p2p.bootstrap_peers import DEFAULT_BOOTSTRAP_PEERS
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import HostConfig
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

Mode = Literal["auto", "server", "client"]
"""Server: serve /ipfs/kad/1.0.0 and advertise it. Client: query only (WIRE.md §8.5).
Auto (go's default): a client until AutoNAT finds us publicly reachable, then a server,
and back to a client when we are not any more (docs/autonat.md)."""

IDENTITY_FILENAME = "identity.key"
"""The identity key file inside the repo directory."""

DATASTORE_FILENAME = "datastore.sqlite"
"""The SQLite datastore inside the repo directory."""


@dataclass
class NodeConfig:
    """Everything a :class:`~zikade_py.dht.node.Node` is built from; the defaults make a
    node in auto mode (a client until AutoNAT finds it publicly reachable) on an ephemeral
    loopback port with in-memory stores and a fresh key, which bootstraps from the public
    network's peers when asked to."""

    listen_addrs: list[str | Multiaddr] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    """Where to listen (``/ip4|ip6/<ip>/tcp/<port>``; port 0 picks one)."""
    bootstrap: list[str | Multiaddr] = field(default_factory=lambda: list(DEFAULT_BOOTSTRAP_PEERS))
    """Peers :meth:`Node.bootstrap` joins through: multiaddrs ending in ``/p2p/<peer id>``, or
    ``/dnsaddr/<name>`` for every peer its TXT records name. Default: the public network's
    bootstrap peers (Kubo's list, p2p/bootstrap_peers.py); ``[]`` for a private network
    (tests and loopback networks always pass their own list)."""
    mode: Mode = "auto"
    """``auto`` (default): client until AutoNAT confirms we are reachable; ``server`` and
    ``client`` force the mode. A loopback network is reachable only when its host config
    says so (``HostConfig(address_policy=AddressPolicy(public_nets=("127.0.0.0/8",)))``).
    """
    autonat: AutoNATConfig = field(default_factory=AutoNATConfig)
    """AutoNAT probe schedule and server limits (go's defaults)."""
    repo: str | Path | None = None
    """``None``: in-memory stores and a fresh key; else ``<repo>/identity.key`` and
    ``<repo>/datastore.sqlite`` (records, providers and the routing table's peers)."""
    private_key: PrivateKey | None = None
    """Overrides the repo's key (and a fresh one when there is no repo)."""
    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    request_timeout: float = 10.0
    """Seconds one request may take (dial, write, read) when its event carries no deadline."""
    query_timeout: float = 60.0
    """Deadline of a call made with ``timeout=None``."""
    bootstrap_timeout: float = 30.0
    """Deadline of :meth:`Node.bootstrap` with ``timeout=None`` (dials and the self-lookup)."""
    host: HostConfig | None = None
    """The host's limits and timeouts (``None``: the defaults, which suit a public
    bootstrap node): connections, handshakes and streams per IP group, peer, connection
    and protocol, and the memory budget (``HostConfig.limits``, p2p/rcmgr.py)."""
    republish: bool = True
    """Re-announce the content we provide every 22 h (WIRE.md §8.8)."""
    reprovide: str = "sweep"
    """How provided content is re-announced: ``sweep`` (default, go-libp2p-kad-dht v0.35:
    region by region, one exploration per region, cost tracks the network's size; keys
    and schedule in the repo) or ``classic`` (one lookup per key, ``dht/republisher.py``).
    The cycle and its knobs are ``coordinator.sweep``."""
    reprovide_interval: float | None = None
    """Seconds between two announcements of a key (the sweep's cycle); ``None`` keeps
    ``coordinator.sweep.reprovide_interval`` (22 h)."""
    store_limits: StoreLimits = field(default_factory=StoreLimits)
    """What peers may make the provider and value stores keep (per key, per sender,
    in total); see :class:`~zikade_py.dht.stores.limits.StoreLimits` for go's figures."""
    gc_interval: float = 3600.0
    """Seconds between collections of expired provider and value records (go's
    provider manager: 1 h)."""
    gc_batch: int = 1000
    """Records deleted per store write during a collection: the writer commits between
    batches, so inbound records are never held up behind a long delete."""

    def validate(self) -> None:
        """Raise ``ValueError`` for settings no node can run with."""
        if self.reprovide not in ("sweep", "classic"):
            raise ValueError(f"reprovide must be 'sweep' or 'classic', not {self.reprovide!r}")
        if self.mode not in ("auto", "server", "client"):
            raise ValueError(f"mode must be 'auto', 'server' or 'client', not {self.mode!r}")
        self.autonat.validate()
        for name in ("request_timeout", "query_timeout", "bootstrap_timeout", "gc_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.gc_batch < 1:
            raise ValueError("gc_batch must be at least 1")
        self.store_limits.validate()
        if self.host is not None:
            self.host.limits.validate()
        if self.reprovide_interval is not None and self.reprovide_interval <= 0:
            raise ValueError("reprovide_interval must be positive")
        self.core_config().validate()

    def core_config(self) -> CoordinatorConfig:
        """``coordinator`` with ``reprovide_interval`` applied (what the node's core runs)."""
        if self.reprovide_interval is None:
            return self.coordinator
        sweep = replace(self.coordinator.sweep, reprovide_interval=self.reprovide_interval)
        return replace(self.coordinator, sweep=sweep)


class NotFoundError(LookupError):
    """The network was searched and the peer, value or record is not there."""


class NodeClosedError(RuntimeError):
    """The node is not running (not started yet, or closed): local misuse."""


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A FIND_NODE walk's outcome: the closest peers that answered, and why it ended.

    ``reason`` is ``TIMEOUT`` when the deadline cut the walk short; ``peers`` are
    then the partial results it had.
    """

    peers: list[PeerInfo]
    reason: FinishReason
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """A store to the closest peers (ADD_PROVIDER or PUT_VALUE): who took it, who failed."""

    reason: FinishReason
    contacted: list[PeerID]
    errors: list[tuple[PeerID, str]]

    @property
    def ok(self) -> bool:
        """Whether at least one peer took the record."""
        return bool(self.contacted)


ProvideResult = BroadcastResult
"""What :meth:`Node.provide` returns."""

PutResult = BroadcastResult
"""What :meth:`Node.put_value` returns."""


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """How joining the network went; a timeout is reported here, not raised."""

    reason: FinishReason
    connected: list[PeerID]
    """Seed peers we reached."""
    failed: list[tuple[str, str]]
    """Seed addresses we could not reach, with the error."""
    routing_table_size: int
    stats: QueryStats | None = None


@dataclass(frozen=True, slots=True)
class RoutingEntry:
    """One routing-table entry as the API shows it (times are wall-clock seconds)."""

    peer: PeerInfo
    cpl: int
    added_at: float
    last_seen: float


__all__ = [
    "DATASTORE_FILENAME",
    "IDENTITY_FILENAME",
    "BootstrapResult",
    "BroadcastResult",
    "FinishReason",
    "LookupResult",
    "Mode",
    "NodeClosedError",
    "NodeConfig",
    "NotFoundError",
    "ProvideResult",
    "PutResult",
    "QueryStats",
    "RoutingEntry",
]
