"""The host's limits and timeouts (:class:`HostConfig`), and the same limits as lines
for an operator's ``--help`` (:func:`limits_help`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.quic.config import QuicConfig
from zikade_py.p2p.quic.dial_order import FALLBACK_DELAY
from zikade_py.p2p.rcmgr import ResourceLimits
from zikade_py.p2p.yamux import YamuxConfig


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Limits and timeouts of a host. The defaults suit a DHT server on the public network."""

    max_connections: int = 400
    """Open connections at most; beyond it idle unheld ones are trimmed, else new ones refused."""
    max_inbound_connections: int = 300
    """Of those, connections peers dialed (the rest stay free for our own dials)."""
    max_streams_per_connection: int = 1000
    """Yamux streams per connection, both directions together (js-yamux allows 1000 each)."""
    inbound_per_ip_rate: float = 5.0
    """New inbound connections per second from one IP address (token bucket rate)."""
    inbound_per_ip_burst: int = 20
    """... and the bucket size: that many may arrive at once."""
    max_pending_handshakes: int = 64
    """Inbound connections being upgraded at once; more are dropped until some finish."""
    dial_timeout: float = 10.0
    """Default budget of :meth:`Host.connect` (all addresses, TCP and upgrade)."""
    handshake_timeout: float = 10.0
    """mss + Noise + mss + yamux start on one connection."""
    negotiation_timeout: float = 10.0
    """multistream-select on one stream (inbound and outbound)."""
    idle_timeout: float = 60.0
    """An unheld connection without streams closes after this many seconds."""
    keepalive_interval: float | None = 30.0
    """Yamux pings that detect dead connections (go and js use 30 s)."""
    ping_timeout: float = 10.0
    """A keep-alive ping unanswered for this long closes the connection."""
    redundant_grace: float = 1.0
    """A second connection to a peer (both dialed at once) is closed once it has carried no
    stream for this long; both sides pick the same survivor (see ``Host._settle``)."""
    stream_close_timeout: float = 10.0
    """After a handler returns, its half-closed stream waits this long for the peer's FIN,
    then is reset (a stream the peer never closes would keep its connection busy)."""
    trim_grace: float = 2.0
    """A connection this young is not trimmed to make room for another (it has had no
    chance to open its first stream yet), unless its IP group is crowded and the newcomer's
    is less so (a flood arriving faster than this would shut every newcomer out)."""
    max_unacked_inbound: int = 256
    """Inbound streams waiting un-ACKed while the connection's stream slots are full
    (go-yamux's accept backlog); further ones are reset."""
    max_peerstore_peers: int = 20_000
    """Peers the address book keeps; beyond it the oldest without a connection go."""
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    """Which networks count as public or private (addrscope.py): what identify announces
    to whom and keeps from whom; loopback test networks name 127.0.0.0/8 here."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    quic: QuicConfig = field(default_factory=QuicConfig)
    """QUIC idle timeout, keep-alive, write high-water mark, accept backlog (quic/session.py)."""
    quic_fallback_delay: float = FALLBACK_DELAY
    """When a peer offers QUIC and TCP, TCP starts after QUIC had this long (quic/dial_order.py)."""
    """Per IP group, peer, connection, protocol and memory limits (rcmgr.py)."""
    dns_resolvers: Mapping[str, str] = field(default_factory=dict, hash=False)
    """DNS servers by domain suffix (``"."``: every name) as ``<ip>[:<port>]`` (Kubo's
    ``DNS.Resolvers``); empty: the system's. ``ZIKADE_DNS_RESOLVER`` overrides (p2p/dns.py)."""

    def yamux_config(self) -> YamuxConfig:
        """The yamux settings these limits imply."""
        return YamuxConfig(
            max_streams=self.max_streams_per_connection,
            max_unacked_inbound=self.max_unacked_inbound,
            keepalive_interval=self.keepalive_interval,
            ping_timeout=self.ping_timeout,
        )


def limits_help(config: HostConfig | None = None) -> str:
    """The connection, stream and memory limits of ``config`` (default: the defaults) as
    lines for a ``--help`` text (``zikade daemon --help``), so an operator sees them."""
    c = config or HostConfig()
    lim = c.limits
    mib = 1 << 20
    kad = ", ".join(f"{p} {n}" for p, n in lim.protocol_streams_per_connection)
    return "\n".join(
        [
            "\b",
            "Limits (node config: NodeConfig.host, HostConfig / ResourceLimits):",
            f"  connections: {c.max_connections} ({c.max_inbound_connections} inbound), "
            f"{lim.connections_per_peer} per peer, {lim.connections_per_ip_group} inbound "
            f"per IP group (IPv4 /{lim.ipv4_prefix}, IPv6 /{lim.ipv6_prefix})",
            f"  handshakes: {c.max_pending_handshakes} at once, "
            f"{lim.handshakes_per_ip_group} per IP group, {c.handshake_timeout:g} s each; "
            f"{c.inbound_per_ip_rate:g}/s per IP group (burst {c.inbound_per_ip_burst})",
            f"  inbound streams: {lim.inbound_streams_per_connection} per connection "
            f"(+{c.max_unacked_inbound} waiting), {lim.inbound_streams_per_peer} per peer, "
            f"{lim.inbound_streams} in total; per protocol and connection "
            f"{lim.inbound_streams_per_protocol_per_connection} ({kad}); "
            f"outbound streams: {lim.outbound_streams_per_peer} per peer",
            f"  memory for received data: {lim.connection_memory // mib} MiB per connection, "
            f"{lim.host_memory // mib} MiB in total; data dropped unread: "
            f"{lim.discard_rate // mib} MiB/s per connection (burst {lim.discard_burst // mib} "
            f"MiB), then reading pauses; {lim.bad_streams_per_connection} failed stream "
            f"negotiations per {lim.bad_stream_interval:g} s, then the connection closes",
            f"  half-closed streams reset after {c.stream_close_timeout:g} s; "
            f"address book: {c.max_peerstore_peers} peers",
            f"  exempt from per-IP limits: {', '.join(lim.allowlist) or 'nothing'}",
        ]
    )
