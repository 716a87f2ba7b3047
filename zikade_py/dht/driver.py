"""The asyncio driver of the sans-IO coordinator (DESIGN.md §2–3).

The coordinator is a pure object; this module is the thin I/O adapter around
it, in the aioquic style: feed it inputs, perform its outputs, keep one timer.

Rules:

* **One timer** (rule 1). After every batch of work the driver re-arms a single
  ``loop.call_later`` at ``coordinator.next_due()`` (``-inf``: at once). Nothing
  waits for an unrelated event to make time-based work happen.
* **Synchronous dispatch.** :meth:`Driver.notify` hands an input to the
  coordinator and polls it dry at once, performing every output before it
  returns. An output that causes another input (a progress callback stopping
  its query) only queues it; the running poll loop picks it up.
* **One task per request**, keyed by ``request_id``. Its result comes back as
  exactly one ``RequestSucceeded`` / ``RequestFailed``; a dial failure is also
  reported as ``NodeUnreachable``. ``CancelRequest`` cancels the task (the
  router resets its stream) and the task is awaited by whoever waits for the
  query, so a call returns only after its requests are gone (rule 4).
* **Time** is ``time.monotonic()`` (the ``clock`` argument): the core's ``now``,
  the events' deadlines and the router's deadlines share it, so a deadline
  crosses from core to router unchanged.
* **Every terminal outcome reaches the caller** (rule 2): a query ends with
  ``QueryFinished`` / ``BroadcastFinished`` whatever happened; when the driver
  closes, waiting calls get :class:`~zikade_py.dht.config.NodeClosedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, assert_never

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext

from zikade_py import telemetry
from zikade_py.core.coordinator import Coordinator
from zikade_py.core.coordinator_events import (
    BootstrapFinished,
    BroadcastFinished,
    BroadcastStored,
    CancelRequest,
    CoordinatorInput,
    CoordinatorOutput,
    NodeUnreachable,
    QueryFinished,
    QueryProgressed,
    RequestFailed,
    RequestID,
    RequestSucceeded,
    RoutingRemoved,
    RoutingUpdated,
    SendFindNode,
    SendMessage,
    StopQuery,
)
from zikade_py.core.key import Key
from zikade_py.core.query import QueryID
from zikade_py.core.sweep_events import (
    ProvideBatch,
    SweepLoadKeys,
    SweepOutput,
    SweepRegionDone,
    SweepScheduleChanged,
)
from zikade_py.core.trace import Trace
from zikade_py.dht.config import NodeClosedError
from zikade_py.dht.messages import Message, PeerInfo, find_node
from zikade_py.dht.router import DialFailedError, RequestObserver, Router
from zikade_py.dht.session import Session, SessionCancelledError
from zikade_py.p2p.peer_id import PeerID

log = logging.getLogger(__name__)

Finished = QueryFinished | BroadcastFinished
"""The terminal output of a query or broadcast."""


def peer_key(peer: PeerID) -> Key:
    """The keyspace point of a peer: SHA-256 of its id's multihash (WIRE.md §8.4)."""
    return Key.from_preimage(peer.multihash)


def key_peer(key: Key) -> PeerID:
    """The peer a node key names (its preimage is the peer id's multihash)."""
    return PeerID.from_bytes(key.preimage)


BatchSender = Callable[[PeerID, ProvideBatch, float | None, SpanContext], Awaitable[None]]
"""Sends one batch of ADD_PROVIDER to a peer on one stream; raises if it could not."""


class DriverListener(Protocol):
    """What the driver tells the node about routing changes."""

    def on_routing_updated(self, node: Key) -> None:
        """``node`` entered the routing table."""
        ...

    def on_routing_removed(self, node: Key) -> None:
        """``node`` left the routing table."""
        ...

    def on_bootstrap_finished(self, event: BootstrapFinished) -> None:
        """A bootstrap walk ended."""
        ...

    def on_sweep(self, out: SweepOutput) -> None:
        """The reprovide sweep wants keys loaded or its progress kept (dht/reprovide.py)."""
        ...


