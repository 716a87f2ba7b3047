"""The Router: sends one Kademlia request to one peer (DESIGN.md §3).

The coordinator decides *what* to ask *whom*; the router does the asking over
the host. It is what zikade's router was, plus what zikade lacked
(ZIKADE.md §4, §10 pt 9): every request runs under its event's deadline, is
traced as a child span of its event's span context, and can be cancelled with
:meth:`Router.cancel_request`, which resets its stream at once.

Streams: **one stream per request** (open, write, read one answer, close), as
js and rust do and the spec describes (WIRE.md §8.3). go's per-peer stream
reuse saves one multistream round trip per request, but needs a per-peer
sequencer, retries and a fallback, and a cancelled request would poison the
shared stream for the next one; with a stream per request two requests can
never interleave and a cancel is a plain reset. ADD_PROVIDER is written and the
stream closed without reading: no implementation answers it (WIRE.md §10 pt 10).

Time: ``deadline`` is absolute on the router's ``clock`` (``time.monotonic`` by
default, the clock the node feeds its coordinator), so the remaining budget is
``deadline - clock()``; ``None`` means ``request_timeout`` from now.

Metrics (ZIKADE.md §5, docs/metrics.md), all by ``message_type`` and never
by peer or key: ``sent_messages`` / ``sent_message_errors`` count messages that
get no answer (ADD_PROVIDER), ``sent_bytes`` the request bodies written,
``outbound_request_latency`` (ms) from the start of a request (dial included) to
its answer. Requests that expect an answer are counted in
:attr:`Router.requests_sent` / :attr:`Router.requests_failed`, which the daemon
exports as ``sent_requests`` / ``sent_request_errors`` through ``Node.stats()``
(so the router must not create instruments of those names).

Responses are bounded by the length prefix before their body is read
(:data:`~zikade_py.dht.messages.MAX_MESSAGE_SIZE`, 4 MiB). Closer peers named in
answers go to the host's address book (never ourselves), so the next request
to them can dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, SpanContext

from zikade_py import telemetry
from zikade_py.dht.addrfilter import clean_response, for_destination
from zikade_py.dht.messages import (
    MAX_CLOSER_PEERS,
    MAX_MESSAGE_SIZE,
    MAX_PROVIDER_PEERS,
    Message,
    MessageError,
    MessageType,
    PeerInfo,
    closer_peers,
    encode_message,
    expects_response,
    find_node,
    message_type,
    read_message,
)
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.connmgr import ConnectionLimitError
from zikade_py.p2p.host import DialError, Host, HostClosedError
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import decode_uvarint
from zikade_py.p2p.yamux import SessionClosedError

log = logging.getLogger(__name__)

CLOSER_PEER_ADDR_TTL: Final = 600.0
"""How long addresses heard in a closer-peers list are kept: third-party claims, so short
(go: ``TempAddrTTL``, 2 min), but longer than a candidate can wait in the include queue
(128 candidates, 3 checks of ≤ 10 s at a time: ~7 min)."""

OPEN_ATTEMPTS: Final = 3
"""Tries to get a stream when the connection we got closes under us (simultaneous dials)."""

RequestID = int
"""The coordinator's name for a request (``SendFindNode.request_id``)."""

ResponseHook = Callable[[PeerID, Message], Awaitable[None]]
"""Awaited with every response before it is returned (instrumentation and tests)."""


class RequestObserver(Protocol):
    """Who wants to see a request's progress on the wire (a query's event observer)."""

    def on_dialing(self, peer: PeerID) -> None:
        """We are not connected to ``peer``: a connection is being opened for the request."""
        ...

    def on_sending(self, peer: PeerID) -> None:
        """The stream to ``peer`` is open; the request is about to be written."""
        ...


class RequestError(Exception):
    """A request failed: the peer broke the protocol, reset the stream, or went away."""


class DialFailedError(RequestError):
    """No connection to the peer could be made: it is unreachable (not a protocol error)."""


