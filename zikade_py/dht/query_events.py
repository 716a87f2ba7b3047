"""Progress events of a DHT call, as Kubo reports them (``routing.QueryEvent``).

A caller that wants to watch a lookup (the CLI's ``-v``, the daemon's NDJSON
stream, a test) passes ``on_event``; the node calls it synchronously from the
event loop for every request sent, answer received, error and result found.
Numbers follow Kubo's ``routing.QueryEventType`` (ECOSYSTEM.md A1) so the JSON
output of ``zikade`` reads like ``ipfs routing`` output.

Callbacks must never block or break the loop (DESIGN.md §2 rule 5):
:func:`emit` calls them inside ``try`` and logs what they raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from zikade_py.dht.messages import PeerInfo
from zikade_py.p2p.peer_id import PeerID

log = logging.getLogger(__name__)


class QueryEventType(IntEnum):
    """What happened; the values are Kubo's ``routing.QueryEventType`` numbers."""

    SENDING_QUERY = 0
    """A request is about to go to ``peer``."""
    PEER_RESPONSE = 1
    """``peer`` answered; ``responses`` are the closer peers it named."""
    FINAL_PEER = 2
    """A result of the call: the peer looked for, or one of the closest peers."""
    QUERY_ERROR = 3
    """A request to ``peer`` failed (``extra`` says why)."""
    PROVIDER = 4
    """A provider was found (``responses`` holds it)."""
    VALUE = 5
    """A valid record was received from ``peer`` (``extra`` is its size)."""
    ADDING_PEER = 6
    """A peer entered the routing table."""
    DIALING_PEER = 7
    """A connection to ``peer`` is being opened."""


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One progress report of a DHT call."""

    type: QueryEventType
    peer: PeerID | None
    responses: tuple[PeerInfo, ...] = ()
    extra: str = ""
    time: float = field(default_factory=time.time)
    """Wall-clock seconds since the epoch when it happened."""


EventCallback = Callable[[QueryEvent], None]
"""What ``on_event`` receives: called synchronously, must return quickly."""


def emit(callback: EventCallback | None, event: QueryEvent) -> None:
    """Hand ``event`` to ``callback`` (if any); an exception in it is logged, never raised."""
    if callback is None:
        return
    try:
        callback(event)
    except Exception:
        log.exception("on_event callback raised; the event %s is dropped", event.type.name)


__all__ = ["EventCallback", "QueryEvent", "QueryEventType", "emit"]
