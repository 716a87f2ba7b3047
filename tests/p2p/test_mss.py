"""multistream-select 1.0.0: WIRE.md §3 bytes, both roles, pipelining, na, limits, real TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from zikade_py.p2p.io import BufferedReader, TcpStream
from zikade_py.p2p.mss import (
    MAX_PROPOSALS,
    MULTISTREAM_ID,
    LazyNegotiatedReader,
    NegotiationError,
    ProtocolNotSupportedError,
    encode_message,
    handle_negotiation,
    read_message,
    select_protocol,
    select_protocol_lazy,
)

from .mss_pipe import MemoryStream, feed, memory_pipe

pytestmark = pytest.mark.timeout(30)

HEADER = bytes.fromhex("132f6d756c746973747265616d2f312e302e300a")
NA = bytes.fromhex("036e610a")

# WIRE.md §3.1 (ids whose hex is abbreviated there are checked by structure).
WIRE_VECTORS = {
    "/multistream/1.0.0": "132f6d756c746973747265616d2f312e302e300a",
    "/noise": "072f6e6f6973650a",
    "/tls/1.0.0": "0b2f746c732f312e302e300a",
    "/yamux/1.0.0": "0d2f79616d75782f312e302e300a",
    "/ipfs/id/1.0.0": "0f2f697066732f69642f312e302e300a",
    "/ipfs/kad/1.0.0": "102f697066732f6b61642f312e302e300a",
    "na": "036e610a",
    "ls": "036c730a",
}


@pytest.mark.parametrize(("text", "hexed"), WIRE_VECTORS.items())
def test_wire_vectors(text: str, hexed: str) -> None:
    assert encode_message(text) == bytes.fromhex(hexed)


@pytest.mark.parametrize(
    ("text", "length"), [("/ipfs/id/push/1.0.0", 0x14), ("/ipfs/ping/1.0.0", 0x11)]
)
def test_wire_prefixes(text: str, length: int) -> None:
    assert encode_message(text) == bytes((length,)) + text.encode() + b"\n"


async def test_read_message_roundtrip() -> None:
    data = b"".join(encode_message(t) for t in WIRE_VECTORS)
    reader = BufferedReader(feed(data, chunk=3))
    assert [await read_message(reader) for _ in WIRE_VECTORS] == list(WIRE_VECTORS)


def test_encode_rejects_local_misuse() -> None:
    for bad in ["", "a\nb", "x" * 1024]:
        with pytest.raises(ValueError):
            encode_message(bad)
    assert len(encode_message("x" * 1023)) == 2 + 1024  # exactly at the limit


@pytest.mark.parametrize(
    "data",
    [
        b"",  # EOF
        b"\x05/a",  # EOF inside a message
        b"\x00",  # zero length: no newline
        b"\x03abc",  # no trailing newline
        b"\x81\x08" + b"a" * 1024 + b"\n",  # 1025 > 1024
        b"\x80\x00",  # non-minimal varint
        b"\xff" * 10,  # overlong varint
        b"\x03\xff\xfe\n",  # not UTF-8
    ],
)
async def test_read_message_rejects(data: bytes) -> None:
    with pytest.raises(NegotiationError):
        await read_message(BufferedReader(feed(data)))


async def test_read_message_accepts_1024() -> None:
    body = b"a" * 1023 + b"\n"
    reader = BufferedReader(feed(b"\x80\x08" + body))
    assert await read_message(reader) == "a" * 1023


async def test_initiator_writes_header_and_proposal_at_once_without_waiting() -> None:
    ours, theirs = memory_pipe()
    task = asyncio.create_task(select_protocol(ours, ["/noise"]))
    # A rust listener says nothing until it has the dialer's header.
    got = await theirs.read()
    assert got == HEADER + encode_message("/noise")
    assert ours.writes == [HEADER + encode_message("/noise")]
    await theirs.write(HEADER + encode_message("/noise") + b"early")
    proto, reader = await task
    assert proto == "/noise"
    assert await reader.read_exactly(5) == b"early"


async def test_initiator_falls_back_after_na() -> None:
    ours, theirs = memory_pipe()
    task = asyncio.create_task(select_protocol(ours, ["/tls/1.0.0", "/noise"]))
    await theirs.write(HEADER + NA + encode_message("/noise"))
    proto, _ = await task
    assert proto == "/noise"
    assert ours.writes == [HEADER + encode_message("/tls/1.0.0"), encode_message("/noise")]


async def test_initiator_all_na() -> None:
    ours, theirs = memory_pipe()
    await theirs.write(HEADER + NA + NA)
    with pytest.raises(ProtocolNotSupportedError):
        await select_protocol(ours, ["/a", "/b"])


@pytest.mark.parametrize(
    "reply",
    [
        encode_message("/multistream/2.0.0") + encode_message("/a"),  # wrong header
        HEADER + encode_message("/b"),  # echo of something else
        HEADER,  # EOF before the reply
        NA + HEADER + encode_message("/a"),  # answer before the header
    ],
)
async def test_initiator_rejects_broken_responder(reply: bytes) -> None:
    ours, theirs = memory_pipe()
    await theirs.write(reply)
    await theirs.close()
    with pytest.raises(NegotiationError) as info:
        await select_protocol(ours, ["/a"])
    assert not isinstance(info.value, ProtocolNotSupportedError)


async def test_initiator_rejects_empty_list() -> None:
    ours, _ = memory_pipe()
    with pytest.raises(ValueError):
        await select_protocol(ours, [])


async def test_responder_keeps_pipelined_bytes_even_after_half_close() -> None:
    # The go/js lazy initiator: header, proposal and request in one write, then FIN.
    stream = feed(HEADER + encode_message("/ipfs/kad/1.0.0") + b"\x03req")
    proto, reader = await handle_negotiation(stream, lambda p: p == "/ipfs/kad/1.0.0")
    assert proto == "/ipfs/kad/1.0.0"
    assert await reader.read_length_prefixed(100) == b"req"
    assert await reader.at_eof()
    assert stream.writes == [HEADER, encode_message("/ipfs/kad/1.0.0")]


async def test_responder_writes_header_before_reading() -> None:
    ours, theirs = memory_pipe()
    task = asyncio.create_task(handle_negotiation(ours, lambda p: p == "/noise"))
    assert await theirs.read() == HEADER  # go listeners do this; the dialer may wait for it
    await theirs.write(HEADER + encode_message("/noise"))
    assert (await task)[0] == "/noise"


async def test_responder_answers_na_to_unknown_and_ls() -> None:
    stream = feed(
        HEADER
        + encode_message("/tls/1.0.0")
        + encode_message("ls")
        + encode_message(MULTISTREAM_ID)
        + encode_message("/noise")
    )
    seen: list[str] = []

    def supported(p: str) -> bool:
        seen.append(p)
        return p == "/noise"

    proto, _ = await handle_negotiation(stream, supported)
    assert proto == "/noise"
    assert stream.writes == [HEADER, NA, NA, NA, encode_message("/noise")]
    assert "ls" not in seen


async def test_responder_refuses_unechoable_proposals_even_if_permissive() -> None:
    # Found by the fuzz test: an empty id or one with a newline cannot be echoed.
    stream = feed(HEADER + b"\x01\n" + b"\x04a\nb\n" + encode_message("/ok"))
    proto, _ = await handle_negotiation(stream, lambda p: True)
    assert proto == "/ok"
    assert stream.writes == [HEADER, NA, NA, encode_message("/ok")]


async def test_responder_bounds_proposals() -> None:
    data = HEADER + encode_message("/x") * (MAX_PROPOSALS + 5)
    stream = feed(data)
    with pytest.raises(NegotiationError, match="proposals"):
        await handle_negotiation(stream, lambda p: False)
    assert stream.writes.count(NA) == MAX_PROPOSALS


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode_message("/noise"),  # no header
        HEADER,  # header, then EOF
        HEADER + b"\x90\x10" + b"a" * 2000,  # oversize proposal
        HEADER + b"\x02/a",  # proposal without newline
    ],
)
async def test_responder_rejects(data: bytes) -> None:
    with pytest.raises(NegotiationError):
        await handle_negotiation(feed(data), lambda p: True)


async def test_both_roles_over_memory_pipe() -> None:
    dialer, listener = memory_pipe()
    server = asyncio.create_task(handle_negotiation(listener, lambda p: p == "/yamux/1.0.0"))
    proto, _ = await select_protocol(dialer, ["/mplex/6.7.0", "/yamux/1.0.0"])
    assert proto == "/yamux/1.0.0"
    assert (await server)[0] == "/yamux/1.0.0"


async def test_lazy_select_pipelines_and_reads_response() -> None:
    dialer, listener = memory_pipe()
    reader = await select_protocol_lazy(dialer, "/ipfs/kad/1.0.0", b"\x04ping")
    assert isinstance(reader, LazyNegotiatedReader)
    assert dialer.writes == [HEADER + encode_message("/ipfs/kad/1.0.0") + b"\x04ping"]

    proto, server_reader = await handle_negotiation(listener, lambda p: p == "/ipfs/kad/1.0.0")
    assert proto == "/ipfs/kad/1.0.0"
    assert await server_reader.read_length_prefixed(10) == b"ping"
    await listener.write(b"\x04pong")

    assert not reader.verified
    assert await reader.read_length_prefixed(10) == b"pong"
    assert reader.verified


async def test_lazy_select_na_raises_and_keeps_raising() -> None:
    dialer, listener = memory_pipe()
    reader = await select_protocol_lazy(dialer, "/ipfs/kad/1.0.0", b"\x01x")
    await listener.write(HEADER + NA)
    with pytest.raises(ProtocolNotSupportedError):
        await reader.read_some()
    with pytest.raises(ProtocolNotSupportedError):
        await reader.read_exactly(1)


async def test_lazy_select_rejects_bad_header() -> None:
    dialer, listener = memory_pipe()
    reader = await select_protocol_lazy(dialer, "/p", b"")
    await listener.write(encode_message("/other") + encode_message("/p"))
    with pytest.raises(NegotiationError):
        await reader.at_eof()


async def test_lazy_take_buffer_needs_verification() -> None:
    dialer, listener = memory_pipe()
    reader = await select_protocol_lazy(dialer, "/p", b"")
    with pytest.raises(RuntimeError):
        reader.take_buffer()
    await listener.write(HEADER + encode_message("/p") + b"rest")
    await reader.verify()
    assert reader.take_buffer() == b"rest"


# --- real TCP on 127.0.0.1 --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_server(
    handler: object,
) -> AsyncIterator[int]:
    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        stream = TcpStream(r, w)
        try:
            await handler(stream)  # type: ignore[operator]
        finally:
            await stream.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def connect(port: int) -> TcpStream:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    return TcpStream(r, w)


async def test_tcp_negotiation_with_na_and_pipelined_payload() -> None:
    received: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()

    async def handler(stream: TcpStream) -> None:
        try:
            proto, reader = await handle_negotiation(stream, lambda p: p == "/noise")
            payload = await reader.read_exactly(6)
            received.set_result((proto, payload))
            await stream.write(b"reply!")
        except Exception as exc:  # surface server-side failures in the test
            received.set_exception(exc)

    async with tcp_server(handler) as port:
        client = await connect(port)
        try:
            # First the go default (/tls/1.0.0, refused), then /noise; payload rides along.
            task = asyncio.create_task(select_protocol(client, ["/tls/1.0.0", "/noise"]))
            proto, reader = await task
            assert proto == "/noise"
            await client.write(b"hello!")
            assert await asyncio.wait_for(received, 10) == ("/noise", b"hello!")
            assert await reader.read_exactly(6) == b"reply!"
        finally:
            await client.close()


async def test_tcp_lazy_with_half_close() -> None:
    async def handler(stream: TcpStream) -> None:
        proto, reader = await handle_negotiation(stream, lambda p: p == "/ipfs/ping/1.0.0")
        assert proto == "/ipfs/ping/1.0.0"
        body = await reader.read_exactly(32)
        assert await reader.at_eof()  # the initiator already sent FIN
        await stream.write(body)

    async with tcp_server(handler) as port:
        client = await connect(port)
        try:
            reader = await select_protocol_lazy(client, "/ipfs/ping/1.0.0", bytes(range(32)))
            client.writer.write_eof()
            assert await reader.read_exactly(32) == bytes(range(32))
        finally:
            await client.close()


async def test_tcp_all_na() -> None:
    async def handler(stream: TcpStream) -> None:
        with contextlib.suppress(NegotiationError):
            await handle_negotiation(stream, lambda p: False)

    async with tcp_server(handler) as port:
        client = await connect(port)
        try:
            with pytest.raises(ProtocolNotSupportedError):
                await select_protocol(client, ["/a/1", "/b/1", "/c/1"])
        finally:
            await client.close()


async def test_memory_stream_helper_is_sane() -> None:
    # Guards the helper the tests above rely on: bytes arrive in order, then EOF.
    a, b = memory_pipe()
    await a.write(b"ab")
    await a.write(b"cd")
    await a.close()
    assert isinstance(b, MemoryStream)
    assert await b.read(3) == b"ab"
    assert await b.read() == b"cd"
    assert await b.read() == b""
