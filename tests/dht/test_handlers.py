"""KadServer over real TCP: every RPC, several requests per stream, stores, limits, lifecycle."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from typing import Any

import pytest

from zikade_py.dht import messages as m
from zikade_py.dht.handlers import KadServer, KadServerConfig
from zikade_py.dht.messages import MessageType, PeerInfo
from zikade_py.dht.protocol import KAD_PROTOCOL, KadRequestError, KadServerStateError
from zikade_py.dht.records import ipns_key, make_ipns_record, make_pk_record
from zikade_py.dht.stores import MAX_RECORD_AGE
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.mss import ProtocolNotSupportedError
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.yamux import StreamResetError

from .kad_harness import (
    NOW,
    NOW_DT,
    ListView,
    random_peer,
    served,
)

pytestmark = pytest.mark.timeout(60)

MH = b"\x12\x20" + hashlib.sha256(b"some content").digest()


def peer_ids(entries: list[PeerInfo]) -> list[PeerID]:
    return [p.peer_id for p in entries]


async def test_find_node_returns_k_closest_dialable_servers_without_self_or_requester() -> None:
    table = [random_peer() for _ in range(40)] + [PeerInfo(random_peer().peer_id, ())] * 3
    async with served(table=table) as s:
        client_info = PeerInfo(s.client.peer_id, tuple(s.client.listen_addrs))
        s.view.table += [client_info, s.view.me]  # a table may hold both; neither is returned
        kad = await s.open()
        target = random_peer().peer_id.multihash
        resp = await kad.request(m.find_node(target))
        assert m.message_type(resp) == MessageType.FIND_NODE
        assert resp.key == b""
        got = m.closer_peers(resp)
        expected = s.view.expected_closest(target, 20, {s.client.peer_id, s.host.peer_id})
        assert got == expected
        assert len(got) == 20
        assert s.view.asked[-1][0] == hashlib.sha256(target).digest()
        # the requester is the closest table peer to its own id, yet never returned
        own = s.client.peer_id.multihash
        got = m.closer_peers(await kad.request(m.find_node(own)))
        assert got == s.view.expected_closest(own, 20, {s.client.peer_id, s.host.peer_id})
        assert s.client.peer_id not in peer_ids(got)


async def test_find_node_for_our_own_id_returns_ourselves_even_with_an_empty_table() -> None:
    async with served() as s:
        kad = await s.open()
        resp = await kad.request(m.find_node(s.host.peer_id.multihash))
        assert m.closer_peers(resp) == [s.view.me]
        assert s.view.me.addrs == tuple(s.host.listen_addrs)
        s.view.table = [random_peer() for _ in range(5)]
        resp = await kad.request(m.find_node(s.host.peer_id.multihash))
        got = m.closer_peers(resp)
        assert got[0] == s.view.me
        assert len(got) == 6 and len(set(peer_ids(got))) == 6


async def test_find_node_puts_a_known_target_first_but_not_an_unknown_one() -> None:
    known, addrless = random_peer(2), random_peer()
    async with served(table=[random_peer() for _ in range(25)]) as s:
        s.view.book[known.peer_id] = known
        s.view.book[addrless.peer_id] = PeerInfo(addrless.peer_id, ())
        kad = await s.open()
        got = m.closer_peers(await kad.request(m.find_node(known.peer_id.multihash)))
        assert got[0] == known
        assert len(got) == 21 and peer_ids(got).count(known.peer_id) == 1
        got = m.closer_peers(await kad.request(m.find_node(addrless.peer_id.multihash)))
        assert addrless.peer_id not in peer_ids(got)
        assert len(got) == 20


async def test_several_requests_on_one_stream_and_add_provider_is_never_answered() -> None:
    async with served(table=[random_peer() for _ in range(5)]) as s:
        kad = await s.open()
        me = PeerInfo(s.client.peer_id, tuple(s.client.listen_addrs))
        assert m.message_type(await kad.request(m.ping())) == MessageType.PING
        await kad.send(m.add_provider(MH, me))  # no response may follow this one...
        resp = await kad.request(m.get_providers(MH))  # ...so this is the next answer
        assert m.message_type(resp) == MessageType.GET_PROVIDERS and resp.key == MH
        assert m.provider_peers(resp) == [me]
        assert len(m.closer_peers(resp)) == 5
        resp = await kad.request(m.find_node(MH))
        assert m.message_type(resp) == MessageType.FIND_NODE
        resp = await kad.request(m.get_value(b"/pk/nothing"))
        assert m.message_type(resp) == MessageType.GET_VALUE and not resp.HasField("record")
        await kad.close()
        async with asyncio.timeout(5):
            assert await kad.stream.read() == b""  # a clean end after our close, no stray bytes
        assert s.providers.get(MH, NOW) == [me]
        assert s.view.provided == [(MH, me)]
        assert [t for p, t in s.view.inbound if p == s.client.peer_id] == [
            MessageType.PING,
            MessageType.ADD_PROVIDER,
            MessageType.GET_PROVIDERS,
            MessageType.FIND_NODE,
            MessageType.GET_VALUE,
        ]
        assert s.server.stats.answered[MessageType.ADD_PROVIDER] == 1
        assert s.server.stats.errors == 0


async def test_add_provider_ignores_entries_naming_others_and_keeps_the_senders() -> None:
    async with served() as s:
        kad = await s.open()
        me = PeerInfo(s.client.peer_id, tuple(s.client.listen_addrs))
        other = random_peer()
        msg = m.add_provider(MH, other)
        msg.providerPeers.append(m.PeerInfo(me.peer_id, ()).to_pb())  # sender without addrs
        msg.providerPeers.append(me.to_pb())
        await kad.send(msg)
        resp = await kad.request(m.get_providers(MH))
        assert m.provider_peers(resp) == [me]
        assert s.providers.get(MH, NOW) == [me]


async def test_get_providers_lists_ourselves_with_current_addrs_and_fills_expired_addrs() -> None:
    stale = random_peer()
    async with served() as s:
        s.providers.add_local(MH, NOW)
        s.providers.add(MH, PeerInfo(stale.peer_id, ()), NOW)
        s.view.book[stale.peer_id] = stale
        kad = await s.open()
        got = m.provider_peers(await kad.request(m.get_providers(MH)))
        assert got[0] == s.view.me
        assert stale in got and len(got) == 2
        # stored as a provider (go stores self on provide): replaced by the current addrs
        s.providers.add(MH, PeerInfo(s.host.peer_id, ()), NOW)
        got = m.provider_peers(await kad.request(m.get_providers(MH)))
        assert peer_ids(got).count(s.host.peer_id) == 1
        assert s.view.me in got


async def test_put_value_pk_is_validated_stored_echoed_and_served_by_get_value() -> None:
    key, value = make_pk_record(PrivateKey.generate().public_key)
    async with served() as s:
        kad = await s.open()
        req = m.put_value(key, m.make_record(key, value))
        resp = await kad.request(req)
        assert m.message_type(resp) == MessageType.PUT_VALUE
        assert resp.key == key and resp.record.key == key and resp.record.value == value
        assert resp.record.timeReceived == m.format_time_received(NOW)
        assert not resp.closerPeers and not resp.providerPeers
        assert s.values.get(key, NOW) == (value, NOW)
        async with s.second_client() as other:
            kad2 = await s.open(other)
            resp = await kad2.request(m.get_value(key))
            assert resp.key == key
            assert resp.record.key == key and resp.record.value == value
            assert resp.record.timeReceived == "2026-01-01T00:00:00Z"


async def test_get_value_skips_records_older_than_48_hours() -> None:
    key, value = make_pk_record(PrivateKey.generate().public_key)
    async with served() as s:
        s.values.put(key, value, NOW - MAX_RECORD_AGE - 1)
        kad = await s.open()
        resp = await kad.request(m.get_value(key))
        assert resp.key == key and not resp.HasField("record")


async def test_put_value_ipns_keeps_the_better_record() -> None:
    owner = PrivateKey.generate()
    key = ipns_key(PeerID.from_public_key(owner.public_key))
    eol = NOW_DT + datetime.timedelta(hours=24)
    rec = {seq: make_ipns_record(owner, b"/ipfs/v%d" % seq, seq, eol) for seq in (1, 2, 3)}
    async with served() as s:
        kad = await s.open()
        resp = await kad.request(m.put_value(key, m.make_record(key, rec[2])))
        assert resp.record.value == rec[2]
        await kad.send(m.put_value(key, m.make_record(key, rec[1])))  # older: refused
        await kad.expect_reset()
        assert s.values.get(key, NOW) == (rec[2], NOW)
        assert s.server.stats.error_reasons.get("worse_record") == 1
        kad = await s.open()
        resp = await kad.request(m.put_value(key, m.make_record(key, rec[3])))
        assert resp.record.value == rec[3]
        resp = await kad.request(m.put_value(key, m.make_record(key, rec[3])))  # same: refresh
        assert resp.record.value == rec[3]
        assert s.values.get(key, NOW) == (rec[3], NOW)


async def test_an_expired_stored_ipns_record_loses_to_any_valid_one() -> None:
    owner = PrivateKey.generate()
    key = ipns_key(PeerID.from_public_key(owner.public_key))
    expired = make_ipns_record(owner, b"/ipfs/old", 9, NOW_DT - datetime.timedelta(seconds=1))
    fresh = make_ipns_record(owner, b"/ipfs/new", 1, NOW_DT + datetime.timedelta(hours=1))
    async with served() as s:
        s.values.put(key, expired, NOW)
        kad = await s.open()
        resp = await kad.request(m.put_value(key, m.make_record(key, fresh)))
        assert resp.record.value == fresh
        assert s.values.get(key, NOW) == (fresh, NOW)


async def test_responses_stay_within_16_kib_for_rust() -> None:
    table = [random_peer(30) for _ in range(40)]
    async with served(table=table) as s:
        for p in table[:200]:
            s.providers.add(MH, p, NOW)
        kad = await s.open()
        for req in (m.find_node(MH), m.get_providers(MH), m.get_value(b"/pk/x")):
            resp = await kad.request(req)
            size = len(m.encode_message(resp))
            assert size <= m.RUST_MAX_MESSAGE_SIZE
            assert resp.closerPeers or resp.providerPeers
        resp = await kad.request(m.get_providers(MH))
        assert len(resp.providerPeers) > 5  # providers take precedence over closer peers


async def test_per_peer_stream_limit_resets_extra_streams() -> None:
    async with served(KadServerConfig(max_concurrent_streams_per_peer=2)) as s:
        first, second = await s.open(), await s.open()
        assert m.message_type(await first.request(m.ping())) == MessageType.PING
        assert m.message_type(await second.request(m.ping())) == MessageType.PING
        # The refusal is a reset; it may overtake the protocol echo (the host sends
        # the echo and the reset without waiting), so it can surface while opening.
        try:
            third = await s.open()
        except StreamResetError:
            pass
        else:
            await third.expect_reset()
        assert s.server.stats.streams_refused == 1
        await first.close()
        async with asyncio.timeout(5):
            assert await first.stream.read() == b""
        fourth = await s.open()
        assert m.message_type(await fourth.request(m.ping())) == MessageType.PING


async def test_idle_timeout_resets_a_silent_stream_and_restarts_after_each_message() -> None:
    async with served(KadServerConfig(stream_idle_timeout=1.5)) as s:
        silent = await s.open()
        await silent.expect_reset(timeout=10)
        assert s.server.stats.error_reasons.get("idle_timeout") == 1
        busy = await s.open()
        for _ in range(5):  # 2 s in all, longer than the timeout: each message restarts it
            assert m.message_type(await busy.request(m.ping())) == MessageType.PING
            await asyncio.sleep(0.4)
        assert m.message_type(await busy.request(m.ping())) == MessageType.PING
        await busy.expect_reset(timeout=10)


async def test_detach_resets_open_streams_and_stops_serving_then_close_waits() -> None:
    async with served() as s:
        kad = await s.open()
        assert m.message_type(await kad.request(m.ping())) == MessageType.PING
        assert KAD_PROTOCOL in s.host.protocols
        s.server.detach()
        await kad.expect_reset()
        assert KAD_PROTOCOL not in s.host.protocols
        with pytest.raises(ProtocolNotSupportedError):
            await s.open()
        s.server.attach()
        kad = await s.open()
        assert m.message_type(await kad.request(m.ping())) == MessageType.PING
        await s.server.close()
        await kad.expect_reset()
        assert s.server.stats.streams_active == 0
        with pytest.raises(KadServerStateError):
            s.server.attach()


async def test_stats_count_requests_and_bytes() -> None:
    async with served() as s:
        kad = await s.open()
        await kad.request(m.ping())
        await kad.request(m.find_node(MH))
        stats = s.server.stats
        assert stats.received == {MessageType.PING: 1, MessageType.FIND_NODE: 1}
        assert stats.answered == stats.received
        assert stats.streams_opened == 1 and stats.streams_active == 1
        assert stats.bytes_received == m.ping().ByteSize() + m.find_node(MH).ByteSize()
        assert stats.bytes_sent > 0


def _offline_server(view: ListView) -> KadServer:
    from zikade_py.dht.records import amino_validator
    from zikade_py.dht.stores import MemoryProviderStore, MemoryValueStore
    from zikade_py.p2p.host import Host

    return KadServer(
        host=Host(PrivateKey.generate()),
        view=view,
        providers=MemoryProviderStore(),
        values=MemoryValueStore(),
        validator=amino_validator(clock=lambda: NOW_DT),
        clock=lambda: NOW,
    )


def test_dispatch_emits_a_span_and_metrics_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from zikade_py import telemetry
    from zikade_py.dht import handlers

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(telemetry, "tracer", lambda: tracer_provider.get_tracer("t"))
    monkeypatch.setattr(telemetry, "meter", lambda: meter_provider.get_meter("t"))
    handlers._instruments.cache_clear()
    try:
        remote = random_peer().peer_id
        server = _offline_server(ListView(random_peer()))
        server.dispatch(remote, m.find_node(MH))
        server.dispatch(remote, m.ping())
        with pytest.raises(KadRequestError):
            server.dispatch(remote, m.put_value(b"/x/y", m.make_record(b"/x/y", b"v")))
    finally:
        handlers._instruments.cache_clear()
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["DHT.Handle.FIND_NODE", "DHT.Handle.PING", "DHT.Handle.PUT_VALUE"]
    assert spans.get_finished_spans()[0].attributes["remote_id"] == str(remote)  # type: ignore[index]
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {
        metric.name: list(metric.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    received = {p.attributes["message_type"]: p.value for p in points["received_messages"]}
    assert received == {"FIND_NODE": 1, "PING": 1, "PUT_VALUE": 1}
    (error,) = points["received_message_errors"]
    assert error.attributes["reason"] == "invalid_record" and error.value == 1


async def test_find_node_builds_our_own_entry_only_when_asked_for_us() -> None:
    """self_info builds our announced addresses (scopes, confirmations): a FIND_NODE for
    another key must not pay for it per request (issue 9 acceptance 6), one for our id
    still gets our current entry first."""
    calls = 0

    class CountingView(ListView):
        def self_info(self) -> PeerInfo:
            nonlocal calls
            calls += 1
            return super().self_info()

    table = [random_peer() for _ in range(30)]
    async with served(table=table) as s:
        view = CountingView(s.view.me, s.view.table, s.view.book)
        s.server._view = view  # the same routing knowledge, counted
        kad = await s.open()
        for _ in range(5):
            resp = await kad.request(m.find_node(random_peer().peer_id.multihash))
            assert len(m.closer_peers(resp)) == 20
        assert calls <= 1, "our peer id is asked once, not our addresses per request"
        resp = await kad.request(m.find_node(s.view.me.peer_id.multihash))
        assert m.closer_peers(resp)[0] == s.view.me