class RequestTimeoutError(RequestError, TimeoutError):
    """The request's deadline passed before the answer arrived."""


class BadResponseError(RequestError):
    """The peer answered with something that is not a valid answer to our request."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: the message (``None`` for ADD_PROVIDER) and its closer peers, parsed."""

    message: Message | None
    closer: list[PeerInfo]


@dataclass(frozen=True, slots=True)
class RouterInstruments:
    """The router's OpenTelemetry instruments (names from ZIKADE.md §5)."""

    sent_messages: Counter
    sent_message_errors: Counter
    sent_bytes: Histogram
    latency: Histogram

    @classmethod
    def create(cls, meter: Meter) -> RouterInstruments:
        """Create (or get back: the SDK returns the existing ones) the instruments on ``meter``."""
        return cls(
            sent_messages=meter.create_counter(
                "sent_messages",
                description="Kad messages sent that get no answer (ADD_PROVIDER), by message_type",
            ),
            sent_message_errors=meter.create_counter(
                "sent_message_errors",
                description="Kad messages without answer that could not be sent, by message_type",
            ),
            sent_bytes=meter.create_histogram(
                "sent_bytes", unit="By", description="Size of kad requests sent"
            ),
            latency=meter.create_histogram(
                "outbound_request_latency",
                unit="ms",
                description="From a kad request's start (dial included) to its answer",
            ),
        )


@functools.cache
def _default_instruments() -> RouterInstruments:
    """Created once per process on the global meter: many routers (tests, simulations) share
    them, and instruments made before the daemon installs its provider bind when it does."""
    return RouterInstruments.create(telemetry.meter())


_ATTRIBUTES: Final = {kind: {"message_type": kind.name} for kind in MessageType}
"""One attribute dict per message type, built once (recorded on every request)."""


