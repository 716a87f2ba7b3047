"""Arbitrary requests fed to ``KadServer.dispatch`` directly (no network).

Whatever a peer sends, the server raises only :class:`KadRequestError` (the
stream loop turns it into a reset), answers within the size rules, and stores
only what it should: valid records, and providers that are the sender itself.
"""

from __future__ import annotations

import datetime
import hashlib

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from zikade_py.dht import messages as m
from zikade_py.dht.handlers import KadServer
from zikade_py.dht.messages import MessageType, PeerInfo
from zikade_py.dht.pb import dht_pb2, record_pb2
from zikade_py.dht.protocol import KadRequestError
from zikade_py.dht.records import amino_validator, ipns_key, make_ipns_record, make_pk_record
from zikade_py.dht.stores import MemoryProviderStore, MemoryValueStore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .kad_harness import NOW, NOW_DT, ListView

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SERVER_KEY = PrivateKey.from_seed(b"\x01" * 32)
REMOTE = PeerID.from_public_key(PrivateKey.from_seed(b"\x02" * 32).public_key)
OWNER = PrivateKey.from_seed(b"\x03" * 32)
OWNER_ID = PeerID.from_public_key(OWNER.public_key)
TABLE = [
    PeerInfo(
        PeerID.from_public_key(PrivateKey.from_seed(bytes([i]) * 32).public_key),
        (Multiaddr.from_tcp("127.0.0.1", 4000 + i),) if i % 4 else (),
    )
    for i in range(10, 40)
]
PK_KEY, PK_VALUE = make_pk_record(OWNER.public_key)
IPNS_KEY = ipns_key(OWNER_ID)
IPNS_VALUES = [
    make_ipns_record(OWNER, b"/ipfs/v%d" % seq, seq, NOW_DT + datetime.timedelta(hours=hours))
    for seq, hours in ((1, 1), (2, 1), (2, 2), (3, -1))
]
MH = b"\x12\x20" + hashlib.sha256(b"fuzz").digest()
VALIDATOR = amino_validator(clock=lambda: NOW_DT)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def make_server() -> tuple[KadServer, ListView, MemoryProviderStore, MemoryValueStore]:
    me = PeerID.from_public_key(SERVER_KEY.public_key)
    view = ListView(PeerInfo(me, (Multiaddr.from_tcp("127.0.0.1", 4001),)), list(TABLE))
    providers, values = MemoryProviderStore(), MemoryValueStore()
    server = KadServer(
        host=Host(SERVER_KEY),  # never started: dispatch needs no network
        view=view,
        providers=providers,
        values=values,
        validator=VALIDATOR,
        clock=lambda: NOW,
    )
    return server, view, providers, values


# --- strategies --------------------------------------------------------------------------------

proto_field = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(0, 2**64 - 1)).map(
        lambda t: _varint(t[0] << 3) + _varint(t[1])
    ),
    st.tuples(st.integers(1, 12), st.binary(max_size=64)).map(
        lambda t: _varint(t[0] << 3 | 2) + _varint(len(t[1])) + t[1]
    ),
    st.binary(max_size=8),
)
raw_bodies = st.one_of(st.binary(max_size=512), st.lists(proto_field, max_size=12).map(b"".join))

peer_id_bytes = st.one_of(
    st.just(REMOTE.multihash),
    st.just(OWNER_ID.multihash),
    st.sampled_from([p.peer_id.multihash for p in TABLE]),
    st.binary(max_size=48),
)
addr_bytes = st.one_of(
    st.just(Multiaddr.from_tcp("127.0.0.1", 1234).to_bytes()),
    st.binary(max_size=24),
)
peer_entries = st.builds(
    lambda pid, addrs, conn: dht_pb2.Message.Peer(id=pid, addrs=addrs, connection=conn),
    peer_id_bytes,
    st.lists(addr_bytes, max_size=4),
    st.integers(0, 3),
)
keys = st.one_of(
    st.just(PK_KEY),
    st.just(IPNS_KEY),
    st.just(MH),
    st.just(b"/example/k"),
    st.just(REMOTE.multihash),
    st.just(PeerID.from_public_key(SERVER_KEY.public_key).multihash),
    st.binary(max_size=100),
)
values = st.one_of(st.just(PK_VALUE), st.sampled_from(IPNS_VALUES), st.binary(max_size=64))


