"""The aioquic internals p2p/quic/hooks.py relies on: this test fails loudly when an aioquic
release moves them (pyproject bounds aioquic; raise the bound only with this green)."""

from __future__ import annotations

import importlib.metadata

from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from zikade_py.p2p.quic.hooks import check_internals


def test_every_internal_we_use_is_there() -> None:
    check_internals()  # raises AioquicInternalsError naming what is missing


def test_internals_have_the_shapes_we_use() -> None:
    ctx = tls.Context(is_client=False)
    assert ctx._request_client_certificate is False
    assert ctx._peer_certificate is None
    conn = QuicConnection(configuration=QuicConfiguration(is_client=True))
    assert conn._handshake_confirmed is False
    assert isinstance(conn._streams, dict)
    # the send buffer we measure for write backpressure
    conn.send_stream_data(0, b"x" * 10)
    assert len(conn._streams[0].sender._buffer) == 10


def test_installed_aioquic_is_within_the_pinned_range() -> None:
    major, minor = (int(x) for x in importlib.metadata.version("aioquic").split(".")[:2])
    assert (1, 2) <= (major, minor) < (1, 8)