class QueryObserver(RequestObserver, Protocol):
    """What one API call wants to hear about its query while it runs (the router adds
    ``on_dialing`` and ``on_sending`` as each request reaches the wire)."""

    def on_request(self, peer: PeerID) -> None:
        """The query asked for a request to ``peer`` (before any dial)."""
        ...

    def on_progress(self, peer: PeerID, response: object) -> None:
        """``peer`` answered (``list[PeerInfo]`` for FIND_NODE, else a ``Message``)."""
        ...

    def on_request_failed(self, peer: PeerID, error: str) -> None:
        """A request to ``peer`` failed."""
        ...


class QueryHandle:
    """One query or broadcast started by an API call: its span, its end, its requests.

    It is also the call's membership in a :class:`~zikade_py.dht.session.Session`.
    """

    __slots__ = (
        "_driver",
        "finished",
        "observer",
        "query_id",
        "reaping",
        "session",
        "span",
        "stopped_by_session",
        "trace",
    )

    def __init__(
        self,
        driver: Driver,
        query_id: QueryID,
        span: Span,
        trace_: Trace,
        observer: QueryObserver | None,
        session: Session | None,
    ) -> None:
        self._driver = driver
        self.query_id = query_id
        self.span = span
        """The ``Query.Run`` span; requests are its children."""
        self.trace = trace_
        self.observer = observer
        self.session = session
        self.finished: asyncio.Future[Finished | None] = (
            asyncio.get_running_loop().create_future()
        )
        """Resolves with the terminal output (``None``: the node closed)."""
        self.reaping: set[asyncio.Task[None]] = set()
        """Request tasks cancelled for this query, awaited before the call returns."""
        self.stopped_by_session = False

    def stop(self) -> None:
        """Stop the query (session cancel); the waiting call raises SessionCancelledError."""
        self.stopped_by_session = True
        self._driver.stop(self)

    async def wait_stopped(self) -> None:
        """Return once the query ended and its cancelled requests are gone."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.finished)
        await self.reap()

    async def reap(self) -> None:
        """Wait for the cancelled request tasks of this query."""
        while self.reaping:
            tasks = list(self.reaping)
            self.reaping.difference_update(tasks)
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finish(self, result: Finished | None) -> None:
        if not self.finished.done():
            self.finished.set_result(result)
        if result is not None:
            self.span.set_attribute("reason", result.reason.value)
            if isinstance(result, QueryFinished):
                s = result.stats
                self.span.set_attributes(
                    {"requests": s.requests, "success": s.success, "failure": s.failure}
                )
            else:
                self.span.set_attributes(
                    {"contacted": len(result.contacted), "errors": len(result.errors)}
                )
            self.span.add_event("finished", {"reason": result.reason.value})
        else:
            self.span.add_event("finished", {"reason": "node-closed"})
        self.span.end()
        if self.session is not None:
            self.session.discard(self)


class Driver:
    """Runs a :class:`Coordinator` on the running asyncio loop (see the module docstring)."""

    def __init__(
        self,
        coordinator: Coordinator,
        router: Router,
        listener: DriverListener,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordinator = coordinator
        self.router = router
        self._listener = listener
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._driving = False
        self._closed = False
        self._handles: dict[QueryID, QueryHandle] = {}
        self._tasks: dict[RequestID, tuple[asyncio.Task[None], QueryID]] = {}
        self._reaping: set[asyncio.Task[None]] = set()
        self._next_query = 0
        self.batch_sender: BatchSender | None = None
        """Sends the sweep's batches of ADD_PROVIDER on one stream (dht/reprovide_send.py)."""

    # -- views -------------------------------------------------------------------------------

    @property
    def requests_running(self) -> int:
        """Request tasks alive (sent and not yet answered, failed or cancelled)."""
        return len(self._tasks)

    @property
    def queries_running(self) -> int:
        """API queries and broadcasts not yet finished."""
        return len(self._handles)

    def now(self) -> float:
        """The core's time."""
        return self._clock()

    # -- inputs ------------------------------------------------------------------------------

    def notify(self, event: CoordinatorInput) -> None:
        """Give ``event`` to the coordinator and perform everything it causes."""
        if self._closed:
            return
        self.coordinator.notify(event, self._clock())
        self._drive()

    def new_query_id(self, prefix: str = "q") -> QueryID:
        """A query id unique within this driver."""
        self._next_query += 1
        return f"{prefix}{self._next_query}"

    def open(
        self,
        name: str,
        parent: Span,
        *,
        deadline: float | None,
        observer: QueryObserver | None,
        session: Session | None,
        attributes: dict[str, str | int] | None = None,
    ) -> QueryHandle:
        """A handle for a query about to start: its ``Query.Run`` span (a child of
        ``parent``), its trace (that span's context and ``deadline``), its session."""
        if self._closed:
            raise NodeClosedError("node is closed")
        if session is not None and session.cancelled:
            raise SessionCancelledError(f"session {session.id} is cancelled")
        query_id = self.new_query_id()
        attrs: dict[str, str | int] = {"query_id": query_id, "kind": name}
        if session is not None:
            attrs["session_id"] = session.id
        if attributes:
            attrs.update(attributes)
        span = telemetry.tracer().start_span(
            "Query.Run", trace.set_span_in_context(parent), attributes=attrs
        )
        handle = QueryHandle(
            self, query_id, span, Trace(span.get_span_context(), deadline), observer, session
        )
        self._handles[query_id] = handle
        if session is not None:
            session.add(handle)
        return handle

    async def run(self, handle: QueryHandle, start: CoordinatorInput) -> Finished:
        """Start the query with ``start`` and wait for its end.

        If the caller is cancelled, the query is stopped, its requests are
        cancelled and awaited, and then the cancellation propagates.
        """
        if not handle.finished.done():
            self.notify(start)
        return await self.wait(handle)

    async def wait(self, handle: QueryHandle) -> Finished:
        """Wait for the end of a started query (see :meth:`run`)."""
        try:
            result = await asyncio.shield(handle.finished)
        except asyncio.CancelledError:
            self.stop(handle)
            await handle.reap()
            raise
        await handle.reap()
        if result is None:
            raise NodeClosedError("node closed while the query ran")
        if handle.stopped_by_session:
            session_id = handle.session.id if handle.session is not None else "?"
            raise SessionCancelledError(f"session {session_id} was cancelled")
        return result

    def stop(self, handle: QueryHandle) -> None:
        """Stop ``handle``'s query: StopQuery in, CancelRequest for each request out."""
        if handle.finished.done():
            return
        if self._closed:
            handle._finish(None)
            return
        self.notify(StopQuery(handle.query_id, trace=handle.trace))

    # -- the loop ----------------------------------------------------------------------------

    def _drive(self) -> None:
        if self._driving or self._closed:
            return
        self._driving = True
        try:
            while (out := self.coordinator.poll(self._clock())) is not None:
                try:
                    self._perform(out)
                except Exception:
                    log.exception("performing %s failed", type(out).__name__)
        finally:
            self._driving = False
        self._arm()

    def _arm(self) -> None:
        due = self.coordinator.next_due()
        if due == self._timer_due and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None or self._closed:
            return
        delay = max(0.0, due - self._clock())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        self._drive()

    def _perform(self, out: CoordinatorOutput) -> None:
        match out:
            case SendFindNode() | SendMessage():
                self._send(out)
            case CancelRequest(request_id=rid):
                self._cancel(rid)
            case QueryProgressed():
                handle = self._handles.get(out.query_id)
                if handle is not None and handle.observer is not None:
                    handle.observer.on_progress(key_peer(out.node), out.response)
            case BroadcastStored():
                handle = self._handles.get(out.query_id)
                if handle is not None and handle.span.is_recording():
                    handle.span.add_event(
                        "stored", {"peer_id": str(key_peer(out.node)), "stored": out.stored}
                    )
            case QueryFinished() | BroadcastFinished():
                handle = self._handles.pop(out.query_id, None)
                if handle is not None:
                    handle._finish(out)
            case RoutingUpdated(node=node):
                self._listener.on_routing_updated(node)
            case RoutingRemoved(node=node):
                self._listener.on_routing_removed(node)
            case BootstrapFinished():
                self._listener.on_bootstrap_finished(out)
            case SweepLoadKeys() | SweepRegionDone() | SweepScheduleChanged():
                self._listener.on_sweep(out)
            case _:
                assert_never(out)

    # -- requests ----------------------------------------------------------------------------

    def _send(self, out: SendFindNode | SendMessage) -> None:
        rid = out.request_id
        task = self._loop.create_task(self._request(out), name=f"kad-request-{rid}")
        self._tasks[rid] = (task, out.query_id)
        handle = self._handles.get(out.query_id)
        if handle is not None:
            peer = key_peer(out.to)
            if handle.span.is_recording():
                handle.span.add_event("request", {"peer_id": str(peer), "request_id": rid})
            if handle.observer is not None:
                handle.observer.on_request(peer)

    def _cancel(self, rid: RequestID) -> None:
        entry = self._tasks.pop(rid, None)
        if entry is None:
            return
        task, qid = entry
        self.router.cancel_request(rid)
        task.cancel()
        handle = self._handles.get(qid)
        group = handle.reaping if handle is not None else self._reaping
        group.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _request(self, out: SendFindNode | SendMessage) -> None:
        rid = out.request_id
        try:
            result = await self._exchange(out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            self._forget(rid)
            handle = self._handles.get(out.query_id)
            if handle is not None:
                handle.span.add_event("request_failed", {"request_id": rid, "error": error})
                if handle.observer is not None:
                    handle.observer.on_request_failed(key_peer(out.to), error)
            self.notify(RequestFailed(rid, error, trace=out.trace))
            if isinstance(exc, DialFailedError):
                self.notify(NodeUnreachable(out.to))
            return
        self._forget(rid)
        handle = self._handles.get(out.query_id)
        if handle is not None:
            handle.span.add_event(
                "response", {"request_id": rid, "closer": len(result.closer_nodes)}
            )
        self.notify(result)

    async def _exchange(self, out: SendFindNode | SendMessage) -> RequestSucceeded:
        peer = key_peer(out.to)
        if isinstance(out, SendMessage) and isinstance(out.message, ProvideBatch):
            if self.batch_sender is None:
                raise TypeError("no batch sender for the sweep's ADD_PROVIDER batches")
            await self.batch_sender(peer, out.message, out.deadline, out.span_context)
            return RequestSucceeded(out.request_id, trace=out.trace)
        if isinstance(out, SendFindNode):
            if not out.target.preimage:
                raise ValueError("FIND_NODE target has no preimage to put on the wire")
            message = find_node(out.target.preimage)
        elif isinstance(out.message, Message):
            message = out.message
        else:
            raise TypeError(f"cannot send {type(out.message).__name__} as a kad message")
        handle = self._handles.get(out.query_id)
        reply = await self.router.request(
            peer,
            message,
            deadline=out.deadline,
            span_context=out.span_context,
            request_id=out.request_id,
            observer=handle.observer if handle is not None else None,
        )
        # FIND_NODE answers are reported as their peer list, others as the message.
        response = reply.closer if isinstance(out, SendFindNode) else reply.message
        return RequestSucceeded(
            out.request_id, _keys(reply.closer), response=response, trace=out.trace
        )

    def _forget(self, rid: RequestID) -> None:
        entry = self._tasks.get(rid)
        if entry is not None and entry[0] is asyncio.current_task():
            del self._tasks[rid]

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the timer, cancel every request and wait for them; waiting calls end with
        :class:`NodeClosedError`."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [task for task, _ in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for handle in list(self._handles.values()):
            handle.reaping.update(tasks)
            handle._finish(None)
        self._handles.clear()
        await asyncio.gather(*tasks, *self._reaping, return_exceptions=True)
        self._reaping.clear()


def _keys(infos: list[PeerInfo]) -> tuple[Key, ...]:
    return tuple(peer_key(info.peer_id) for info in infos)


__all__ = [
    "Driver",
    "DriverListener",
    "Finished",
    "QueryHandle",
    "QueryObserver",
    "key_peer",
    "peer_key",
]
