"""The timers and limits of QUIC connections, apart from the transport: the host's
config names them, and importing aioquic (and the TLS stack under it, ~0.1 s of CPU) is
left to the first QUIC listen or dial."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QuicConfig:
    """Timers and limits of QUIC connections (the host derives them from its config)."""

    idle_timeout: float = 30.0
    """A connection that hears nothing for this long is closed (go uses 30 s)."""
    keepalive_interval: float | None = 5.0
    """PING this often so the idle timer never fires on a healthy connection: the
    negotiated idle timeout is the smaller of both sides', and rust-libp2p and
    @chainsafe/libp2p-quic offer 10 s (and ping every 5 s themselves); None: no pings."""
    high_water: int = 256 * 1024
    """A stream's ``write`` waits while more than this many bytes are unacknowledged."""
    max_unaccepted_streams: int = 256
    """Inbound streams waiting for the host to accept them; more are reset."""
    max_stream_data: int = 1 << 20
    """Initial per-stream flow-control window we grant."""
    max_data: int = 4 << 20
    """Initial connection flow-control window we grant."""
    retry_above: int = 16
    """With this many inbound handshakes under way on a socket, a new client must first
    prove its address with a Retry round trip (RFC 9000 §8.1): a spoofed source then
    costs a stateless token, not a connection, a TLS signature and a handshake slot.
    0: always."""

    def validate(self) -> None:
        """Refuse settings that cannot work."""
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if self.keepalive_interval is not None and not (
            0 < self.keepalive_interval < self.idle_timeout
        ):
            raise ValueError("keepalive_interval must be positive and below idle_timeout")
        if self.high_water < 1 or self.max_unaccepted_streams < 0 or self.retry_above < 0:
            raise ValueError("high_water must be positive, the counts >= 0")