class Router:
    """Sends kad requests over a :class:`~zikade_py.p2p.host.Host` (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        *,
        protocol: str = KAD_PROTOCOL,
        request_timeout: float = 10.0,
        max_message_size: int = MAX_MESSAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        meter: Meter | None = None,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        self._host = host
        self._protocol = protocol
        self._request_timeout = request_timeout
        self._max_message_size = max_message_size
        self._clock = clock
        self._active: dict[RequestID, asyncio.Task[object]] = {}
        self._streams: set[Stream] = set()
        self.response_hook: ResponseHook | None = None
        """If set, awaited with each response before it is returned (tests block on it)."""
        self._instruments = (
            _default_instruments() if meter is None else RouterInstruments.create(meter)
        )
        self.requests_sent = 0
        """Requests that expect an answer, started (exported as ``sent_requests``)."""
        self.requests_failed = 0
        """Requests that expect an answer and failed (``sent_request_errors``); not cancels."""
        self.messages_sent = 0
        """Messages that get no answer (ADD_PROVIDER), started (``sent_messages``)."""
        self.messages_failed = 0
        """Messages without answer that failed (``sent_message_errors``)."""
        self.requests_cancelled = 0
        """Requests and messages cancelled (a query stopped, the node closed)."""

    # -- views -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests currently running (registered with a request id)."""
        return len(self._active)

    @property
    def open_streams(self) -> int:
        """Kad streams this router has open right now."""
        return len(self._streams)

    # -- requests ----------------------------------------------------------------------------

    async def send_message(
        self,
        to: PeerID,
        msg: Message,
        *,
        deadline: float | None = None,
        span_context: SpanContext = INVALID_SPAN_CONTEXT,
        request_id: RequestID | None = None,
        observer: RequestObserver | None = None,
    ) -> Message | None:
        """Send ``msg`` to ``to`` and return its answer (``None`` for ADD_PROVIDER).

        Raises :class:`DialFailedError`, :class:`RequestTimeoutError`,
        :class:`BadResponseError` or :class:`RequestError`; ``CancelledError`` when
        :meth:`cancel_request` (or anything else) cancelled it, with the stream reset.
        """
        reply = await self.request(
            to, msg, deadline=deadline, span_context=span_context, request_id=request_id,
            observer=observer,
        )
        return reply.message

    async def request(
        self,
        to: PeerID,
        msg: Message,
        *,
        deadline: float | None = None,
        span_context: SpanContext = INVALID_SPAN_CONTEXT,
        request_id: RequestID | None = None,
        observer: RequestObserver | None = None,
    ) -> Reply:
        """:meth:`send_message`, returning the answer with its closer peers parsed once.

        ``observer`` hears when a dial starts and when the request goes out."""
        kind = message_type(msg)
        parent = (
            trace.set_span_in_context(NonRecordingSpan(span_context))
            if span_context.is_valid
            else otel_context.Context()
        )
        task = asyncio.current_task()
        if request_id is not None and task is not None:
            self._active[request_id] = task
        attributes = _ATTRIBUTES[kind]
        answered = expects_response(kind)
        if answered:
            self.requests_sent += 1
        else:
            self.messages_sent += 1
            self._instruments.sent_messages.add(1, attributes)
        started = time.perf_counter()
        span = telemetry.tracer().start_span("Router.SendMessage", parent)
        if span.is_recording():  # str(PeerID) is base58: only pay for it when traced
            span.set_attributes(
                {
                    "message_type": kind.name,
                    "peer_id": str(to),
                    "key": telemetry.key_attribute(msg.key),
                    "request_id": -1 if request_id is None else request_id,
                }
            )
        try:
            with trace.use_span(span, end_on_exit=False):
                reply = await self._exchange(to, msg, self._budget(deadline), observer)
        except asyncio.CancelledError:
            self.requests_cancelled += 1
            span.set_attribute("cancelled", True)
            raise
        except BaseException as exc:
            if answered:
                self.requests_failed += 1
            else:
                self.messages_failed += 1
                self._instruments.sent_message_errors.add(1, attributes)
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, str(exc) or type(exc).__name__)
            raise
        finally:
            span.end()
            if request_id is not None and self._active.get(request_id) is task:
                del self._active[request_id]
        if answered:
            self._instruments.latency.record((time.perf_counter() - started) * 1000.0, attributes)
        return reply

    async def get_closer_nodes(
        self,
        to: PeerID,
        target: bytes,
        *,
        deadline: float | None = None,
        span_context: SpanContext = INVALID_SPAN_CONTEXT,
        request_id: RequestID | None = None,
    ) -> list[PeerInfo]:
        """FIND_NODE(``target``) to ``to``: the peers it names, without us and duplicates."""
        reply = await self.request(
            to, find_node(target), deadline=deadline, span_context=span_context,
            request_id=request_id,
        )
        return reply.closer

    def closer_from(self, response: Message) -> list[PeerInfo]:
        """The closer peers of ``response``, without ourselves and without repeats."""
        seen = {self._host.peer_id}
        out: list[PeerInfo] = []
        for info in closer_peers(response):
            if info.peer_id not in seen:
                seen.add(info.peer_id)
                out.append(info)
        return out

    def cancel_request(self, request_id: RequestID) -> asyncio.Task[object] | None:
        """Cancel the request now: its stream is reset as the task unwinds.

        Returns the request's task (await it to know it is gone), or ``None`` if
        no such request is running.
        """
        task = self._active.pop(request_id, None)
        if task is not None and not task.done():
            task.cancel()
        return task

    async def close(self) -> None:
        """Cancel every request and wait for them (their streams are reset)."""
        tasks = [t for t in self._active.values() if t is not asyncio.current_task()]
        self._active.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in list(self._streams):
            await stream.reset()
        self._streams.clear()

    # -- internals ---------------------------------------------------------------------------

    def _budget(self, deadline: float | None) -> float:
        if deadline is None:
            return self._request_timeout
        return deadline - self._clock()

    async def _exchange(
        self, to: PeerID, msg: Message, budget: float, observer: RequestObserver | None
    ) -> Reply:
        if budget <= 0:
            raise RequestTimeoutError("deadline passed before the request was sent")
        kind = message_type(msg)
        payload = encode_message(msg)
        stream: Stream | None = None
        try:
            async with asyncio.timeout(budget):
                stream = await self._open(to, budget, observer)
                self._streams.add(stream)
                if kind == MessageType.ADD_PROVIDER:  # our addresses this peer can use
                    payload = encode_message(for_destination(
                        msg, stream.connection.remote_addr, self._host.config.address_policy
                    ))
                if observer is not None:
                    observer.on_sending(to)
                await stream.write(payload)
                self._instruments.sent_bytes.record(decode_uvarint(payload)[0], _ATTRIBUTES[kind])
                if not expects_response(kind):
                    await stream.close()
                    return Reply(None, [])
                try:
                    response = await read_message(
                        stream.reader, self._max_message_size,
                        max_closer=MAX_CLOSER_PEERS, max_providers=MAX_PROVIDER_PEERS,
                    )
                except MessageError as exc:
                    raise BadResponseError(f"bad response from {to}: {exc}") from None
                if response is None:
                    raise RequestError(f"{to} closed the stream without answering")
                # WAN filter: a public peer's loopback/private addresses are dropped
                clean_response(
                    response, stream.connection.remote_addr, self._host.config.address_policy
                )
                await stream.close()
                if kind == MessageType.PUT_VALUE and response.record.value != msg.record.value:
                    # go: "value not put correctly"; a server that stored it echoes it.
                    raise BadResponseError(f"{to} did not echo the record it was given")
                if self.response_hook is not None:
                    await self.response_hook(to, response)
        except TimeoutError:
            await self._reset(stream)
            raise RequestTimeoutError(f"no answer from {to} before the deadline") from None
        except BaseException:
            await self._reset(stream)
            raise
        finally:
            if stream is not None:
                self._streams.discard(stream)
        closer = self.closer_from(response)
        self._learn(closer)
        return Reply(response, closer)

    async def _open(self, to: PeerID, budget: float, observer: RequestObserver | None) -> Stream:
        if to == self._host.peer_id:
            raise DialFailedError("refusing to send a request to ourselves")
        deadline = self._clock() + budget
        for attempt in range(OPEN_ATTEMPTS):
            if observer is not None and self._host.connmgr.get(to) is None:
                observer.on_dialing(to)
            try:
                conn = await self._host.connect(to, timeout=budget)
            except (DialError, ConnectionLimitError, HostClosedError, OSError) as exc:
                raise DialFailedError(f"cannot connect to {to}: {exc}") from exc
            remaining = max(deadline - self._clock(), 0.001)
            try:
                return await conn.open_stream([self._protocol], timeout=remaining)
            except TimeoutError:
                raise
            except SessionClosedError as exc:
                # Both sides dialed at once and the host dropped this connection
                # (possibly both): ask again for a surviving or a new one.
                if attempt + 1 < OPEN_ATTEMPTS and self._clock() < deadline:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                raise RequestError(f"cannot open a kad stream to {to}: {exc}") from exc
            except Exception as exc:  # refused protocol, yamux limits
                raise RequestError(f"cannot open a kad stream to {to}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _reset(self, stream: Stream | None) -> None:
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.reset()

    def _learn(self, closer: list[PeerInfo]) -> None:
        book = self._host.peerstore
        for info in closer:
            if info.addrs:
                book.add_addrs(info.peer_id, info.addrs, CLOSER_PEER_ADDR_TTL)


__all__ = [
    "CLOSER_PEER_ADDR_TTL",
    "BadResponseError",
    "DialFailedError",
    "Reply",
    "RequestError",
    "RequestObserver",
    "RequestTimeoutError",
    "ResponseHook",
    "Router",
    "RouterInstruments",
]