@st.composite
def requests(draw: st.DrawFn) -> dht_pb2.Message:
    key = draw(keys)
    msg = dht_pb2.Message(type=draw(st.integers(0, 7)), key=key)  # type: ignore[arg-type]
    if draw(st.booleans()):
        record_key = key if draw(st.booleans()) else draw(keys)
        msg.record.CopyFrom(
            record_pb2.Record(
                key=record_key, value=draw(values), timeReceived=draw(st.text(max_size=8))
            )
        )
    msg.providerPeers.extend(draw(st.lists(peer_entries, max_size=3)))
    msg.closerPeers.extend(draw(st.lists(peer_entries, max_size=2)))
    msg.clusterLevelRaw = draw(st.integers(-(2**31), 2**31 - 1))
    return msg


record_puts = st.one_of(
    st.just((PK_KEY, PK_VALUE)),
    st.sampled_from(IPNS_VALUES).map(lambda v: (IPNS_KEY, v)),
    st.tuples(st.sampled_from([PK_KEY, IPNS_KEY]), values),
).map(lambda kv: m.put_value(kv[0], m.make_record(kv[0], kv[1])))
provider_adds = st.lists(peer_entries, min_size=1, max_size=3).map(
    lambda entries: dht_pb2.Message(
        type=dht_pb2.Message.ADD_PROVIDER, key=MH, providerPeers=entries
    )
)
any_request = st.one_of(requests(), record_puts, provider_adds, st.just(m.get_value(IPNS_KEY)))


# --- invariants --------------------------------------------------------------------------------


def check_state(view: ListView, providers: MemoryProviderStore, values: MemoryValueStore) -> None:
    for key in (PK_KEY, IPNS_KEY, b"/example/k"):
        found = values.get(key, NOW)
        if found is not None:
            VALIDATOR.validate(key, found[0])  # only valid records are ever stored
    for key, provider in view.provided:
        assert provider.peer_id == REMOTE and provider.addrs
        assert provider in providers.get(key, NOW)


def check_response(request: dht_pb2.Message, response: dht_pb2.Message | None) -> None:
    kind = MessageType(request.type)
    if kind == MessageType.ADD_PROVIDER:
        assert response is None
        return
    assert response is not None and response.type == request.type
    if kind in (MessageType.FIND_NODE, MessageType.GET_PROVIDERS, MessageType.GET_VALUE):
        peers = [p.peer_id for p in m.closer_peers(response)]
        if kind == MessageType.FIND_NODE and request.key == REMOTE.multihash and peers[:1] == [
            REMOTE
        ]:
            # The target with known addresses goes first even when it is the requester
            # (go; ipfs spec "Discovering non-DHT Servers"; WIRE.md §8.4).
            peers = peers[1:]
        assert REMOTE not in peers
        base = dht_pb2.Message()
        base.CopyFrom(response)
        del base.closerPeers[:]
        del base.providerPeers[:]
        if len(m.encode_message(base)) <= m.RUST_MAX_MESSAGE_SIZE:
            assert len(m.encode_message(response)) <= m.RUST_MAX_MESSAGE_SIZE
    if kind == MessageType.GET_VALUE and response.HasField("record"):
        assert response.record.key == request.key
    if kind == MessageType.PUT_VALUE:
        assert response.record.value == request.record.value
        assert response.key == request.key == response.record.key


# --- tests -------------------------------------------------------------------------------------


@FUZZ
@given(raw_bodies)
def test_arbitrary_bodies_raise_only_request_errors(body: bytes) -> None:
    server, view, providers, values = make_server()
    try:
        response = server.dispatch_bytes(REMOTE, body)
    except KadRequestError:
        pass
    else:
        check_response(m.decode_message(body), response)
    check_state(view, providers, values)
    assert server.stats.internal_errors == 0


@FUZZ
@given(st.lists(any_request, min_size=1, max_size=6))
def test_request_sequences_keep_the_stores_consistent(batch: list[dht_pb2.Message]) -> None:
    server, view, providers, values = make_server()
    for request in batch:
        try:
            response = server.dispatch(REMOTE, request)
        except KadRequestError as exc:
            assert exc.reason
            event(f"refused: {exc.reason}")
            continue
        event(f"answered: {MessageType(request.type).name}")
        check_response(request, response)
        check_state(view, providers, values)
        if request.type == dht_pb2.Message.PUT_VALUE:  # an accepted record is the one kept
            assert values.get(request.key, NOW) == (request.record.value, NOW)
    answered = sum(server.stats.answered.values())
    refused = sum(server.stats.error_reasons.values())
    assert answered + refused == len(batch)
