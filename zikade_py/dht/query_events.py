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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from zikade_py.dht.messages import Message, PeerInfo, closer_peers
from zikade_py.p2p.peer_id import PeerID

log = logging.getLogger(__name__)


class QueryEventType(IntEnum):
    """What happened; the values are Kubo's ``routing.QueryEventType`` numbers."""

    SENDING_QUERY = 0
    """A request is about to be written to ``peer`` (after any dial)."""
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
    """``peer`` joined the query, once per query: a peer it starts from, or one an answer
    named for the first time (Kubo prints "adding peer to query"; go's old query runner
    sent it from ``addPeerToQuery``). Not about the routing table."""
    DIALING_PEER = 7
    """A request needs a connection to ``peer`` that we do not have: it is being dialed
    (then SENDING_QUERY, or QUERY_ERROR if the dial fails), as go's ``dialPeer``."""


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


ResponseHook = Callable[[PeerID, object], None]
"""What an API call does with each answer (collect records, stop the query early)."""


class EventObserver:
    """A query's progress turned into :class:`QueryEvent` s, plus the call's own hook.

    The driver and the router report the requests and answers of one query to it
    (it is a :class:`~zikade_py.dht.driver.QueryObserver`); every API call builds
    one, so its ``on_event`` callback sees the query the way Kubo's ``-v`` output
    shows it: ADDING_PEER, DIALING_PEER, SENDING_QUERY, PEER_RESPONSE, QUERY_ERROR.
    """

    __slots__ = ("_hook", "_on_event", "_seen", "_self_id")

    def __init__(
        self,
        on_event: EventCallback | None,
        hook: ResponseHook | None = None,
        *,
        self_id: PeerID | None = None,
    ) -> None:
        self._on_event = on_event
        self._hook = hook
        self._self_id = self_id
        self._seen: set[PeerID] = set()

    def _add(self, peer: PeerID) -> None:
        if peer not in self._seen and peer != self._self_id:
            self._seen.add(peer)
            emit(self._on_event, QueryEvent(QueryEventType.ADDING_PEER, peer))

    def on_request(self, peer: PeerID) -> None:
        """The query asked ``peer``: ADDING_PEER if the query had not met it yet (a seed)."""
        if self._on_event is not None:
            self._add(peer)

    def on_dialing(self, peer: PeerID) -> None:
        """The request to ``peer`` needs a new connection: DIALING_PEER."""
        emit(self._on_event, QueryEvent(QueryEventType.DIALING_PEER, peer))

    def on_sending(self, peer: PeerID) -> None:
        """The request is being written to ``peer``: SENDING_QUERY."""
        emit(self._on_event, QueryEvent(QueryEventType.SENDING_QUERY, peer))

    def on_progress(self, peer: PeerID, response: object) -> None:
        """``peer`` answered: PEER_RESPONSE with the closer peers it named, ADDING_PEER for
        each of them new to the query, then the hook."""
        if self._on_event is not None:
            closer: Sequence[PeerInfo] = ()
            if isinstance(response, Message):
                closer = closer_peers(response)
            elif isinstance(response, list):
                closer = response
            emit(self._on_event, QueryEvent(QueryEventType.PEER_RESPONSE, peer, tuple(closer)))
            self._seen.add(peer)
            for info in closer:
                self._add(info.peer_id)
        if self._hook is not None:
            self._hook(peer, response)

    def on_request_failed(self, peer: PeerID, error: str) -> None:
        """A request to ``peer`` failed: QUERY_ERROR with the reason."""
        emit(self._on_event, QueryEvent(QueryEventType.QUERY_ERROR, peer, extra=error))


__all__ = [
    "EventCallback",
    "EventObserver",
    "QueryEvent",
    "QueryEventType",
    "ResponseHook",
    "emit",
]
