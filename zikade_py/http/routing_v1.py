"""The Delegated Routing V1 HTTP API (HTTP-ROUTING-V1.md) served from a Node.

Why: browsers and light clients (Helia's ``@helia/delegated-routing-v1-http-api-client``,
boxo's client) use this API instead of running a DHT. :func:`add_routing_v1_routes`
mounts it under ``/routing/v1`` as a sub-application, so its CORS headers, its
400-for-unknown-paths and 501-for-unknown-methods rules stay inside that prefix and
leave the daemon's other endpoints alone.

Endpoints: ``GET /routing/v1/providers/{cid}``, ``GET /routing/v1/peers/{peer-id}``,
``GET|PUT /routing/v1/ipns/{name}``, ``GET /routing/v1/dht/closest/peers/{key}``.
JSON by default (at most 100 records, collected before writing); NDJSON only when
``Accept`` names ``application/x-ndjson`` (each record flushed as the query finds
it: an open connection means "still working"). Undecodable ids are 400, filter
values outside the spec 422; "nothing found" is 200 with no records (404 only for
closest peers, as the spec says). Cache headers follow the spec's templates.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.records import InvalidRecordError, ipns_key
from zikade_py.dht.records.ipns import MAX_RECORD_SIZE, parse_ipns_record, verify_ipns_record
from zikade_py.http.api_guard import HostCheck
from zikade_py.http.disconnect import ClientGoneError, client_gone_response, until_disconnect
from zikade_py.http.routing_v1_util import (
    MEDIA_IPNS_RECORD,
    MEDIA_JSON,
    MEDIA_NDJSON,
    BadIdError,
    FilterError,
    RecordFilter,
    accepts_exactly,
    parse_cid,
    parse_key,
    parse_peer_id,
    peer_record,
    sort_by_distance,
    wants_ndjson,
)
from zikade_py.p2p.peer_id import PeerID

__all__ = [
    "AMINO_MAX_TTL",
    "PREFIX",
    "TRANSFER_PROTOCOLS",
    "RoutingNode",
    "RoutingV1Config",
    "add_routing_v1_routes",
]

_log = logging.getLogger(__name__)


DISCONNECT_POLL: Final = 0.5
"""Seconds between checks whether the client of a running query is still connected."""

PREFIX: Final = "/routing/v1"
"""Where the API lives."""

AMINO_MAX_TTL: Final = 172_800
"""``stale-while-revalidate`` / ``stale-if-error``: the 48 h provider-record window."""

TTL_FOUND: Final = 300
"""``max-age`` of a response with records (5 minutes, as the spec suggests)."""

TTL_EMPTY: Final = 15
"""``max-age`` of a response without records (15 seconds, as the spec suggests)."""

IPNS_DEFAULT_TTL: Final = 60
"""``max-age`` of an IPNS record without a positive TTL."""


TRANSFER_PROTOCOLS: Final = (
    ("/ipfs/bitswap", "transport-bitswap"),
    ("/fil/data-transfer", "transport-graphsync-filecoinv1"),
)
"""libp2p protocol id prefix → the transfer protocol name records and filters use."""


class RoutingNode(Protocol):
    """The part of the Node's public API the routes use (``zikade_py.dht.Node`` has it)."""

    async def find_peer(self, peer: PeerID, *, timeout: float | None = None) -> PeerInfo: ...

    def find_providers(
        self, cid: str, *, count: int = 20, timeout: float | None = None
    ) -> AsyncIterator[PeerInfo]: ...

    async def get_closest_peers(
        self, key: bytes, *, timeout: float | None = None
    ) -> list[PeerInfo]: ...

    async def get_value(self, key: bytes, *, timeout: float | None = None) -> bytes: ...

    async def put_value(self, key: bytes, value: bytes, *, timeout: float | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class RoutingV1Config:
    """Limits of the server (someguy's defaults where it has one)."""

    timeout: float | None = 30.0
    """Deadline of each routing query; None uses the Node's ``query_timeout``."""
    records_limit: int = 100
    """Most records in a JSON response (the spec's SHOULD)."""
    streaming_records_limit: int = 1000
    """Most records in an NDJSON stream."""
    closest_peers_limit: int = 20
    """Most peers from ``/dht/closest/peers`` (the DHT bucket size)."""
    max_concurrent: int = 64
    """Routing requests served at once; more get 429 with ``Retry-After``."""
    host_check: HostCheck | None = None
    """Refuse (403) a ``Host`` that does not name the server (DNS rebinding); None: any
    Host. Off by default: the API is public and read-only, CORS stays open either way."""


# ---------------------------------------------------------------------------------------------
# Headers


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


def _cache_control(found: bool) -> str:
    ttl = TTL_FOUND if found else TTL_EMPTY
    # the spec's template, "public" twice included, as boxo writes it
    return (
        f"public, max-age={ttl}, public, stale-while-revalidate={AMINO_MAX_TTL}, "
        f"stale-if-error={AMINO_MAX_TTL}"
    )


def _routing_headers(content_type: str, found: bool) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Cache-Control": _cache_control(found),
        "Last-Modified": _http_date(time.time()),
        "Vary": "Accept",
    }


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


