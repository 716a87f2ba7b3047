"""The thin RPC client's HTTP/1.1 reading, against canned replies from a loopback socket.

The daemon (aiohttp) sends one chunk per NDJSON line, but nothing promises that:
lines split across chunks, an error object as the last line, a non-200 error
document and a daemon that is not there must all come out right.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from zikade_cli.common import DEFAULT_TRACE_ENDPOINT
from zikade_cli.rpc import NotConnectedError, ThinClient

from zikade_py import telemetry
from zikade_py.http.errors import DaemonUnavailableError, RpcError


def _chunked(*parts: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Chunked-Output: 1\r\n\r\n"
    return head + body


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(reply)`` → a client for a one-shot server that answers ``reply`` to a request."""
    servers: list[socket.socket] = []

    def start(reply: bytes) -> ThinClient:
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        threading.Thread(target=answer, daemon=True).start()
        return ThinClient("127.0.0.1", srv.getsockname()[1])

    yield start
    for srv in servers:
        srv.close()


def test_lines_split_across_chunks(serve) -> None:
    client = serve(_chunked(b'{"Type":4,"ID":"a"}\n{"Ty', b'pe":4,', b'"ID":"b"}\n', b"\n"))
    docs = list(client.stream("routing/findprovs", ["x"], timeout=5))
    assert [d["ID"] for d in docs] == ["a", "b"]


def test_error_object_as_the_last_line(serve) -> None:
    error = b'{"Message":"boom","Code":0,"Type":"error"}\n'
    client = serve(_chunked(b'{"Type":0,"ID":"a"}\n', error))
    got: list[dict[str, object]] = []
    with pytest.raises(RpcError, match="boom"):
        got.extend(client.stream("dht/query", ["x"], timeout=5))
    assert got == [{"Type": 0, "ID": "a"}]


def test_error_document_with_status_400(serve) -> None:
    body = b'{"Message":"invalid peer ID","Code":1,"Type":"error"}'
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with pytest.raises(RpcError, match="invalid peer ID") as info:
        serve(reply).request("routing/findpeer", ["x"], timeout=5)
    assert info.value.client_error and info.value.status == 400


def test_one_document_without_length(serve) -> None:
    doc = serve(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"ID":"me"}').request("id", timeout=5)
    assert doc == {"ID": "me"}


def test_truncated_chunk_is_a_lost_daemon(serve) -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Chunked-Output: 1\r\n\r\n40\r\n{"
    with pytest.raises(DaemonUnavailableError):
        list(serve(reply).stream("routing/findpeer", ["x"], timeout=5))


def test_nobody_listening_is_not_connected(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ThinClient("127.0.0.1", port)
    assert not client.reachable()
    with pytest.raises(NotConnectedError):
        client.request("version", timeout=2)
    (tmp_path / "api").write_text(f"/ip4/127.0.0.1/tcp/{port}\n")
    found = ThinClient.for_repo(tmp_path)
    assert found is not None and (found.host, found.port) == ("127.0.0.1", port)
    assert ThinClient.for_repo(tmp_path / "nothing") is None


def test_trace_default_matches_telemetry() -> None:
    assert DEFAULT_TRACE_ENDPOINT == telemetry.DEFAULT_OTLP_HTTP_ENDPOINT
