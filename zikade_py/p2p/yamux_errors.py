"""Exception classes of the Yamux multiplexer, shared by the frame codec and the session.

They live in their own module so :mod:`yamux_frame` can raise protocol errors without
importing the session. Callers import them from :mod:`zikade_py.p2p.yamux`.
"""

from __future__ import annotations


class YamuxError(Exception):
    """Base class: anything that went wrong in a Yamux session or stream."""


class YamuxProtocolError(YamuxError):
    """The peer broke the protocol; the session answers with GoAway(protocol error) and closes."""


class StreamResetError(YamuxError):
    """The stream was reset (by the peer or locally); reads and writes fail."""


class SessionClosedError(YamuxError):
    """The session has ended (locally, by the peer, or because the connection broke)."""


class StreamClosedError(YamuxError):
    """Local misuse: writing to a stream after :meth:`close` (half-close) was called."""


class GoAwayError(YamuxError):
    """The peer sent GoAway, so it accepts no new streams; existing streams keep working."""

    def __init__(self, code: int) -> None:
        super().__init__(f"peer sent GoAway (code {code}); no new streams")
        self.code = code


class PingTimeoutError(YamuxError):
    """No Ping ACK arrived within the configured timeout."""