def _cors(response: web.StreamResponse, methods: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Expose-Headers"] = "Etag, Vary, Last-Modified, Expires"


def _methods_for(path: str) -> str:
    return "GET, PUT, OPTIONS" if path.startswith(f"{PREFIX}/ipns/") else "GET, OPTIONS"


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every response under the prefix, errors included, removes CORS limits."""
    _cors(response, _methods_for(request.path))


# ---------------------------------------------------------------------------------------------
# The handlers


class _Routes:
    def __init__(self, node: RoutingNode, config: RoutingV1Config) -> None:
        self.node = node
        self.config = config
        self.in_flight = 0

    # -- shared machinery

    def _admit(self) -> None:
        if self.in_flight >= self.config.max_concurrent:
            raise web.HTTPTooManyRequests(
                text="too many routing requests in flight\n", headers={"Retry-After": "1"}
            )

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        self._admit()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    @staticmethod
    def _filter(request: web.Request) -> RecordFilter:
        try:
            return RecordFilter.from_query(
                request.query.get("filter-addrs"), request.query.get("filter-protocols")
            )
        except FilterError as exc:
            raise web.HTTPUnprocessableEntity(text=f"{exc}\n") from None

    def _protocols(self, peer: PeerID) -> tuple[str, ...]:
        """Transfer protocol names (``transport-bitswap``) of what identify told us ``peer``
        speaks; empty when unknown. DHT records themselves carry none, and raw libp2p ids
        (``/ipfs/kad/1.0.0``) are not what ``filter-protocols`` talks about."""
        host = getattr(self.node, "host", None)
        store = getattr(host, "peerstore", None)
        if store is None:
            return ()
        try:
            spoken = tuple(store.protocols(peer))
        except Exception:  # an unknown peer or a closing host: protocols are optional
            return ()
        return tuple(
            name for prefix, name in TRANSFER_PROTOCOLS if any(p.startswith(prefix) for p in spoken)
        )

    def _record(self, info: PeerInfo) -> dict[str, Any]:
        return peer_record(info, self._protocols(info.peer_id))

    async def _respond(
        self,
        request: web.Request,
        field: str,
        records: AsyncIterator[dict[str, Any]],
        *,
        empty_status: int = 200,
    ) -> web.StreamResponse:
        """JSON (collected, ≤ records_limit) or NDJSON (flushed per record) from ``records``;
        the query stops as soon as the client goes away."""
        if wants_ndjson(request.headers.get("Accept")):
            response = web.StreamResponse(status=200)
            work = self._stream(request, response, records, empty_status=empty_status)
        else:
            response = None
            work = self._collect(field, records, empty_status=empty_status)
        try:
            return await until_disconnect(request, work, DISCONNECT_POLL)
        except ClientGoneError:
            if response is not None and response.prepared:
                return response
            return client_gone_response()

    async def _collect(
        self, field: str, records: AsyncIterator[dict[str, Any]], *, empty_status: int
    ) -> web.StreamResponse:
        collected: list[dict[str, Any]] = []
        async with _closing(records):
            async for record in records:
                collected.append(record)
                if len(collected) >= self.config.records_limit:
                    break
        found = bool(collected)
        return web.Response(
            status=200 if found else empty_status,
            body=json.dumps({field: collected}).encode("utf-8"),
            headers=_routing_headers(MEDIA_JSON, found),
        )

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        records: AsyncIterator[dict[str, Any]],
        *,
        empty_status: int,
    ) -> web.StreamResponse:
        # Headers go out with the first record, so Cache-Control can tell a hit from a miss.
        sent = 0
        async with _closing(records):
            try:
                async for record in records:
                    if not response.prepared:
                        response.headers.update(_routing_headers(MEDIA_NDJSON, True))
                        await response.prepare(request)
                    await response.write(json.dumps(record).encode("utf-8") + b"\n")
                    sent += 1
                    if sent >= self.config.streaming_records_limit:
                        break
            except ConnectionResetError:
                # the client went away: _closing() stops the query
                return response
            except Exception:
                if not response.prepared:
                    raise
                # headers are out: all we can do is end the stream early
                _log.exception("routing v1 stream %s failed", request.path)
                response.force_close()
                return response
        if not response.prepared:
            response.set_status(empty_status)
            response.headers.update(_routing_headers(MEDIA_NDJSON, False))
            await response.prepare(request)
        await response.write_eof()
        return response

    # -- GET /providers/{cid}

    async def providers(self, request: web.Request) -> web.StreamResponse:
        """Provider records of a CID's multihash, as the DHT finds them."""
        try:
            cid = parse_cid(request.match_info["cid"])
        except BadIdError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        record_filter = self._filter(request)
        cid_text = str(cid.set(version=1).encode("base32")) if cid.version == 0 else str(cid)
        limit = max(self.config.records_limit, self.config.streaming_records_limit)

        async def records() -> AsyncIterator[dict[str, Any]]:
            seen: set[PeerID] = set()
            found = self.node.find_providers(cid_text, count=limit, timeout=self.config.timeout)
            async with _closing(found):
                try:
                    async for info in found:
                        if info.peer_id in seen:
                            continue
                        seen.add(info.peer_id)
                        record = record_filter.apply(self._record(info))
                        if record is not None:
                            yield record
                except TimeoutError:
                    return

        async with self._slot():
            return await self._respond(request, "Providers", records())

    # -- GET /peers/{peer-id}

    async def peers(self, request: web.Request) -> web.StreamResponse:
        """The peer record of one peer id (its addresses), found through the DHT."""
        try:
            peer = parse_peer_id(request.match_info["peer_id"])
        except BadIdError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        record_filter = self._filter(request)

        async def records() -> AsyncIterator[dict[str, Any]]:
            try:
                info = await self.node.find_peer(peer, timeout=self.config.timeout)
            except (LookupError, TimeoutError):
                return
            record = record_filter.apply(self._record(info))
            if record is not None:
                yield record

        async with self._slot():
            return await self._respond(request, "Peers", records())

    # -- GET /dht/closest/peers/{key}

    async def closest_peers(self, request: web.Request) -> web.StreamResponse:
        """The peers closest to a key by XOR distance (≤ 20, closest first; 404 if none)."""
        try:
            key = parse_key(request.match_info["key"])
        except BadIdError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        record_filter = self._filter(request)

        async def records() -> AsyncIterator[dict[str, Any]]:
            try:
                peers = await self.node.get_closest_peers(key, timeout=self.config.timeout)
            except (LookupError, TimeoutError):
                return
            sent = 0
            for info in sort_by_distance(key, {p.peer_id: p for p in peers}.values()):
                record = record_filter.apply(self._record(info))
                if record is None:
                    continue
                yield record
                sent += 1
                if sent >= self.config.closest_peers_limit:
                    return

        async with self._slot():
            return await self._respond(request, "Peers", records(), empty_status=404)

    # -- GET|PUT /ipns/{name}

    @staticmethod
    def _ipns_name(request: web.Request) -> PeerID:
        try:
            return parse_peer_id(request.match_info["name"])
        except BadIdError as exc:
            raise web.HTTPBadRequest(text=f"invalid IPNS name: {exc}\n") from None

    async def get_ipns(self, request: web.Request) -> web.StreamResponse:
        """The best valid IPNS record of a name, or 200 without a record type if none."""
        name = self._ipns_name(request)
        if not accepts_exactly(request.headers.get("Accept"), MEDIA_IPNS_RECORD):
            raise web.HTTPNotAcceptable(
                text=f"retry with Accept: {MEDIA_IPNS_RECORD}\n", headers={"Vary": "Accept"}
            )
        async with self._slot():
            try:
                lookup = self.node.get_value(ipns_key(name), timeout=self.config.timeout)
                raw = await until_disconnect(request, lookup, DISCONNECT_POLL)
                record = parse_ipns_record(raw)
            except ClientGoneError:
                return client_gone_response()
            except (LookupError, TimeoutError, InvalidRecordError):
                # IPIP-513: 200 with any other content type means "no record found"
                return _text(
                    200,
                    f"no IPNS record found for {name}",
                    headers={
                        "Cache-Control": f"public, max-age={TTL_EMPTY}",
                        "Last-Modified": _http_date(time.time()),
                        "Vary": "Accept",
                    },
                )
        now = time.time()
        ttl_s = (record.ttl_ns or 0) // 1_000_000_000
        max_age = ttl_s if ttl_s > 0 else IPNS_DEFAULT_TTL
        expires = record.validity_ns / 1e9
        sig_ttl = max(0, int(expires - now))
        etag = hashlib.sha256(raw).hexdigest()[:32]
        return web.Response(
            body=raw,
            headers={
                "Content-Type": MEDIA_IPNS_RECORD,
                "Etag": f'"{etag}"',
                "Cache-Control": (
                    f"public, max-age={max_age}, public, stale-while-revalidate={sig_ttl}, "
                    f"stale-if-error={sig_ttl}"
                ),
                "Expires": _http_date(min(expires, 253402300799.0)),
                "Last-Modified": _http_date(now),
                "Vary": "Accept",
            },
        )

    async def put_ipns(self, request: web.Request) -> web.StreamResponse:
        """Publish a signed IPNS record for a name: 200 published, 400 invalid, 406 wrong type."""
        name = self._ipns_name(request)
        if request.content_type != MEDIA_IPNS_RECORD:
            raise web.HTTPNotAcceptable(text=f"retry with Content-Type: {MEDIA_IPNS_RECORD}\n")
        body = await _read_limited(request, MAX_RECORD_SIZE)
        try:
            verify_ipns_record(name, body, datetime.datetime.now(datetime.UTC))
        except InvalidRecordError as exc:
            raise web.HTTPBadRequest(text=f"invalid IPNS record: {exc}\n") from None
        async with self._slot():
            try:
                await self.node.put_value(ipns_key(name), body, timeout=self.config.timeout)
            except InvalidRecordError as exc:
                raise web.HTTPBadRequest(text=f"invalid IPNS record: {exc}\n") from None
            except (LookupError, TimeoutError) as exc:
                # stored locally and served from here; the network copy is best effort
                _log.info("IPNS put for %s reached no peer in time: %s", name, exc)
        return _text(200, "published")

    # -- OPTIONS, unknown methods, unknown paths

    @staticmethod
    async def preflight(request: web.Request) -> web.StreamResponse:
        """CORS preflight: any origin, the path's methods, the headers asked for."""
        wanted = request.headers.get("Access-Control-Request-Headers", "Content-Type, Accept")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Headers": wanted[:1024],
                "Access-Control-Max-Age": "86400",
            },
        )

    @staticmethod
    async def not_implemented(request: web.Request) -> web.StreamResponse:
        """A method this API does not support on an existing path: 501."""
        raise web.HTTPNotImplemented(text=f"{request.method} is not supported here\n")

    @staticmethod
    async def unknown_path(request: web.Request) -> web.StreamResponse:
        """A path the API does not define: 400, as the spec's error codes say."""
        if request.method == "OPTIONS":
            return await _Routes.preflight(request)
        raise web.HTTPBadRequest(text=f"unknown path {request.path[:200]}\n")






