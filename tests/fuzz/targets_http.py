"""Fuzz targets of the Delegated Routing V1 server: its request-input parsers, and the
server itself on 127.0.0.1 fed the same inputs (see ``targets.py``)."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from hypothesis import strategies as st

from zikade_py.dht.messages import PeerInfo
from zikade_py.http.routing_v1 import RoutingV1Config, add_routing_v1_routes
from zikade_py.http.routing_v1_util import (
    MEDIA_IPNS_RECORD,
    BadIdError,
    FilterError,
    RecordFilter,
    accepts_exactly,
    parse_cid,
    parse_key,
    parse_peer_id,
    wants_ndjson,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .cases import B58, ID_TEXT, KEY_BYTES, MA_WORDS, PEER, cases, dispatch
from .engine import Crash, Target

# --- routing v1 HTTP inputs ------------------------------------------------------------------

_VALID_IDS = [
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    PEER.to_base58(),
    PEER.to_cid_string("base32"),
    PEER.to_cid_string("base36"),
]


@st.composite
def _mangled_id(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_VALID_IDS))
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 3))
    return text[:at] + draw(st.text(alphabet=B58 + "=-_/%", max_size=3)) + text[at + cut :]


_path_ids = st.one_of(ID_TEXT, _mangled_id())


def _routing_path(text: str) -> None:
    for parse in (parse_cid, parse_peer_id, parse_key):
        with contextlib.suppress(BadIdError):
            parse(text)


_filter_terms = st.lists(
    st.one_of(
        st.sampled_from(
            ["tcp", "!ip6", "quic-v1", "webtransport", "unknown", "!", "", " ", "ip4/x"]
        ),
        st.text(max_size=12),
    ),
    max_size=8,
).map(",".join)
_record = st.fixed_dictionaries(
    {"Schema": st.just("peer"), "ID": st.just("x")},
    optional={
        "Addrs": st.lists(
            st.one_of(st.text(max_size=30), MA_WORDS.map(lambda w: f"/{w}/")), max_size=4
        ),
        "Protocols": st.lists(st.text(max_size=20), max_size=3) | st.none(),
    },
)


def _routing_filter(addrs: str | None, protocols: str | None, record: dict[str, Any]) -> None:
    RecordFilter.from_query(addrs, protocols).apply(record)


_media = st.one_of(
    st.sampled_from(
        ["application/json", "application/x-ndjson", MEDIA_IPNS_RECORD, "*/*", "application/*"]
    ),
    st.text(max_size=20),
)
_accept = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.lists(
        st.tuples(_media, st.one_of(st.just(""), st.text(max_size=8).map(lambda q: f";q={q}"))),
        max_size=4,
    ).map(lambda parts: ", ".join(media + q for media, q in parts)),
)


def _routing_accept(accept: str | None) -> None:
    wants_ndjson(accept)
    accepts_exactly(accept, MEDIA_IPNS_RECORD)


ROUTING_V1 = Target(
    "routing_v1",
    "Delegated Routing V1 request inputs: {cid} / {peer-id} / {key} / IPNS {name} path "
    "segments, filter-addrs and filter-protocols query values, Accept headers",
    cases(
        path=_path_ids,
        filter=st.tuples(st.none() | _filter_terms, st.none() | _filter_terms, _record),
        accept=_accept,
    ),
    dispatch({"path": _routing_path, "filter": _routing_filter, "accept": _routing_accept}),
    (BadIdError, FilterError),
)


# --- the same inputs through the server (aiohttp on 127.0.0.1) -------------------------------


class _Node:
    """A routing node with little to say: two peers for every lookup, no IPNS records."""

    def __init__(self) -> None:
        addrs = tuple(
            Multiaddr.parse(a) for a in ("/ip4/127.0.0.1/tcp/4001", "/ip6/::1/udp/1/quic-v1")
        )
        self.peers = [PeerInfo(PEER, addrs), PeerInfo(PeerID.from_bytes(_OTHER), ())]

    async def find_peer(self, peer: PeerID, *, timeout: float | None = None) -> PeerInfo:
        if peer == PEER:
            return self.peers[0]
        raise LookupError("not found")

    async def find_providers(
        self, cid: str, *, count: int = 20, timeout: float | None = None
    ) -> AsyncIterator[PeerInfo]:
        for info in self.peers[:count]:
            yield info

    async def get_closest_peers(
        self, key: bytes, *, timeout: float | None = None
    ) -> list[PeerInfo]:
        return list(self.peers)

    async def get_value(self, key: bytes, *, timeout: float | None = None) -> bytes:
        raise LookupError("no record")

    async def put_value(self, key: bytes, value: bytes, *, timeout: float | None = None) -> None:
        return None


_OTHER = b"\x00\x05hello"  # an identity-multihash peer id


class _Server:
    """One server per event loop (the engine replaces its loop after a hang)."""

    loop: asyncio.AbstractEventLoop | None = None
    port = 0
    runner: web.AppRunner | None = None


async def _port() -> int:
    loop = asyncio.get_running_loop()
    if _Server.loop is not loop:
        for name in ("aiohttp", "zikade_py.http"):  # 500s are counted, not printed
            logging.getLogger(name).setLevel(logging.CRITICAL)
        app = web.Application()
        add_routing_v1_routes(app, _Node(), RoutingV1Config(timeout=2.0))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        _Server.loop, _Server.runner = loop, runner
        _Server.port = server.sockets[0].getsockname()[1]
    return _Server.port


def _header(value: str) -> bytes:
    return value.replace("\r", "").replace("\n", "").encode("utf-8", "surrogateescape")


async def _http_request(
    method: str,
    route: str,
    ident: str,
    query: dict[str, str],
    accept: str | None,
    content_type: str | None,
    body: bytes,
) -> None:
    port = await _port()
    path = "/routing/v1/" + route + urllib.parse.quote(ident, safe="")
    if query:
        path += "?" + urllib.parse.urlencode(query)
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    if accept is not None:
        head.append(b"Accept: " + _header(accept))
    if content_type is not None:
        head.append(b"Content-Type: " + _header(content_type))
    head.append(b"Content-Length: %d" % len(body))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        response = await reader.read()
    finally:
        writer.close()
    status = response.split(b" ", 2)[1:2]
    if status == [b"500"] or not response:
        raise Crash(f"{method} {path}: {response[:300]!r}")


_route = st.sampled_from(["providers/", "peers/", "ipns/", "dht/closest/peers/", "", "x/"])
_query = st.dictionaries(
    st.sampled_from(["filter-addrs", "filter-protocols", "x"]),
    _filter_terms | st.text(max_size=20),
    max_size=3,
)

ROUTING_V1_HTTP = Target(
    "routing_v1_http",
    "the Delegated Routing V1 server itself on 127.0.0.1: every route and method with "
    "fuzzed path ids, filter queries, Accept and Content-Type headers and IPNS bodies "
    "(a 500 or no answer is a crash)",
    st.tuples(
        st.sampled_from(["GET", "GET", "HEAD", "PUT", "OPTIONS", "POST"]),
        _route,
        st.sampled_from(_VALID_IDS) | _path_ids,
        _query,
        _accept,
        st.none() | st.sampled_from([MEDIA_IPNS_RECORD, "text/plain"]) | st.text(max_size=20),
        st.one_of(st.binary(max_size=200), KEY_BYTES),
    ),
    lambda case: _http_request(*case),
    (),
)
