"""Who may drive the daemon over HTTP: Kubo's browser rules for the RPC API, plus a Host check.

Why: the RPC API has no authentication, so whatever can send it a request controls
the node (rewrite the bootstrap list, announce keys, make it dial any host:port).
A web page open in the user's browser can send such requests: a cross-origin
"simple" POST needs no CORS preflight, and DNS rebinding makes a hostile name
resolve to 127.0.0.1 so that its requests are even same-origin. Kubo's answer
(go-ipfs-cmds ``http/handler.go`` and ``http/config.go``, tested by sharness
``t0401-api-browser-security``), which :class:`ApiGuard` follows under ``/api/v0/``:

- POST only: OPTIONS answers 204 with ``Allow: OPTIONS, POST``, anything else 405
  ``405 - Method Not Allowed`` (a GET is what an ``<img src>`` or a link sends);
- 403 ``403 - Forbidden`` when an ``Origin`` is present and not allowed, when a
  ``Referer`` is present and its origin is not allowed, and when a POST carries
  neither while its ``User-Agent`` starts with ``Mozilla`` (a browser that
  dropped them);
- allowed origins by default ``http(s)://127.0.0.1:<port>``, ``http(s)://[::1]:<port>``,
  ``http(s)://localhost:<port>`` with the port the request arrived on, plus those
  configured (``*`` allows any, as Kubo's ``API.HTTPHeaders``); requests without
  Origin and Referer from non-browser clients (our CLI, curl) pass. We also allow
  the page's own origin (``Origin`` equal to the request's Host when that Host is
  an address or ``localhost``), which is what "same origin as the API" means.
  An allowed cross-origin request gets CORS headers naming its origin.

Kubo has no Host check; a rebinding page's own requests carry its own Origin,
which the rules above already refuse, but a plain GET to ``/debug/metrics`` or
``/routing/v1`` carries none. So, as geth's ``--http.vhosts``, :class:`HostCheck`
refuses (403) a ``Host`` that does not name the bound address: on a loopback
address only loopback literals and ``localhost``; on a specific address that one
(and loopback); on ``0.0.0.0``/``::`` any IP literal (rebinding needs a DNS name);
other names only when configured (``*`` turns the check off). It applies to every
path of the API server; the separate Delegated Routing server keeps its open
CORS and takes the same check only as an option.
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

API_PATH: Final = "/api/v0"
"""The prefix the browser rules guard (Kubo's ``APIPath``)."""

LOOPBACK_NAMES: Final = frozenset({"localhost"})
"""Host names that always mean this machine."""

EXPOSED_HEADERS: Final = "X-Stream-Output, X-Chunked-Output, X-Content-Length"
"""What an allowed cross-origin page may read (go-ipfs-cmds ``AllowedExposedHeaders``)."""

_ALLOW: Final = "OPTIONS, POST"
_CORS_ORIGIN_KEY: Final = web.RequestKey("zikade_cors_origin", str)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def split_host(value: str) -> str | None:
    """The host of a ``Host`` header value (lower-case, no brackets, no port); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if _ip(host) is None or (rest and not _is_port(rest)):
            return None
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            host = value
        elif not port.isdigit() or ":" in host:
            return None
    host = host.lower().rstrip(".")
    return host or None


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit()


@dataclass(frozen=True, slots=True)
class HostCheck:
    """Refuses requests whose ``Host`` does not name the address the server is bound to.

    ``bound`` is the host the server listens on, as configured (an address or a
    name); ``names`` are further accepted host names (lower-case), ``*`` any.
    A request without ``Host`` (HTTP/1.0; never a browser) passes.
    """

    bound: str = "127.0.0.1"
    names: frozenset[str] = frozenset()

    @classmethod
    def for_bind(cls, bound: str, names: Iterable[str] = ()) -> HostCheck:
        """The check for a server bound to ``bound``, also accepting ``names``."""
        return cls(bound.strip("[]").lower(), frozenset(n.strip().lower() for n in names))

    @property
    def disabled(self) -> bool:
        """Whether ``*`` turned the check off."""
        return "*" in self.names

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header may proceed."""
        if host_header is None or self.disabled:
            return True
        host = split_host(host_header)
        return host is not None and self.names_this_server(host)

    def names_this_server(self, host: str) -> bool:
        """Whether ``host`` (from :func:`split_host`) is the bound address, loopback or listed."""
        if host in LOOPBACK_NAMES or host in self.names or host == self.bound:
            return True
        ip = _ip(host)
        if ip is None:
            return False
        if ip.is_loopback:
            return True
        bound = _ip(self.bound)
        # bound to a name: it may resolve to any of our addresses; literals cannot be rebound
        return bound is None or bound.is_unspecified or ip == bound

    def middleware(self) -> Middleware:
        """An aiohttp middleware answering 403 to a foreign Host on every path of its app."""

        @web.middleware
        async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.allows(request.headers.get(hdrs.HOST)):
                return forbidden(request, "foreign Host header (possible DNS rebinding)")
            return await handler(request)

        return check_host


def forbidden(request: web.Request, why: str) -> web.Response:
    """Kubo's 403 answer, logged as Kubo does (``API blocked request … (possible CSRF)``)."""
    log.warning("API blocked %s %s: %s", request.method, request.path[:200], why)
    return web.Response(status=403, text="403 - Forbidden\n")


@dataclass(frozen=True, slots=True)
class ApiGuard:
    """The RPC API's rules (see the module docstring): Host, POST only, Origin/Referer/User-Agent.

    ``allowed_origins`` are added to Kubo's loopback defaults (``*`` allows any).
    """

    host: HostCheck = field(default_factory=HostCheck)
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def for_bind(
        cls, bound: str, *, hosts: Iterable[str] = (), origins: Iterable[str] = ()
    ) -> ApiGuard:
        """The guard of an API server bound to ``bound`` with extra Host names and origins."""
        extra = frozenset(o.strip().rstrip("/").lower() for o in origins)
        return cls(HostCheck.for_bind(bound, hosts), extra)

    def origin_allowed(self, origin: str, request: web.Request) -> bool:
        """Whether a page of ``origin`` (``scheme://host[:port]``) may call the API."""
        origin = origin.strip().lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        port = _local_port(request)
        if port is not None and origin in _default_origins(port):
            return True
        return self._same_origin(origin, request.headers.get(hdrs.HOST))

    def _same_origin(self, origin: str, host_header: str | None) -> bool:
        if host_header is None:
            return False
        scheme, sep, authority = origin.partition("://")
        host = split_host(host_header)
        if not sep or scheme not in ("http", "https") or host is None:
            return False
        if host not in LOOPBACK_NAMES and _ip(host) is None:
            return False  # a name could be a rebinding one even when the Host check is off
        return authority == host_header.strip().lower() and self.host.names_this_server(host)

    def refusal(self, request: web.Request) -> str | None:
        """Why go-ipfs-cmds would answer 403 (``allowOrigin``, ``allowReferer``,
        ``allowUserAgent``), or None when the request may proceed."""
        origin = request.headers.get(hdrs.ORIGIN)
        referer = request.headers.get(hdrs.REFERER)
        if origin and not self.origin_allowed(origin, request):
            return f"Origin {origin[:100]!r} not allowed (possible CSRF)"
        if referer:
            ref_origin = _referer_origin(referer)
            if ref_origin is None or not self.origin_allowed(ref_origin, request):
                return f"Referer {referer[:100]!r} not allowed (possible CSRF)"
        if (
            request.method == hdrs.METH_POST
            and not origin
            and not referer
            and request.headers.get(hdrs.USER_AGENT, "").startswith("Mozilla")
        ):
            return "a browser request without Origin or Referer (possible CSRF)"
        return None

    def middleware(self) -> Middleware:
        """An aiohttp middleware enforcing the Host check everywhere and the rest under /api/v0."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.host.allows(request.headers.get(hdrs.HOST)):
                return forbidden(request, "foreign Host header (possible DNS rebinding)")
            path = request.path
            if path != API_PATH and not path.startswith(API_PATH + "/"):
                return await handler(request)
            if request.method == hdrs.METH_OPTIONS:
                return self._options(request)
            if request.method != hdrs.METH_POST:
                log.warning("the RPC API does not support %s requests", request.method)
                return web.Response(
                    status=405, text="405 - Method Not Allowed\n", headers={"Allow": _ALLOW}
                )
            why = self.refusal(request)
            if why is not None:
                return forbidden(request, why)
            origin = request.headers.get(hdrs.ORIGIN)
            if origin:
                request[_CORS_ORIGIN_KEY] = origin
            return await handler(request)

        return guard

    def _options(self, request: web.Request) -> web.Response:
        origin = request.headers.get(hdrs.ORIGIN)
        wanted = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        if not origin or not wanted:  # not a preflight: say what is allowed
            return web.Response(status=204, headers={"Allow": _ALLOW})
        if not self.origin_allowed(origin, request) or wanted.upper() != hdrs.METH_POST:
            return forbidden(request, f"preflight from {origin[:100]!r} for {wanted[:20]!r}")
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": hdrs.METH_POST,
            "Vary": "Origin",
        }
        asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
        if asked:
            headers["Access-Control-Allow-Headers"] = asked[:1024]
        return web.Response(status=204, headers=headers)

    def install(self, app: web.Application) -> None:
        """Put the guard on ``app`` (before it starts) with CORS headers for allowed origins."""
        app.middlewares.append(self.middleware())
        app.on_response_prepare.append(_add_cors_headers)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.get(_CORS_ORIGIN_KEY)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"


def _default_origins(port: int) -> frozenset[str]:
    return frozenset(
        f"{scheme}://{host}:{port}"
        for scheme in ("http", "https")
        for host in ("127.0.0.1", "[::1]", "localhost")
    )


def _local_port(request: web.Request) -> int | None:
    """The port the request arrived on (Kubo fills its ``<port>`` from the listener)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


def _referer_origin(referer: str) -> str | None:
    """``scheme://host[:port]`` of a Referer (Go's ``u.Scheme + "://" + u.Host``); None if bad."""
    try:
        parts = urllib.parse.urlsplit(referer.strip())
    except ValueError:
        return None
    authority = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not authority:
        return None
    return f"{parts.scheme}://{authority}".lower()
