"""A thin, synchronous client of the daemon's RPC API: one POST over a plain socket.

Why not the async client of :mod:`zikade_py.http.client`: a command answered by
the daemon only needs one POST and a stream of JSON lines. Loading aiohttp,
asyncio and the node for that made every such command cost half a second.
Even ``http.client`` costs 20 ms of imports (email parsing, ssl) for nothing
we use, so this speaks the little HTTP/1.1 it needs itself: a request with
``Connection: close``, a status line, headers, and a body sized by
``Content-Length``, chunked, or ended by the close. It speaks the API of
:mod:`zikade_py.http.rpc` (Kubo's shape): ``POST /api/v0/<command>?arg=…``,
one JSON document or NDJSON with ``X-Chunked-Output: 1``, errors as
``{"Message", "Code", "Type": "error"}`` (also as the last line of a stream).
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from zikade_py.http.api_addr import api_base_url
from zikade_py.http.errors import DaemonUnavailableError, RpcError
from zikade_py.http.repo import read_api_file

JSONObj = dict[str, Any]

API_PREFIX = "/api/v0/"






class NotConnectedError(DaemonUnavailableError):
    """The daemon could not be reached at all: nothing was sent, the caller may run locally."""


@dataclass
class ThinClient:
    """One daemon's API at ``host:port``; each call is one HTTP/1.1 request."""

    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (``traceparent`` when the command is traced)."""

    @property
    def base_url(self) -> str:
        """``http://host:port`` (for messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def for_repo(cls, repo: Path) -> ThinClient | None:
        """A client for the daemon named in ``<repo>/api``, or None if there is no such file."""
        address = read_api_file(repo)
        if address is None:
            return None
        try:
            url = urllib.parse.urlsplit(api_base_url(address))
        except ValueError:
            return None
        if url.hostname is None or url.port is None:
            return None
        return cls(url.hostname, url.port)

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether something accepts connections at the address (a stale API file: no).

        One loopback connect, checked before a command's span starts, so a
        command that falls back to an in-process node is one trace, not two.
        """
        try:
            socket.create_connection((self.host, self.port), timeout=timeout).close()
        except OSError:
            return False
        return True

    def _lost(self, exc: BaseException) -> DaemonUnavailableError:
        return DaemonUnavailableError(f"lost the daemon at {self.base_url}: {exc}")

    def _open(
        self,
        command: str,
        args: Sequence[str],
        options: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[socket.socket, _Reply]:
        query = urllib.parse.urlencode([*(("arg", a) for a in args), *options.items()])
        path = API_PREFIX + command + (f"?{query}" if query else "")
        payload = body if body is not None else b""
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        if body is not None:
            head.append("Content-Type: application/octet-stream")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise NotConnectedError(f"cannot reach the daemon at {self.base_url}: {exc}") from None
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            return sock, _Reply.read_head(sock.makefile("rb"))
        except TimeoutError:
            sock.close()
            raise
        except (OSError, ValueError) as exc:
            sock.close()
            raise self._lost(exc) from None

    def request(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> JSONObj:
        """Call a command answered with one JSON document."""
        for doc in self.stream(command, args, options, body, timeout=timeout):
            return doc
        raise RpcError("the daemon answered nothing")

    def raw(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, str], Iterator[bytes]]:
        """Call a command answered with raw bytes (``cat``, ``block/get``): the reply's
        headers and its body as it arrives; an error document raises :class:`RpcError`."""
        sock, reply = self._open(command, args, options or {}, body, timeout)
        if reply.status != 200 or reply.headers.get("content-type", "").startswith(
            "application/json"
        ):
            try:
                _document(reply.status, b"".join(reply.body()))
            finally:
                reply.file.close()
                sock.close()
            raise RpcError(f"the daemon answered HTTP {reply.status} without a body")

        def body_chunks() -> Iterator[bytes]:
            try:
                yield from reply.body()
            except (OSError, ValueError) as exc:
                raise self._lost(exc) from None
            finally:
                reply.file.close()
                sock.close()

        return reply.headers, body_chunks()

    def stream(
        self,
        command: str,
        args: Sequence[str] = (),
        options: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> Iterator[JSONObj]:
        """Call a command; yield each NDJSON object (or the one document); raise a trailing error.

        :class:`NotConnectedError` before the first object means nothing reached
        the daemon. ``timeout`` bounds each wait for data, not the whole stream.
        """
        sock, reply = self._open(command, args, options or {}, body, timeout)
        try:
            if reply.status != 200 or reply.headers.get("x-chunked-output") != "1":
                yield _document(reply.status, b"".join(reply.body()))
                return
            for line in reply.lines():
                if not line.strip():
                    continue
                doc = _decode(line)
                if doc.get("Type") == "error":
                    raise RpcError(str(doc.get("Message", "")), code=int(doc.get("Code", 0)))
                yield doc
        except TimeoutError:
            raise
        except (OSError, ValueError) as exc:
            raise self._lost(exc) from None
        finally:
            reply.file.close()
            sock.close()


@dataclass
class _Reply:
    """An HTTP/1.1 response being read: status, headers (lower-case names), then the body."""

    file: BinaryIO
    status: int
    headers: dict[str, str]

    @classmethod
    def read_head(cls, file: BinaryIO) -> _Reply:
        """Read the status line and the headers; :class:`ValueError` if they are not HTTP."""
        status_line = file.readline(_MAX_LINE)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while (line := file.readline(_MAX_LINE)) not in (b"\r\n", b"\n", b""):
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return cls(file, int(parts[1]), headers)

    def body(self) -> Iterator[bytes]:
        """The body as it arrives (de-chunked)."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.file.readline(_MAX_LINE).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    return
                data = self.file.read(size)
                self.file.readline(_MAX_LINE)  # the CRLF after each chunk
                if len(data) < size:
                    raise ValueError("the daemon closed the stream mid-chunk")
                yield data
        elif "content-length" in self.headers:
            yield self.file.read(int(self.headers["content-length"]))
        else:
            yield self.file.read()

    def lines(self) -> Iterator[bytes]:
        """The body split into lines as they complete (NDJSON)."""
        pending = b""
        for data in self.body():
            pending += data
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending


_MAX_LINE = 65536


def _decode(raw: bytes) -> JSONObj:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RpcError(f"undecodable answer from the daemon: {raw[:100]!r}") from None
    if not isinstance(doc, dict):
        raise RpcError(f"unexpected answer from the daemon: {raw[:100]!r}")
    return doc


def _document(status: int, raw: bytes) -> JSONObj:
    """The one JSON document of a reply; an error document or any non-200 is :class:`RpcError`."""
    try:
        doc = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and doc.get("Type") == "error":
        raise RpcError(str(doc.get("Message", "")), code=int(doc.get("Code", 0)), status=status)
    if status != 200:
        text = raw.decode(errors="replace").strip()[:200]
        raise RpcError(f"daemon answered HTTP {status}: {text}", status=status)
    if not isinstance(doc, dict):
        raise RpcError(f"unexpected answer from the daemon: {raw[:100]!r}")
    return doc
