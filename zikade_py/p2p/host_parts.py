"""What the parts of the host share: its state (made by ``Host.__init__``), its own
tasks, its event subscribers and its logger.

The host is one object assembled from one class per idea, each in its own module:
accepting inbound connections (``host_inbound``), dialing (``host_dial``), admitting
authenticated connections and serving them (``host_conns``), running inbound streams
(``host_streams``); ``host`` puts them together with the lifecycle. Each part reaches
the shared state through :class:`HostParts`, declared here once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zikade_py.p2p.connection import Connection, Stream
from zikade_py.p2p.connmgr import ConnectionManager, InboundRateLimiter
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.dial_guard import DialGuard
from zikade_py.p2p.dns import DnsResolver
from zikade_py.p2p.events import HostEvent
from zikade_py.p2p.host_config import HostConfig
from zikade_py.p2p.identify import IdentifyService
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import PeerStore
from zikade_py.p2p.rcmgr import ConnectionScope, ResourceManager
from zikade_py.p2p.yamux import YamuxConfig

if TYPE_CHECKING:
    from zikade_py.p2p.quic.transport import QuicTransport

log = logging.getLogger("zikade_py.p2p.host")  # one logger for every part of the host

StreamHandler = Callable[[Stream], Awaitable[None]]
"""Serves one inbound stream of a protocol; the stream is reset if it raises."""


@dataclass(slots=True, eq=False)
class _ConnState:
    """What the host keeps per connection: its resource scope, and an event set whenever
    one of its inbound stream slots frees up."""

    scope: ConnectionScope
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)


class HostClosedError(Exception):
    """The host is not running (never started, or closed): local misuse."""


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Say when a task of the host's own died of an exception (nobody awaits them)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("host task %s failed: %r", task.get_name(), exc, exc_info=exc)


class HostParts:
    """The state every part of the host uses (set in ``Host.__init__``), the host's own
    tasks and its event publishing."""

    config: HostConfig
    peer_id: PeerID
    peerstore: PeerStore
    dial_guard: DialGuard
    resolver: DnsResolver
    resources: ResourceManager
    connmgr: ConnectionManager[Connection]
    identify: IdentifyService
    _key: PrivateKey
    _yamux: YamuxConfig
    _rate: InboundRateLimiter
    _handlers: dict[str, StreamHandler]
    _subscribers: list[NonBlockingQueue[HostEvent]]
    _servers: list[asyncio.Server]
    _listen_addrs: list[Multiaddr]
    _tasks: set[asyncio.Task[Any]]
    _conn_tasks: dict[Connection, set[asyncio.Task[Any]]]
    _states: dict[Connection, _ConnState]
    _running: bool
    _closing: bool

    if TYPE_CHECKING:

        @property
        def _quic(self) -> QuicTransport:
            """Made by ``Host`` at the first QUIC listen or dial."""

    @property
    def is_running(self) -> bool:
        """Between :meth:`start` and :meth:`close`."""
        return self._running and not self._closing

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str, conn: Connection | None = None
    ) -> asyncio.Task[Any]:
        """Start a task of the host's own (not awaited by any caller) in an empty context, so
        handlers do not inherit the span that was current when the host started or a dial
        began: every inbound request starts its own trace."""
        task = asyncio.get_running_loop().create_task(
            coro, name=name, context=contextvars.Context()
        )
        group = self._tasks if conn is None else self._conn_tasks.setdefault(conn, set())
        group.add(task)
        task.add_done_callback(group.discard)
        task.add_done_callback(_log_failure)
        return task

    def publish(self, event: HostEvent) -> None:
        """Hand ``event`` to every open subscription (never waits)."""
        if any(q.closed for q in self._subscribers):
            self._subscribers = [q for q in self._subscribers if not q.closed]
        for queue in self._subscribers:
            queue.push(event)
