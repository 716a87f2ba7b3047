"""Resource manager: who may make the host spend what (DESIGN.md §4a).

In the spirit of go-libp2p's resource manager, every resource a remote can make us hold
is reserved in a scope before use and released when done: handshake slots and
connections per IP group (IPv4 /32, IPv6 /64, go's subnet limits) and per peer,
inbound streams per connection, per peer, per protocol and in total, and received bytes
buffered by yamux per connection and for the whole host. A reservation that would pass a
limit is refused; the caller drops what asked for it (a socket, a stream).

Releases are idempotent and a closed connection scope gives back everything it still
holds, so no path (close, reset, error, cancel) can leak: :meth:`ResourceManager.stats`
returns to zero once the host is idle. Addresses in the allowlist (by default 127.0.0.1
and ::1, so tests and devnets keep working) are not limited per IP group.

Pure bookkeeping: no I/O and no clock.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from zikade_py.p2p.peer_id import PeerID

MiB = 1 << 20
K = TypeVar("K")


class ResourceLimitError(Exception):
    """A reservation would exceed a limit; the thing that asked for it is refused."""


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """The limits of one host; defaults suit a public bootstrap node (go's figures where
    go has one: 8 connections per /32, 32 MiB per connection, 32 kad streams per
    connection as js and rust allow)."""

    handshakes_per_ip_group: int = 8
    """Inbound handshakes under way from one IP group (of the host's pending pool)."""
    connections_per_ip_group: int = 8
    """Open inbound connections from one IP group (go: 8 per /32)."""
    connections_per_peer: int = 8
    """Open connections to one peer id, both directions."""
    inbound_streams_per_connection: int = 64
    """Inbound streams being served on one connection; more wait un-ACKed in yamux's
    backlog (``max_unacked_inbound``), beyond that they are reset."""
    inbound_streams_per_peer: int = 256
    """Inbound streams being served for one peer over all its connections (go: 256)."""
    inbound_streams_per_protocol_per_connection: int = 64
    """Inbound streams of one protocol on one connection, unless listed in
    ``protocol_streams_per_connection``."""
    protocol_streams_per_connection: tuple[tuple[str, int], ...] = (("/ipfs/kad/1.0.0", 32),)
    """Per-protocol exceptions to the above (js and rust kad allow 32 per connection)."""
    inbound_streams_per_protocol: int = 2048
    """Inbound streams of one protocol over the whole host."""
    inbound_streams: int = 4096
    """Inbound streams being served over the whole host."""
    outbound_streams_per_peer: int = 512
    """Streams we have open to one peer over all its connections (go: StreamsOutbound 512
    per peer): a runaway caller fails fast instead of filling the peer's backlog."""
    connection_memory: int = 32 * MiB
    """Received bytes yamux may buffer for one connection (go: 32 MiB per connection)."""
    host_memory: int = 256 * MiB
    """Received bytes yamux may buffer over the whole host."""
    discard_rate: int = 1 * MiB
    """Bytes per second a connection may send that we drop unread (data for streams that
    are reset, closed or unknown); beyond ``discard_burst`` reading from it pauses until the
    allowance refills, so TCP slows the sender instead of our event loop decrypting junk."""
    discard_burst: int = 4 * MiB
    """Dropped bytes a connection may send at once before reading pauses."""
    bad_streams_per_connection: int = 16
    """Inbound streams per ``bad_stream_interval`` whose negotiation fails (junk, a reset
    before a protocol was agreed, a timeout) that one connection may open; one more and
    the connection is closed (opening streams to be reset is a cheap way to make us work)."""
    bad_stream_interval: float = 60.0
    """Seconds over which ``bad_streams_per_connection`` is counted (a refilling allowance)."""
    ipv4_prefix: int = 32
    """IPv4 addresses are grouped by this prefix length."""
    ipv6_prefix: int = 64
    """IPv6 addresses are grouped by this prefix length (one customer's /64)."""
    allowlist: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    """Networks exempt from the per-IP-group limits (not from the host-wide ones)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for limits no host can run with."""
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("prefix lengths must fit the address family")
        for net in self.allowlist:
            ipaddress.ip_network(net)  # ValueError for a bad entry
        if any(n < 1 for _, n in self.protocol_streams_per_connection):
            raise ValueError("protocol stream limits must be at least 1")
        if self.bad_stream_interval <= 0:
            raise ValueError("bad_stream_interval must be positive")

    def protocol_limit(self, protocol: str) -> int:
        """Inbound streams of ``protocol`` one connection may carry at once."""
        for name, limit in self.protocol_streams_per_connection:
            if name == protocol:
                return limit
        return self.inbound_streams_per_protocol_per_connection


def ip_group(ip: str, limits: ResourceLimits) -> str | None:
    """The IP group ``ip`` counts against (``"1.2.3.4/32"``, ``"2001:db8::/64"``), or
    ``None`` for an allowlisted (or unparsable) address."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for net in limits.allowlist:
        if addr in ipaddress.ip_network(net):
            return None
    prefix = limits.ipv4_prefix if addr.version == 4 else limits.ipv6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Handshake:
    """A reserved inbound handshake slot; :meth:`release` when the upgrade ends."""

    __slots__ = ("_group", "_mgr")

    def __init__(self, mgr: ResourceManager, group: str | None) -> None:
        self._mgr: ResourceManager | None = mgr
        self._group = group

    @property
    def group(self) -> str | None:
        """The IP group the slot counts against (``None``: allowlisted)."""
        return self._group

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        mgr, self._mgr = self._mgr, None
        if mgr is not None:
            mgr._handshakes_total -= 1
            _dec(mgr._handshakes, self._group)


class ConnectionScope:
    """What one connection holds: its place in the group and peer counts, the inbound
    streams it serves, and the bytes yamux buffers for it (``reserve_memory``)."""

    __slots__ = (
        "_bad",
        "_closed",
        "_discard",
        "_group",
        "_memory",
        "_mgr",
        "_outbound",
        "_protocols",
        "_streams",
        "peer",
    )

    def __init__(self, mgr: ResourceManager, peer: PeerID, group: str | None) -> None:
        self._mgr = mgr
        self.peer = peer
        self._group = group
        self._memory = 0
        self._streams = 0
        self._outbound = 0
        self._protocols: Counter[str] = Counter()
        self._closed = False
        self._discard: _Allowance | None = None  # made on first use: most never need one
        self._bad: _Allowance | None = None

    @property
    def memory(self) -> int:
        """Bytes buffered for this connection now."""
        return self._memory

    @property
    def inbound_streams(self) -> int:
        """Inbound streams this connection serves now."""
        return self._streams

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` ran (every later reservation is refused)."""
        return self._closed

    def reserve_memory(self, size: int) -> bool:
        """Account ``size`` more buffered bytes; False (nothing reserved) if the connection's
        or the host's budget would be exceeded."""
        mgr = self._mgr
        if self._closed or self._memory + size > mgr.limits.connection_memory:
            return False
        if mgr._memory + size > mgr.limits.host_memory:
            return False
        self._memory += size
        mgr._memory += size
        return True

    def release_memory(self, size: int) -> None:
        """Give back ``size`` buffered bytes (ignored once the scope is closed)."""
        if self._closed:
            return
        size = min(size, self._memory)
        self._memory -= size
        self._mgr._memory -= size

    def headroom(self) -> int:
        """Bytes this connection could still reserve (its budget and the host's)."""
        if self._closed:
            return 0
        mgr = self._mgr
        return max(
            min(
                mgr.limits.connection_memory - self._memory,
                mgr.limits.host_memory - mgr._memory,
            ),
            0,
        )

    def note_discarded(self, size: int, now: float) -> float:
        """``size`` received bytes were dropped unread at ``now``; returns the seconds reading
        from this connection should pause (0.0 within ``discard_rate`` / ``discard_burst``)."""
        if self._discard is None:
            limits = self._mgr.limits
            self._discard = _Allowance(limits.discard_rate, limits.discard_burst)
        return self._discard.spend(size, now)

    def note_bad_stream(self, now: float) -> bool:
        """An inbound stream failed its negotiation at ``now``; False once the connection
        has gone past ``bad_streams_per_connection`` (close it)."""
        if self._bad is None:
            limits = self._mgr.limits
            per = limits.bad_streams_per_connection
            self._bad = _Allowance(per / limits.bad_stream_interval, per)
        return self._bad.spend(1, now) == 0.0

    def has_stream_slot(self) -> bool:
        """Whether this connection may start serving one more inbound stream."""
        return not self._closed and self._streams < self._mgr.limits.inbound_streams_per_connection

    def open_stream(self) -> InboundStream:
        """Reserve an inbound stream (protocol not known yet); raises
        :class:`ResourceLimitError` past the connection's, the peer's or the host's limit."""
        mgr = self._mgr
        limits = mgr.limits
        if self._closed:
            raise ResourceLimitError("connection closed")
        if self._streams >= limits.inbound_streams_per_connection:
            raise ResourceLimitError("inbound streams per connection")
        if mgr._peer_streams[self.peer] >= limits.inbound_streams_per_peer:
            raise ResourceLimitError("inbound streams per peer")
        if mgr._streams_total >= limits.inbound_streams:
            raise ResourceLimitError("inbound streams of the host")
        self._streams += 1
        mgr._peer_streams[self.peer] += 1
        mgr._streams_total += 1
        return InboundStream(self)

    def open_outbound_stream(self) -> OutboundStream:
        """Reserve a stream we open to the peer; raises :class:`ResourceLimitError` past the
        peer's ``outbound_streams_per_peer``."""
        mgr = self._mgr
        if self._closed:
            raise ResourceLimitError("connection closed")
        if mgr._peer_outbound[self.peer] >= mgr.limits.outbound_streams_per_peer:
            raise ResourceLimitError(f"outbound streams to {self.peer}")
        self._outbound += 1
        mgr._peer_outbound[self.peer] += 1
        return OutboundStream(self)

    def close(self) -> None:
        """Release everything the connection still holds (idempotent)."""
        if self._closed:
            return
        mgr = self._mgr
        _dec(mgr._peer_outbound, self.peer, self._outbound)
        self._outbound = 0
        mgr._memory -= self._memory
        self._memory = 0
        mgr._streams_total -= self._streams
        _dec(mgr._peer_streams, self.peer, self._streams)
        self._streams = 0
        for protocol, n in self._protocols.items():
            _dec(mgr._protocol_streams, protocol, n)
        self._protocols.clear()
        _dec(mgr._peer_conns, self.peer)
        _dec(mgr._group_conns, self._group)
        mgr._conns.discard(self)
        self._closed = True


class InboundStream:
    """One inbound stream's reservation; :meth:`set_protocol` once negotiated."""

    __slots__ = ("_conn", "_protocol", "_released")

    def __init__(self, conn: ConnectionScope) -> None:
        self._conn = conn
        self._protocol: str | None = None
        self._released = False

    def set_protocol(self, protocol: str) -> None:
        """Count the stream against ``protocol``; :class:`ResourceLimitError` past the
        per-connection or host-wide limit of that protocol."""
        conn, mgr = self._conn, self._conn._mgr
        if self._released or conn.is_closed:
            raise ResourceLimitError("stream released")
        if conn._protocols[protocol] >= mgr.limits.protocol_limit(protocol):
            raise ResourceLimitError(f"inbound {protocol} streams per connection")
        if mgr._protocol_streams[protocol] >= mgr.limits.inbound_streams_per_protocol:
            raise ResourceLimitError(f"inbound {protocol} streams of the host")
        conn._protocols[protocol] += 1
        mgr._protocol_streams[protocol] += 1
        self._protocol = protocol

    def release(self) -> None:
        """Give the stream back (idempotent; a no-op once the connection scope closed)."""
        if self._released:
            return
        self._released = True
        conn, mgr = self._conn, self._conn._mgr
        if conn.is_closed:
            return
        conn._streams -= 1
        mgr._streams_total -= 1
        _dec(mgr._peer_streams, conn.peer)
        if self._protocol is not None:
            _dec(conn._protocols, self._protocol)
            _dec(mgr._protocol_streams, self._protocol)


MAX_PAUSE = 5.0
"""Longest single pause of reading (seconds), however deep a connection's deficit."""


class _Allowance:
    """A token bucket: ``rate`` per second up to ``burst``; spending past it reports how
    long until the bucket is back at zero (capped at :data:`MAX_PAUSE`)."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at: float | None = None

    def spend(self, amount: float, now: float) -> float:
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= amount
        if self._tokens >= 0:
            return 0.0
        return min(-self._tokens / self._rate, MAX_PAUSE)


class OutboundStream:
    """One outbound stream's reservation; :meth:`release` when the stream has ended."""

    __slots__ = ("_conn",)

    def __init__(self, conn: ConnectionScope) -> None:
        self._conn: ConnectionScope | None = conn

    def release(self) -> None:
        """Give the stream back (idempotent; a no-op once the connection scope closed)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed:
            return
        conn._outbound -= 1
        _dec(conn._mgr._peer_outbound, conn.peer)


def _dec(counter: Counter[K], key: K, n: int = 1) -> None:
    """Lower ``counter[key]`` by ``n``, deleting it at zero (so idle tables are empty)."""
    value = counter[key] - n
    if value > 0:
        counter[key] = value
    else:
        counter.pop(key, None)


_GROUP_MEMO = 4096
"""Addresses whose IP group :meth:`ResourceManager.group` remembers at most."""


class ScopeUsage(NamedTuple):
    """One limit of one scope and how much of it is used now (a row of ``swarm resources``)."""

    scope: str
    """``system``, ``protocol:<id>``, ``peer:<id>``, ``ip:<group>`` or ``conn:<peer>``."""
    name: str
    """What is counted (``Memory``, ``InboundStreams``, ``Connections``, ...)."""
    used: int
    limit: int


class ResourceManager:
    """The host's reservations, by scope; see the module docstring."""

    def __init__(self, limits: ResourceLimits, *, max_handshakes: int) -> None:
        limits.validate()
        self.limits = limits
        self.max_handshakes = max_handshakes
        self._handshakes_total = 0
        self._handshakes: Counter[str | None] = Counter()
        self._group_conns: Counter[str | None] = Counter()
        self._peer_conns: Counter[PeerID] = Counter()
        self._peer_streams: Counter[PeerID] = Counter()
        self._peer_outbound: Counter[PeerID] = Counter()
        self._protocol_streams: Counter[str] = Counter()
        self._streams_total = 0
        self._memory = 0
        self._conns: set[ConnectionScope] = set()
        self._group_of: dict[str, str | None] = {}

    def group(self, ip: str) -> str | None:
        """The IP group of ``ip`` (``None``: allowlisted), see :func:`ip_group`; remembered,
        because parsing addresses and the allowlist cost more than the rest of an accept's
        bookkeeping (each inbound connection asks three times)."""
        try:
            return self._group_of[ip]
        except KeyError:
            pass
        if len(self._group_of) >= _GROUP_MEMO:
            self._group_of.clear()  # bounded: rotating addresses cannot grow it
        group = self._group_of[ip] = ip_group(ip, self.limits)
        return group

    def open_handshake(self, ip: str) -> Handshake:
        """Reserve a slot for an inbound handshake from ``ip``; :class:`ResourceLimitError`
        when the pool or the IP group's share of it is full."""
        group = self.group(ip)
        if self._handshakes_total >= self.max_handshakes:
            raise ResourceLimitError("handshake pool full")
        if group is not None:
            if self._handshakes[group] >= self.limits.handshakes_per_ip_group:
                raise ResourceLimitError(f"handshakes from {group}")
            if self._group_conns[group] >= self.limits.connections_per_ip_group:
                raise ResourceLimitError(f"connections from {group}")
        self._handshakes_total += 1
        self._handshakes[group] += 1
        return Handshake(self, group)

    def open_connection(self, peer: PeerID, ip: str | None) -> ConnectionScope:
        """Reserve an upgraded connection to ``peer`` (``ip``: the remote of an inbound one,
        ``None`` for outbound); :class:`ResourceLimitError` past the peer's or the group's
        connection limit."""
        group = self.group(ip) if ip is not None else None
        if self._peer_conns[peer] >= self.limits.connections_per_peer:
            raise ResourceLimitError(f"connections to {peer}")
        if group is not None and self._group_conns[group] >= self.limits.connections_per_ip_group:
            raise ResourceLimitError(f"connections from {group}")
        self._peer_conns[peer] += 1
        self._group_conns[group] += 1
        scope = ConnectionScope(self, peer, group)
        self._conns.add(scope)
        return scope

    def crowd(self, scope: ConnectionScope) -> int:
        """Connections that share ``scope``'s IP group (0 for allowlisted and outbound ones:
        trimming prefers the connections of crowded groups)."""
        return self._group_conns[scope._group] if scope._group is not None else 0

    def scopes(self, top: int = 10) -> list[ScopeUsage]:
        """Usage against the limits: the system scope, every protocol in use, and the
        ``top`` busiest peers, IP groups and connections (the live resource view)."""
        lim = self.limits
        rows = [
            ScopeUsage("system", "Memory", self._memory, lim.host_memory),
            ScopeUsage("system", "InboundStreams", self._streams_total, lim.inbound_streams),
            ScopeUsage("system", "Handshakes", self._handshakes_total, self.max_handshakes),
        ]
        for protocol, n in sorted(self._protocol_streams.items()):
            rows.append(
                ScopeUsage(f"protocol:{protocol}", "InboundStreams", n,
                           lim.inbound_streams_per_protocol)
            )  # fmt: skip
        peers = sorted(
            self._peer_conns,
            key=lambda p: -(self._peer_streams[p] + self._peer_outbound[p] + self._peer_conns[p]),
        )
        for peer in peers[:top]:
            scope = f"peer:{peer}"
            rows += [
                ScopeUsage(scope, "Connections", self._peer_conns[peer], lim.connections_per_peer),
                ScopeUsage(scope, "InboundStreams", self._peer_streams[peer],
                           lim.inbound_streams_per_peer),
                ScopeUsage(scope, "OutboundStreams", self._peer_outbound[peer],
                           lim.outbound_streams_per_peer),
            ]  # fmt: skip
        groups = sorted((g for g in self._group_conns if g is not None),
                        key=lambda g: -self._group_conns[g])  # fmt: skip
        for group in groups[:top]:
            rows.append(ScopeUsage(f"ip:{group}", "Connections", self._group_conns[group],
                                   lim.connections_per_ip_group))  # fmt: skip
        busiest = sorted((c for c in self._conns if c.memory), key=lambda c: -c.memory)
        for conn in busiest[:top]:
            rows.append(ScopeUsage(f"conn:{conn.peer}", "Memory", conn.memory,
                                   lim.connection_memory))  # fmt: skip
        return rows

    def stats(self) -> dict[str, int]:
        """Current usage (all zero on an idle host): for tests and ``zikade stats``."""
        return {
            "handshakes": self._handshakes_total,
            "connections": len(self._conns),
            "inbound_streams": self._streams_total,
            "outbound_streams": sum(self._peer_outbound.values()),
            "memory": self._memory,
            "ip_groups": len([g for g in self._group_conns if g is not None]),
            "peers": len(self._peer_conns),
            "protocols": len(self._protocol_streams),
        }
