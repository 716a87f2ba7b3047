"""The RPC client the CLI uses to reach a running daemon.

It finds the daemon the way Kubo does (the multiaddr in ``<repo>/api``), speaks
the API of :mod:`zikade_py.http.rpc`, and sends a W3C ``traceparent`` header
taken from the current span so the daemon's spans join the CLI's trace.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from zikade_py.http.api_addr import api_base_url
from zikade_py.http.errors import DaemonUnavailableError, RpcError
from zikade_py.http.repo import read_api_file

JSONObj = dict[str, Any]

__all__ = [
    "API_PREFIX",
    "DaemonUnavailableError",
    "JSONObj",
    "RpcClient",
    "RpcError",
    "api_base_url",
]

API_PREFIX = "/api/v0/"
_PROPAGATOR = TraceContextTextMapPropagator()






def trace_headers() -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) of the current span; empty without one."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers)
    return headers


class RpcClient:
    """An async context manager holding one HTTP session to the daemon at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_repo(cls, repo: Path) -> RpcClient | None:
        """A client for the daemon named in ``<repo>/api``, or None if there is no such file."""
        address = read_api_file(repo)
        if address is None:
            return None
        try:
            return cls(api_base_url(address))
        except ValueError:
            return None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RpcClient used outside 'async with'")
        return self._session

    async def alive(self, timeout: float = 3.0) -> bool:
        """Whether a daemon answers ``version`` within ``timeout`` seconds."""
        try:
            await self.request("version", timeout=timeout)
        except (DaemonUnavailableError, RpcError, TimeoutError):
            return False
        return True

    def _post(
        self,
        command: str,
        args: Sequence[str],
        options: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> Any:
        params: list[tuple[str, str]] = [("arg", a) for a in args]
        params.extend(options.items())
        headers = trace_headers()
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        return self._http().post(
            self.base_url + API_PREFIX + command,
            params=params,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def request(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> JSONObj:
        """Call a command answered with one JSON document."""
        try:
            async with self._post(command, args, options or {}, body, timeout) as resp:
                doc = await _json(resp, await resp.read())
        except aiohttp.ClientConnectionError as exc:
            raise DaemonUnavailableError(
                f"cannot reach the daemon at {self.base_url}: {exc}"
            ) from None
        if isinstance(doc, dict):
            return doc
        raise RpcError(f"unexpected answer from the daemon: {doc!r}"[:200])

    async def stream(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncIterator[JSONObj]:
        """Call a command; yield each NDJSON object; raise the trailing error object.

        A command answered with one plain JSON document (no ``X-Chunked-Output``)
        yields that document.
        """
        try:
            async with self._post(command, args, options or {}, body, None) as resp:
                if resp.status != 200 or resp.headers.get("X-Chunked-Output") != "1":
                    doc = await _json(resp, await resp.read())
                    if not isinstance(doc, dict):
                        raise RpcError(f"unexpected answer from the daemon: {doc!r}"[:200])
                    yield doc
                    return
                async for line in resp.content:
                    if not line.strip():
                        continue
                    doc = _decode(line)
                    if doc.get("Type") == "error":
                        raise RpcError(str(doc.get("Message", "")), code=int(doc.get("Code", 0)))
                    yield doc
        except aiohttp.ClientConnectionError as exc:
            raise DaemonUnavailableError(f"lost the daemon at {self.base_url}: {exc}") from None


def _decode(raw: bytes) -> JSONObj:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RpcError(f"undecodable answer from the daemon: {raw[:100]!r}") from None
    if not isinstance(doc, dict):
        raise RpcError(f"unexpected answer from the daemon: {raw[:100]!r}")
    return doc


async def _json(resp: aiohttp.ClientResponse, raw: bytes) -> Any:
    """The JSON body; an error document (or any non-200) becomes :class:`RpcError`."""
    try:
        doc = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and doc.get("Type") == "error":
        raise RpcError(
            str(doc.get("Message", "")), code=int(doc.get("Code", 0)), status=resp.status
        )
    if resp.status != 200:
        text = raw.decode(errors="replace").strip()[:200]
        raise RpcError(f"daemon answered HTTP {resp.status}: {text}", status=resp.status)
    return doc
