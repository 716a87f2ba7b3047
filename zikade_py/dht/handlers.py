"""The inbound side of the Kademlia protocol: :class:`KadServer` answers ``/ipfs/kad/1.0.0``.

Semantics follow what go, js and rust servers actually do (WIRE.md §8.3–8.4):
several requests per inbound stream with an idle timeout, closer peers that are
dialable servers, records validated and selected before they are stored, and
ADD_PROVIDER never answered. Anything a peer gets wrong becomes a
:class:`~zikade_py.dht.protocol.KadRequestError` and a reset of that one stream;
the server keeps serving everyone else.

Limits (DESIGN.md §4a): the stores refuse records past their per-key, per-sender
and total caps (:class:`~zikade_py.dht.stores.StoreLimits`) — a refused
ADD_PROVIDER is dropped silently (it has no answer), a refused PUT_VALUE gets
its stream reset — counted in ``stored_records_refused``. Request bodies being
read draw from a budget per peer and one for the server, so 32 streams of one
peer cannot pin 32 × 4 MiB.

The per-RPC logic is synchronous (:meth:`KadServer.dispatch`) so it can be
tested and fuzzed without a network; :meth:`KadServer.handle_stream` is the
asyncio loop around it and uses :meth:`KadServer.dispatch_async`, which is the
same logic with the store writes awaited off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.metrics import Counter, Histogram

from zikade_py import telemetry
from zikade_py.dht.addrfilter import REQUESTER_SCOPE, for_scope
from zikade_py.dht.messages import (
    MAX_MESSAGE_SIZE,
    MAX_PROVIDER_KEY_SIZE,
    MessageError,
    MessageType,
    PeerInfo,
    decode_bounded,
    decode_message,
    encode_message,
    format_time_received,
    make_record,
    message_type,
)
from zikade_py.dht.pb import dht_pb2
from zikade_py.dht.protocol import (
    KAD_PROTOCOL,
    RESPONSE_SIZE_TARGET,
    KadRequestError,
    KadServerStateError,
    MalformedRequestError,
    RejectedProviderError,
    RejectedRecordError,
    distinct_peers,
    fit_peers,
    kad_digest,
)
from zikade_py.dht.records import InvalidRecordError, NamespacedValidator
from zikade_py.dht.stores import ProviderStore, ValueStore
from zikade_py.dht.stores.limits import StoreFullError
from zikade_py.p2p.addrscope import DEFAULT_POLICY, AddressPolicy, Scope
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.host import Host
from zikade_py.p2p.io import IncompleteReadError
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import VarintError
from zikade_py.p2p.yamux import YamuxError

log = logging.getLogger(__name__)

Message = dht_pb2.Message


REQUEST_PEER_ENTRIES = 20
"""Peer entries of a request that are parsed: only ADD_PROVIDER carries any (one, the
sender); the rest of a request stuffed with entries is skipped unparsed."""


class _OverBudgetError(Exception):
    """A request body does not fit the read budget of its peer or of the server."""


class RoutingView(Protocol):
    """What the server needs from the Node: a read-only view of its routing knowledge.

    The server never changes the routing table itself; the two ``on_*`` hooks
    let the Node react to what arrives (routing candidates, the Notifier).
    """

    def closest_peers(self, key: bytes, n: int) -> list[PeerInfo]:
        """Up to ``n`` routing-table peers with known addresses, closest to ``key`` first.

        ``key`` is the 32-byte keyspace point (SHA-256 of the wire key), i.e.
        ``Key(digest=key)``, not the preimage.
        """
        ...

    def self_info(self) -> PeerInfo:
        """Our own peer id with the addresses we can be dialed on."""
        ...

    def peer_info(self, peer: PeerID) -> PeerInfo | None:
        """The addresses we know of ``peer`` (address book / peerstore), None if unknown."""
        ...

    def on_inbound_request(self, peer: PeerID, msg_type: MessageType) -> None:
        """``peer`` sent a well-formed request: a routing candidate hint (never admit
        it on this alone; clients query servers too, WIRE.md §10 pt 15)."""
        ...

    def on_provider_added(self, key: bytes, provider: PeerInfo) -> None:
        """An ADD_PROVIDER for multihash ``key`` was stored: feed the Notifier and keep
        ``provider.addrs`` in the address book."""
        ...


@dataclass(frozen=True, slots=True)
class KadServerConfig:
    """Limits of the inbound side; defaults follow go/js/rust (WIRE.md §9)."""

    stream_idle_timeout: float = 60.0
    """A stream silent this long (between or inside messages) is reset (go: 1 min)."""
    max_message_size: int = MAX_MESSAGE_SIZE
    """Largest request read; the length prefix is checked before the body (go/js: 4 MiB)."""
    bucket_size: int = 20
    """k: closer peers per response."""
    max_concurrent_streams_per_peer: int = 32
    """Inbound kad streams one peer may hold open at once (js/rust: 32); more are reset."""
    write_timeout: float = 10.0
    """A response the peer does not read within this time resets the stream."""
    response_size_target: int = RESPONSE_SIZE_TARGET
    """Peers are trimmed from responses to stay within this (rust reads ≤ 16 KiB)."""
    max_providers_per_response: int = 100
    """Provider entries read from the store for one GET_PROVIDERS (then trimmed to size)."""
    max_provider_addrs: int = 32
    """Addresses kept per ADD_PROVIDER entry."""
    max_buffered_per_peer: int = 2 * MAX_MESSAGE_SIZE
    """Bytes of request bodies being read from one peer at once (all its streams);
    a request that would go over has its stream reset."""
    max_buffered_total: int = 16 * MAX_MESSAGE_SIZE
    """Bytes of request bodies being read from all peers at once."""


@dataclass(slots=True)
class KadServerStats:
    """Counters of the inbound side (mutable, owned by the server; read them, never write)."""

    received: dict[MessageType, int] = field(default_factory=dict)
    """Decoded requests by type (including those later refused)."""
    answered: dict[MessageType, int] = field(default_factory=dict)
    """Requests handled successfully by type (ADD_PROVIDER: stored, no response sent)."""
    errors: int = 0
    """Requests or streams that ended in a reset because of the peer."""
    error_reasons: dict[str, int] = field(default_factory=dict)
    """``errors`` by :attr:`KadRequestError.reason` (plus ``idle_timeout``, ``write_timeout``)."""
    internal_errors: int = 0
    """Bugs on our side (an unexpected exception while handling); the stream was reset."""
    streams_opened: int = 0
    streams_refused: int = 0
    """Streams reset at once: over the per-peer limit, or arriving while detached."""
    streams_active: int = 0
    bytes_received: int = 0
    """Request bodies (without length prefixes)."""
    bytes_sent: int = 0
    """Responses including length prefixes."""
    refused: dict[str, int] = field(default_factory=dict)
    """Records not stored because a store limit was reached, by reason
    (``per_key``, ``per_peer``, ``total_records``, ``total_bytes``, ``too_large``)."""
    buffered: int = 0
    """Bytes of request bodies being read right now (drawn from the read budget)."""


@dataclass(frozen=True, slots=True)
class _Instruments:
    received: Counter
    errors: Counter
    received_bytes: Histogram
    latency: Histogram
    refused: Counter


@functools.cache
def _instruments() -> _Instruments:
    """Created once per process: many servers (simulations, tests) share the instruments."""
    meter = telemetry.meter()
    return _Instruments(
        received=meter.create_counter(
            "received_messages", description="Kad requests received, by message_type"
        ),
        errors=meter.create_counter(
            "received_message_errors", description="Kad requests or streams reset, by reason"
        ),
        received_bytes=meter.create_histogram(
            "received_bytes", unit="By", description="Size of kad requests received"
        ),
        latency=meter.create_histogram(
            "inbound_request_latency",
            unit="ms",
            description="From a kad request read to its response written",
        ),
        refused=meter.create_counter(
            "stored_records_refused",
            description="Records not stored because a store limit was reached, by reason",
        ),
    )


class KadServer:
    """Serves /ipfs/kad/1.0.0 streams (server mode only).

    The Node builds one, calls :meth:`attach` when it runs in server mode and
    :meth:`detach` when it switches to client mode; :meth:`close` on shutdown.
    """

    def __init__(
        self,
        *,
        host: Host,
        view: RoutingView,
        providers: ProviderStore,
        values: ValueStore,
        validator: NamespacedValidator,
        clock: Callable[[], float] = time.time,
        config: KadServerConfig | None = None,
    ) -> None:
        self._host = host
        self._view = view
        self._providers = providers
        self._values = values
        self._validator = validator
        self._clock = clock
        self.config = config or KadServerConfig()
        self.stats = KadServerStats()
        self._attached = False
        self._closed = False
        self._me: PeerID | None = None
        self._streams: set[Stream] = set()
        self._per_peer: dict[PeerID, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._resets: set[asyncio.Task[None]] = set()
        self._buffered_by_peer: dict[PeerID, int] = {}
        self._put_locks: dict[bytes, tuple[asyncio.Lock, list[int]]] = {}
        self._handlers: dict[MessageType, Callable[[PeerID, Message], Message | None]] = {
            MessageType.FIND_NODE: self._find_node,
            MessageType.GET_VALUE: self._get_value,
            MessageType.PUT_VALUE: self._put_value,
            MessageType.ADD_PROVIDER: self._add_provider,
            MessageType.GET_PROVIDERS: self._get_providers,
            MessageType.PING: self._ping,
        }
        self._async_handlers: dict[
            MessageType, Callable[[PeerID, Message], Awaitable[Message | None]]
        ] = {
            MessageType.PUT_VALUE: self._put_value_async,
            MessageType.ADD_PROVIDER: self._add_provider_async,
            MessageType.GET_VALUE: self._get_value_async,
            MessageType.GET_PROVIDERS: self._get_providers_async,
        }

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether the host currently routes kad streams to this server."""
        return self._attached

    def attach(self) -> None:
        """Serve :data:`KAD_PROTOCOL` on the host (identify then advertises it)."""
        if self._closed:
            raise KadServerStateError("the kad server is closed")
        if not self._attached:
            self._host.set_stream_handler(KAD_PROTOCOL, self.handle_stream)
            self._attached = True

    def detach(self) -> None:
        """Stop serving: remove the handler and reset every open inbound kad stream."""
        if self._attached:
            self._host.remove_stream_handler(KAD_PROTOCOL)
            self._attached = False
        loop = asyncio.get_running_loop() if self._streams else None
        for stream in list(self._streams):
            assert loop is not None
            task = loop.create_task(stream.reset(), name="kad-detach-reset")
            self._resets.add(task)
            task.add_done_callback(self._resets.discard)

    async def close(self) -> None:
        """Detach and wait until every inbound stream handler has ended."""
        self._closed = True
        self.detach()
        await asyncio.gather(*self._resets, return_exceptions=True)
        await self._idle.wait()

    # --- the stream loop -------------------------------------------------------------------

    async def handle_stream(self, stream: Stream) -> None:
        """Serve one inbound kad stream: read, handle and answer requests until EOF.

        go reuses one stream per peer, so the loop goes on after each response
        (WIRE.md §8.3). The stream is reset on any protocol error, on idle timeout,
        when over the per-peer limit, or when the server is detached.
        """
        peer = stream.remote_peer
        open_now = self._per_peer.get(peer, 0)
        if not self._attached or open_now >= self.config.max_concurrent_streams_per_peer:
            self.stats.streams_refused += 1
            await stream.reset()
            return
        self._per_peer[peer] = open_now + 1
        self._streams.add(stream)
        self._idle.clear()
        self.stats.streams_opened += 1
        self.stats.streams_active += 1
        try:
            await self._serve(stream, peer)
        finally:
            self.stats.streams_active -= 1
            self._streams.discard(stream)
            left = self._per_peer.pop(peer) - 1
            if left:
                self._per_peer[peer] = left
            if not self._streams:
                self._idle.set()

    async def _serve(self, stream: Stream, peer: PeerID) -> None:
        cfg = self.config
        # what this peer may give us and be given (addrfilter.py); the stream is its own task
        REQUESTER_SCOPE.set(self._policy().peer_scope(stream.connection.remote_addr))
        instruments = _instruments()
        while True:
            try:
                async with asyncio.timeout(cfg.stream_idle_timeout):
                    request = await self._read_request(stream, peer)
            except TimeoutError:
                await self._reset(stream, "idle_timeout")
                return
            except _OverBudgetError:
                await self._reset(stream, "read_budget")
                return
            except MessageError as exc:
                log.debug("bad kad message from %s: %s", peer, exc)
                await self._reset(stream, "malformed")
                return
            except YamuxError:  # reset by the peer or the connection ended
                return
            if request is None:  # the peer closed its side; the host closes ours
                return
            started = time.perf_counter()
            size = request.ByteSize()
            self.stats.bytes_received += size
            instruments.received_bytes.record(size)
            try:
                response = await self.dispatch_async(peer, request)
            except KadRequestError as exc:
                log.debug("kad request from %s refused: %s", peer, exc)
                await stream.reset()
                return
            except Exception:
                log.exception("kad handler failed on a request from %s", peer)
                self.stats.internal_errors += 1
                await stream.reset()
                return
            if response is not None and not await self._respond(stream, response):
                return
            instruments.latency.record((time.perf_counter() - started) * 1000.0)

    async def _read_request(self, stream: Stream, peer: PeerID) -> Message | None:
        """One request, its body counted against the peer's and the server's read budget
        while it is being read (:class:`_OverBudgetError` if it does not fit)."""
        reader = stream.reader
        if await reader.at_eof():
            return None
        try:
            size = await reader.read_uvarint()
        except VarintError as exc:
            raise MessageError(f"bad length prefix: {exc}") from None
        except IncompleteReadError as exc:
            raise MessageError(f"truncated message: {exc}") from None
        if size > self.config.max_message_size:
            raise MessageError(f"message of {size} bytes exceeds {self.config.max_message_size}")
        with self._reserve(peer, size):
            try:
                body = await reader.read_exactly(size)
            except IncompleteReadError as exc:
                raise MessageError(f"truncated message: {exc}") from None
            return decode_bounded(body, REQUEST_PEER_ENTRIES, REQUEST_PEER_ENTRIES)

    @contextlib.contextmanager
    def _reserve(self, peer: PeerID, size: int) -> Iterator[None]:
        cfg = self.config
        held = self._buffered_by_peer.get(peer, 0)
        if (
            held + size > cfg.max_buffered_per_peer
            or self.stats.buffered + size > cfg.max_buffered_total
        ):
            raise _OverBudgetError
        self._buffered_by_peer[peer] = held + size
        self.stats.buffered += size
        try:
            yield
        finally:
            self.stats.buffered -= size
            left = self._buffered_by_peer.pop(peer) - size
            if left:
                self._buffered_by_peer[peer] = left

    async def _respond(self, stream: Stream, response: Message) -> bool:
        """Write ``response``; False (stream done) if the peer went away or stopped reading."""
        data = encode_message(response, max(MAX_MESSAGE_SIZE, self.config.max_message_size))
        try:
            async with asyncio.timeout(self.config.write_timeout):
                await stream.write(data)
        except TimeoutError:
            await self._reset(stream, "write_timeout")
            return False
        except YamuxError:
            return False
        self.stats.bytes_sent += len(data)
        return True

    async def _reset(self, stream: Stream, reason: str) -> None:
        self._count_error(reason)
        await stream.reset()

    def _count_error(self, reason: str, kind: MessageType | None = None) -> None:
        self.stats.errors += 1
        self.stats.error_reasons[reason] = self.stats.error_reasons.get(reason, 0) + 1
        attrs: dict[str, Any] = {"reason": reason}
        if kind is not None:
            attrs["message_type"] = kind.name
        _instruments().errors.add(1, attrs)

    # --- dispatch --------------------------------------------------------------------------

    def dispatch_bytes(self, remote: PeerID, body: bytes) -> Message | None:
        """Decode one message body from ``remote`` and :meth:`dispatch` it."""
        try:
            request = decode_message(body)
        except MessageError as exc:
            self._count_error("malformed")
            raise MalformedRequestError("malformed", str(exc)) from None
        return self.dispatch(remote, request)

    def dispatch(self, remote: PeerID, request: Message) -> Message | None:
        """Handle one request from ``remote``; the response to write, or None (ADD_PROVIDER).

        Raises only :class:`KadRequestError` subclasses for anything the peer got
        wrong (the caller resets the stream). Stores are updated (with their
        blocking calls) before returning.
        """
        kind = self._kind(request)
        with self._handling(remote, request, kind):
            response = self._handlers[kind](remote, request)
        self._answered(remote, kind)
        return response

    async def dispatch_async(self, remote: PeerID, request: Message) -> Message | None:
        """:meth:`dispatch` with store writes awaited off the event loop (the stream loop's
        way): a PUT_VALUE is answered, and an ADD_PROVIDER reported, once committed."""
        kind = self._kind(request)
        handler = self._async_handlers.get(kind)
        with self._handling(remote, request, kind):
            if handler is None:
                response = self._handlers[kind](remote, request)
            else:
                response = await handler(remote, request)
        self._answered(remote, kind)
        return response

    def _kind(self, request: Message) -> MessageType:
        try:
            kind = message_type(request)
        except MessageError as exc:
            self._count_error("unknown_type")
            raise MalformedRequestError("unknown_type", str(exc)) from None
        self.stats.received[kind] = self.stats.received.get(kind, 0) + 1
        _instruments().received.add(1, {"message_type": kind.name})
        return kind

    @contextlib.contextmanager
    def _handling(self, remote: PeerID, request: Message, kind: MessageType) -> Iterator[None]:
        attrs = {
            "remote_id": str(remote),
            "message_type": kind.name,
            "key": telemetry.key_attribute(request.key[:MAX_PROVIDER_KEY_SIZE]),
        }
        with telemetry.tracer().start_as_current_span(f"DHT.Handle.{kind.name}", attributes=attrs):
            try:
                yield
            except KadRequestError as exc:
                self._count_error(exc.reason, kind)
                raise

    def _answered(self, remote: PeerID, kind: MessageType) -> None:
        self.stats.answered[kind] = self.stats.answered.get(kind, 0) + 1
        self._view.on_inbound_request(remote, kind)

    def _refused(self, kind: MessageType, exc: StoreFullError) -> None:
        self.stats.refused[exc.reason] = self.stats.refused.get(exc.reason, 0) + 1
        _instruments().refused.add(1, {"message_type": kind.name, "reason": exc.reason})

    # --- closer peers ----------------------------------------------------------------------

    def _closer(self, remote: PeerID, key: bytes, skip: tuple[PeerID, ...] = ()) -> list[PeerInfo]:
        """The k closest dialable table peers to ``key``, never ourselves or the requester."""
        k = self.config.bucket_size
        me = self._self_id()
        candidates = self._view.closest_peers(kad_digest(key), k + 2 + len(skip))
        return distinct_peers(candidates, (me, remote, *skip))[:k]

    def _self_id(self) -> PeerID:
        """Our peer id, asked of the view once: ``self_info`` builds our announced
        addresses (scopes, confirmations), work an answer needs only when it names us."""
        if self._me is None:
            self._me = self._view.self_info().peer_id
        return self._me

    def _policy(self) -> AddressPolicy:
        config = getattr(self._host, "config", None)
        return getattr(config, "address_policy", DEFAULT_POLICY)

    def _fill(
        self,
        response: Message,
        providers: list[PeerInfo] | tuple[()] = (),
        closer: list[PeerInfo] | tuple[()] = (),
    ) -> Message:
        scope, policy = REQUESTER_SCOPE.get(), self._policy()
        if scope is not Scope.LOOPBACK:  # nothing narrower than the requester goes out
            providers = [for_scope(p, scope, policy) for p in providers]
            closer = distinct_peers(for_scope(p, scope, policy) for p in closer)
        provider_pbs, closer_pbs = fit_peers(
            response, providers, closer, limit=self.config.response_size_target
        )
        response.providerPeers.extend(provider_pbs)
        response.closerPeers.extend(closer_pbs)
        return response

    # --- the RPCs --------------------------------------------------------------------------

    def _find_node(self, remote: PeerID, request: Message) -> Message:
        """k closest servers; ourselves first if asked for our id (WIRE.md §10 pt 13), or the
        target first if we know its addresses (go; ipfs spec "Discovering non-DHT Servers")."""
        key = request.key
        if not key:
            raise MalformedRequestError("empty_key", "FIND_NODE without a key")
        first: list[PeerInfo] = []
        if key == self._self_id().multihash:
            first.append(self._view.self_info())
        else:
            with contextlib.suppress(ValueError):
                target = self._view.peer_info(PeerID.from_bytes(key))
                if target is not None and target.addrs:
                    first.append(target)
        closer = self._closer(remote, key, tuple(p.peer_id for p in first))
        return self._fill(Message(type=Message.FIND_NODE), (), first + closer)

    def _get_value(self, remote: PeerID, request: Message) -> Message:
        """The stored record (if younger than 48 h; not validated again, as go) + closer peers."""
        key = request.key
        if not key:
            raise MalformedRequestError("empty_key", "GET_VALUE without a key")
        return self._value_answer(remote, key, self._values.get(key, self._clock()))

    async def _get_value_async(self, remote: PeerID, request: Message) -> Message:
        """:meth:`_get_value` with the store read off the event loop."""
        key = request.key
        if not key:
            raise MalformedRequestError("empty_key", "GET_VALUE without a key")
        found = await self._values.get_async(key, self._clock())
        return self._value_answer(remote, key, found)

    def _value_answer(
        self, remote: PeerID, key: bytes, found: tuple[bytes, float] | None
    ) -> Message:
        response = Message(type=Message.GET_VALUE, key=key)
        if found is not None:
            value, received = found
            response.record.CopyFrom(make_record(key, value, format_time_received(received)))
        return self._fill(response, (), self._closer(remote, key))

    def _put_value(self, remote: PeerID, request: Message) -> Message:
        """Validate, keep the better of the incoming and the stored record, echo the request."""
        key, value, now = self._check_put(request)
        self._check_better(key, value, self._values.get(key, now))
        try:
            self._values.put(key, value, now, remote)
        except StoreFullError as exc:
            self._refused(MessageType.PUT_VALUE, exc)
            raise RejectedRecordError("store_full", str(exc)) from None
        return self._put_echo(key, value, now)

    async def _put_value_async(self, remote: PeerID, request: Message) -> Message:
        """:meth:`_put_value`, answered once the record is committed. Puts of one key are
        serialised, so a worse record cannot overtake the check of a better one."""
        key = request.record.key
        entry = self._put_locks.get(key)
        if entry is None:
            entry = self._put_locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                key, value, now = self._check_put(request)
                self._check_better(key, value, await self._values.get_async(key, now))
                try:
                    await self._values.put_async(key, value, now, remote)
                except StoreFullError as exc:
                    self._refused(MessageType.PUT_VALUE, exc)
                    raise RejectedRecordError("store_full", str(exc)) from None
        finally:
            users[0] -= 1
            if not users[0]:
                del self._put_locks[request.record.key]
        return self._put_echo(key, value, now)

    def _check_put(self, request: Message) -> tuple[bytes, bytes, float]:
        if not request.HasField("record"):
            raise MalformedRequestError("missing_record", "PUT_VALUE without a record")
        key, value = request.record.key, request.record.value
        if key != request.key:
            raise MalformedRequestError("key_mismatch", "PUT_VALUE key differs from record key")
        try:
            self._validator.validate(key, value)
        except InvalidRecordError as exc:
            raise RejectedRecordError("invalid_record", str(exc)) from None
        return key, value, self._clock()

    def _check_better(
        self, key: bytes, value: bytes, existing: tuple[bytes, float] | None
    ) -> None:
        """Refuse ``value`` if the stored record is valid and better."""
        if existing is not None and existing[0] != value and self._is_valid(key, existing[0]):
            try:
                best = self._validator.select(key, [value, existing[0]])
            except InvalidRecordError:
                best = 0
            if best != 0:
                raise RejectedRecordError("worse_record", "we hold a better record")

    @staticmethod
    def _put_echo(key: bytes, value: bytes, now: float) -> Message:
        response = Message(type=Message.PUT_VALUE, key=key)
        response.record.CopyFrom(make_record(key, value, format_time_received(now)))
        return response

    def _is_valid(self, key: bytes, value: bytes) -> bool:
        """Whether a stored record is still valid: an expired IPNS record loses to any valid one."""
        try:
            self._validator.validate(key, value)
        except InvalidRecordError:
            return False
        return True

    def _add_provider(self, remote: PeerID, request: Message) -> None:
        """Store the entry that names the sender with an address; never answered. A record
        refused by a store limit is dropped (counted), the stream goes on."""
        key, provider = self._check_provider(remote, request)
        try:
            self._providers.add(key, provider, self._clock(), remote)
        except StoreFullError as exc:
            self._refused(MessageType.ADD_PROVIDER, exc)
            return None
        self._view.on_provider_added(key, provider)
        return None

    async def _add_provider_async(self, remote: PeerID, request: Message) -> None:
        """:meth:`_add_provider`, reported to the Node once the record is committed."""
        key, provider = self._check_provider(remote, request)
        try:
            await self._providers.add_async(key, provider, self._clock(), remote)
        except StoreFullError as exc:
            self._refused(MessageType.ADD_PROVIDER, exc)
            return None
        self._view.on_provider_added(key, provider)
        return None

    def _check_provider(self, remote: PeerID, request: Message) -> tuple[bytes, PeerInfo]:
        key = request.key
        if not 0 < len(key) <= MAX_PROVIDER_KEY_SIZE:
            raise MalformedRequestError("bad_provider_key", f"provider key of {len(key)} bytes")
        for entry in request.providerPeers:
            if entry.id != remote.multihash:
                continue  # go ignores entries naming another peer
            try:
                info = PeerInfo.from_pb(entry)
            except MessageError:
                continue
            # WAN filter: a public sender's loopback/private addresses are not stored
            usable = self._policy().keep(info.addrs, REQUESTER_SCOPE.get())
            if not usable:
                continue
            addrs = tuple(dict.fromkeys(usable))[: self.config.max_provider_addrs]
            return key, PeerInfo(remote, addrs)
        raise RejectedProviderError(
            "no_valid_provider", "no provider entry names the sender with an address"
        )

    def _get_providers(self, remote: PeerID, request: Message) -> Message:
        """Known providers (ourselves included, with current addresses) + closer peers."""
        key = self._provider_key(request)
        stored = self._providers.get(key, self._clock(), self.config.max_providers_per_response)
        me = self._self_id()
        local = any(p.peer_id == me for p in stored) or self._providers.is_local(key)
        return self._providers_answer(remote, key, stored, local)

    async def _get_providers_async(self, remote: PeerID, request: Message) -> Message:
        """:meth:`_get_providers` with the store read off the event loop."""
        key = self._provider_key(request)
        stored = await self._providers.get_async(
            key, self._clock(), self.config.max_providers_per_response
        )
        me = self._self_id()
        local = any(p.peer_id == me for p in stored) or (
            await self._providers.is_local_async(key)
        )
        return self._providers_answer(remote, key, stored, local)

    @staticmethod
    def _provider_key(request: Message) -> bytes:
        key = request.key
        if not 0 < len(key) <= MAX_PROVIDER_KEY_SIZE:
            raise MalformedRequestError("bad_provider_key", f"provider key of {len(key)} bytes")
        return key

    def _providers_answer(
        self, remote: PeerID, key: bytes, stored: list[PeerInfo], local: bool
    ) -> Message:
        me = self._view.self_info()
        providers: list[PeerInfo] = []
        for info in stored:
            if info.peer_id == me.peer_id:
                info = me
            elif not info.addrs:
                known = self._view.peer_info(info.peer_id)
                if known is not None and known.addrs:
                    info = PeerInfo(info.peer_id, known.addrs)
            providers.append(info)
        if local and all(p.peer_id != me.peer_id for p in providers):
            providers.insert(0, me)
        providers = distinct_peers(providers, require_addrs=False)
        response = Message(type=Message.GET_PROVIDERS, key=key)
        return self._fill(response, providers, self._closer(remote, key))

    def _ping(self, remote: PeerID, request: Message) -> Message:
        """Deprecated but still echoed by go and js."""
        response = Message()
        response.CopyFrom(request)
        return response
