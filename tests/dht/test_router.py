"""The Router against hand-written kad peers on real TCP (DESIGN.md §3, WIRE.md §8.3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zikade_py import telemetry
from zikade_py.dht.messages import (
    Message,
    PeerInfo,
    add_provider,
    find_node,
    make_record,
    put_value,
)
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.router import (
    BadResponseError,
    DialFailedError,
    RequestTimeoutError,
    Router,
)
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import encode_uvarint

from .conftest import LOOPBACK_HOST, FakeKadPeer, black_hole, directory, wait_for

pytestmark = pytest.mark.timeout(30)

MH = b"\x12\x20" + bytes(range(32))


@pytest_asyncio.fixture
async def host() -> AsyncIterator[Host]:
    h = Host(PrivateKey.generate(), LOOPBACK_HOST)
    await h.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        yield h
    finally:
        await h.close()


def know(host: Host, peer: FakeKadPeer) -> None:
    host.peerstore.add_addrs(peer.peer_id, peer.host.listen_addrs, 600)


def stranger() -> PeerInfo:
    pid = PeerID.from_public_key(PrivateKey.generate().public_key)
    return PeerInfo(pid, (Multiaddr.from_tcp("127.0.0.1", 4001),))


async def test_find_node_answer_feeds_the_address_book_but_never_with_ourselves(
    host: Host,
) -> None:
    other = stranger()
    me = PeerInfo(host.peer_id, (Multiaddr.from_tcp("127.0.0.1", 9),))
    d = await directory(lambda: [other, me, other]).start()
    try:
        know(host, d)
        router = Router(host)
        closer = await router.get_closer_nodes(d.peer_id, MH)
        assert closer == [other]  # ourselves and the repeat are gone
        assert host.peerstore.addrs(other.peer_id) == list(other.addrs)
        assert Multiaddr.from_tcp("127.0.0.1", 9) not in host.peerstore.addrs(host.peer_id)
        assert d.requests[0].type == Message.FIND_NODE and d.requests[0].key == MH
        assert router.open_streams == 0
    finally:
        await d.close()


async def test_add_provider_is_never_waited_for(host: Host) -> None:
    hole = await black_hole().start()
    try:
        know(host, hole)
        router = Router(host, request_timeout=5)
        me = PeerInfo(host.peer_id, tuple(host.listen_addrs))
        reply = await asyncio.wait_for(
            router.send_message(hole.peer_id, add_provider(MH, me)), 2
        )
        assert reply is None
        await wait_for(lambda: len(hole.requests) == 1)
        assert hole.requests[0].type == Message.ADD_PROVIDER
    finally:
        await hole.close()


async def test_deadline_fails_the_request_and_resets_its_stream(host: Host) -> None:
    hole = await black_hole().start()
    try:
        know(host, hole)
        router = Router(host)
        now = time.monotonic  # the router's clock: deadlines are absolute on it
        with pytest.raises(RequestTimeoutError):
            await router.send_message(hole.peer_id, find_node(MH), deadline=now() + 0.2)
        await wait_for(lambda: hole.resets == 1)
        assert router.in_flight == 0 and router.open_streams == 0
        with pytest.raises(RequestTimeoutError):  # a deadline already past: nothing sent
            await router.send_message(hole.peer_id, find_node(MH), deadline=now() - 1)
        assert len(hole.requests) == 1
    finally:
        await hole.close()


async def test_cancel_request_resets_the_stream_at_once(host: Host) -> None:
    hole = await black_hole().start()
    try:
        know(host, hole)
        router = Router(host)
        task = asyncio.create_task(router.send_message(hole.peer_id, find_node(MH), request_id=7))
        await wait_for(lambda: len(hole.requests) == 1)
        assert router.in_flight == 1 and router.open_streams == 1
        cancelled = router.cancel_request(7)
        assert cancelled is task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.in_flight == 0 and router.open_streams == 0
        assert router.requests_cancelled == 1
        await wait_for(lambda: hole.resets == 1)
        assert router.cancel_request(7) is None
    finally:
        await hole.close()


async def test_oversized_answer_is_refused_before_its_body_is_read(host: Host) -> None:
    async def huge(stream: Stream) -> None:
        await stream.reader.read_length_prefixed(1 << 20)
        await stream.write(encode_uvarint(5 * 1024 * 1024) + b"\x08")  # 5 MiB announced
        await asyncio.sleep(5)

    peer = Host(PrivateKey.generate(), LOOPBACK_HOST)
    peer.set_stream_handler(KAD_PROTOCOL, huge)
    await peer.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
    try:
        host.peerstore.add_addrs(peer.peer_id, peer.listen_addrs, 600)
        router = Router(host)
        with pytest.raises(BadResponseError):
            await asyncio.wait_for(router.send_message(peer.peer_id, find_node(MH)), 3)
        assert router.open_streams == 0
    finally:
        await peer.close()


async def test_put_value_that_is_not_echoed_fails(host: Host) -> None:
    async def wrong(_peer: PeerID, request: Message) -> Message | None:
        response = Message(type=Message.PUT_VALUE, key=request.key)
        response.record.CopyFrom(make_record(request.key, b"something else"))
        return response

    peer = await FakeKadPeer(wrong).start()
    try:
        know(host, peer)
        key = b"/pk/" + MH
        with pytest.raises(BadResponseError):
            await Router(host).send_message(peer.peer_id, put_value(key, make_record(key, b"v")))
    finally:
        await peer.close()


async def test_unreachable_peer_is_a_dial_failure(host: Host) -> None:
    other = stranger()
    with pytest.raises(DialFailedError):
        await Router(host).send_message(other.peer_id, find_node(MH))  # no address known
    host.peerstore.add_addrs(other.peer_id, [Multiaddr.from_tcp("127.0.0.1", 1)], 600)
    with pytest.raises(DialFailedError):
        await Router(host, request_timeout=2).send_message(other.peer_id, find_node(MH))
    with pytest.raises(DialFailedError):
        await Router(host).send_message(host.peer_id, find_node(MH))


async def test_request_span_is_a_child_of_the_event_span_context(
    host: Host, spans: InMemorySpanExporter
) -> None:
    d = await directory(lambda: []).start()
    try:
        know(host, d)
        with telemetry.tracer().start_as_current_span("parent") as parent:
            ctx = parent.get_span_context()
        await Router(host).send_message(d.peer_id, find_node(MH), span_context=ctx, request_id=3)
        (span,) = [s for s in spans.get_finished_spans() if s.name == "Router.SendMessage"]
        assert span.parent is not None and span.parent.span_id == ctx.span_id
        assert span.context.trace_id == ctx.trace_id
        attrs = dict(span.attributes or {})
        assert attrs["message_type"] == "FIND_NODE"
        assert attrs["peer_id"] == str(d.peer_id)
        assert attrs["key"] == telemetry.key_attribute(MH)
        assert attrs["request_id"] == 3
    finally:
        await d.close()


async def test_close_cancels_every_request(host: Host) -> None:
    hole = await black_hole().start()
    try:
        know(host, hole)
        router = Router(host)
        tasks = [
            asyncio.create_task(router.send_message(hole.peer_id, find_node(MH), request_id=i))
            for i in range(3)
        ]
        await wait_for(lambda: len(hole.requests) == 3)
        await router.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert router.in_flight == 0 and router.open_streams == 0
    finally:
        await hole.close()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _by_type(points: list[Any]) -> dict[str, Any]:
    return {dict(p.attributes)["message_type"]: p for p in points}


async def test_metrics_count_requests_messages_bytes_and_latency_by_message_type(
    host: Host,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])  # local: nothing global is touched
    d = await directory(lambda: [stranger()]).start()
    hole = await black_hole().start()
    try:
        know(host, d)
        know(host, hole)
        router = Router(host, meter=provider.get_meter("test"))
        me = PeerInfo(host.peer_id, tuple(host.listen_addrs))
        find = find_node(MH)
        await router.send_message(d.peer_id, find)
        await router.send_message(d.peer_id, find)
        announce = add_provider(MH, me)
        assert await router.send_message(d.peer_id, announce) is None
        with pytest.raises(RequestTimeoutError):  # answered type, no answer: an error
            await router.send_message(hole.peer_id, find, deadline=time.monotonic() + 0.2)
        with pytest.raises(DialFailedError):  # no address: a message that was never sent
            await router.send_message(stranger().peer_id, announce)

        assert (router.requests_sent, router.requests_failed) == (3, 1)
        assert (router.messages_sent, router.messages_failed) == (2, 1)
        points = _points(reader)
        assert "sent_requests" not in points  # exported from Node.stats() by the daemon
        assert _by_type(points["sent_messages"])["ADD_PROVIDER"].value == 2
        assert set(_by_type(points["sent_messages"])) == {"ADD_PROVIDER"}
        assert _by_type(points["sent_message_errors"])["ADD_PROVIDER"].value == 1
        latency = _by_type(points["outbound_request_latency"])
        assert set(latency) == {"FIND_NODE"} and latency["FIND_NODE"].count == 2  # answers only
        assert latency["FIND_NODE"].sum > 0
        sent = _by_type(points["sent_bytes"])
        # bodies without the length prefix: 3 FIND_NODE were written (one unanswered)
        assert sent["FIND_NODE"].count == 3 and sent["FIND_NODE"].sum == 3 * find.ByteSize()
        assert sent["ADD_PROVIDER"].count == 1
        assert sent["ADD_PROVIDER"].sum == announce.ByteSize()
        for name in ("sent_messages", "sent_bytes", "outbound_request_latency"):
            for point in points[name]:
                assert set(point.attributes) == {"message_type"}  # no peer or key labels
    finally:
        await d.close()
        await hole.close()
        provider.shutdown()


class Recorder:
    """A RequestObserver that writes down what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, PeerID]] = []

    def on_dialing(self, peer: PeerID) -> None:
        self.heard.append(("dialing", peer))

    def on_sending(self, peer: PeerID) -> None:
        self.heard.append(("sending", peer))


async def test_observer_hears_a_dial_only_without_a_connection_and_sending_after(
    host: Host,
) -> None:
    d = await directory(lambda: []).start()
    try:
        know(host, d)
        router = Router(host)
        first, second = Recorder(), Recorder()
        await router.send_message(d.peer_id, find_node(MH), observer=first)
        assert first.heard == [("dialing", d.peer_id), ("sending", d.peer_id)]
        await router.send_message(d.peer_id, find_node(MH), observer=second)  # connected now
        assert second.heard == [("sending", d.peer_id)]
        ghost, failed = stranger(), Recorder()
        host.peerstore.add_addrs(ghost.peer_id, [Multiaddr.from_tcp("127.0.0.1", 1)], 600)
        with pytest.raises(DialFailedError):
            await router.send_message(ghost.peer_id, find_node(MH), observer=failed)
        assert failed.heard == [("dialing", ghost.peer_id)]  # never sent
    finally:
        await d.close()