@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[Any]) -> AsyncIterator[None]:
    """Close an async iterator when leaving (stops a query whose reader went away)."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or 400 if it is larger than ``limit`` (an IPNS record ≤ 10 KiB)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPBadRequest(text=f"IPNS record larger than {limit} bytes\n")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise web.HTTPBadRequest(text=f"IPNS record larger than {limit} bytes\n")
    return b"".join(chunks)


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unexpected failures become a one-line 500 (still with CORS headers), never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        _log.exception("routing v1 %s %s failed", request.method, request.path)
        return _text(500, "internal error")


def add_routing_v1_routes(
    app: web.Application, node: RoutingNode, config: RoutingV1Config | None = None
) -> None:
    """Mount the Delegated Routing V1 API of ``node`` on ``app`` under ``/routing/v1``."""
    config = config or RoutingV1Config()
    routes = _Routes(node, config)
    middlewares: list[Middleware] = [_errors_middleware]
    if config.host_check is not None:
        middlewares.insert(0, config.host_check.middleware())
    sub = web.Application(middlewares=middlewares)
    sub.on_response_prepare.append(_on_prepare)

    def resource(
        path: str, handlers: Sequence[tuple[str, Callable[[web.Request], Awaitable[Any]]]]
    ) -> None:
        res = sub.router.add_resource(path)
        for method, handler in handlers:
            res.add_route(method, handler)
            if method == "GET":
                res.add_route("HEAD", handler)
        res.add_route("OPTIONS", routes.preflight)
        res.add_route("*", routes.not_implemented)

    resource("/providers/{cid}", [("GET", routes.providers)])
    resource("/peers/{peer_id}", [("GET", routes.peers)])
    resource("/ipns/{name}", [("GET", routes.get_ipns), ("PUT", routes.put_ipns)])
    resource("/dht/closest/peers/{key}", [("GET", routes.closest_peers)])
    sub.router.add_route("*", "/{tail:.*}", routes.unknown_path)
    app.add_subapp(PREFIX, sub)
