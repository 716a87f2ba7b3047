"""Query events through Node calls, as Kubo reports them (ADDING_PEER, DIALING_PEER, ...)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from zikade_py.dht import Node, NotFoundError, QueryEvent, QueryEventType
from zikade_py.dht.messages import Message, PeerInfo
from zikade_py.dht.records import make_pk_record
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

from .conftest import FakeKadPeer, directory, loopback_config, wait_for

pytestmark = pytest.mark.timeout(60)

T = QueryEventType


def in_table(node: Node, peer: PeerID) -> bool:
    return any(e.peer.peer_id == peer for e in node.routing_table())


def index(events: list[QueryEvent], kind: QueryEventType, peer: PeerID) -> int:
    """Position of the first ``kind`` event about ``peer`` (fails the test if absent)."""
    for i, ev in enumerate(events):
        if ev.type is kind and ev.peer == peer:
            return i
    raise AssertionError(f"no {kind.name} for {peer} in {[(e.type.name, e.peer) for e in events]}")


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Chain:
    """finder -> fake kad peer (connected) -> middle (not connected) -> target."""

    finder: Node
    directory: FakeKadPeer
    middle: Node
    target: Node


@pytest_asyncio.fixture
async def chain() -> AsyncIterator[Chain]:
    target, middle, finder = (Node(loopback_config()) for _ in range(3))
    d: FakeKadPeer | None = None
    try:
        for node in (target, middle, finder):
            await node.start()
        middle.add_peer(str(target.multiaddrs[0]))
        await wait_for(lambda: in_table(middle, target.peer_id))
        wanted = target.peer_id.multihash

        async def answer(_peer: PeerID, request: Message) -> Message | None:
            # names the middle node only to the lookup itself, so nothing dials it before
            response = Message(type=request.type, key=request.key)
            if request.key == wanted:
                response.closerPeers.append(middle.self_info().to_pb())
            return response

        d = await FakeKadPeer(answer).start()
        finder.add_peer(d.multiaddr)
        await wait_for(lambda: in_table(finder, d.peer_id))
        yield Chain(finder, d, middle, target)
    finally:
        for node in (finder, middle, target):
            await node.close()
        if d is not None:
            await d.close()


async def test_find_peer_reports_adding_dialing_sending_and_one_final_peer(chain: Chain) -> None:
    finder, d, middle, target = chain.finder, chain.directory, chain.middle, chain.target
    assert finder.host.connmgr.get(middle.peer_id) is None
    assert finder.host.connmgr.get(d.peer_id) is not None
    events: list[QueryEvent] = []

    info = await finder.find_peer(
        target.peer_id, local_first=False, timeout=20, on_event=events.append
    )

    assert info.peer_id == target.peer_id and info.addrs
    # the seed joins the query, is already connected (no dial), is asked, answers
    assert (
        index(events, T.ADDING_PEER, d.peer_id)
        < index(events, T.SENDING_QUERY, d.peer_id)
        < index(events, T.PEER_RESPONSE, d.peer_id)
    )
    assert not [e for e in events if e.type is T.DIALING_PEER and e.peer == d.peer_id]
    # the peer it named joins the query, and we dial it before the request goes out
    assert (
        index(events, T.PEER_RESPONSE, d.peer_id)
        < index(events, T.ADDING_PEER, middle.peer_id)
        < index(events, T.DIALING_PEER, middle.peer_id)
        < index(events, T.SENDING_QUERY, middle.peer_id)
        < index(events, T.PEER_RESPONSE, middle.peer_id)
    )
    added = [e.peer for e in events if e.type is T.ADDING_PEER]
    assert len(added) == len(set(added)) and finder.peer_id not in added
    finals = [e for e in events if e.type is T.FINAL_PEER]
    assert len(finals) == 1 and finals[0].peer == target.peer_id
    assert finals[0].responses == (info,)
    assert finals[0] is events[-1]


async def test_a_failed_dial_is_dialing_then_query_error_without_sending() -> None:
    ghost = PeerID.from_public_key(PrivateKey.generate().public_key)
    ghost_info = PeerInfo(ghost, (Multiaddr.from_tcp("127.0.0.1", closed_port()),))
    d = await directory(lambda: [ghost_info]).start()
    try:
        async with Node(loopback_config()) as finder:
            finder.add_peer(d.multiaddr)
            await wait_for(lambda: in_table(finder, d.peer_id))
            events: list[QueryEvent] = []
            peers = await finder.get_closest_peers(
                b"events key", timeout=10, on_event=events.append
            )
    finally:
        await d.close()
    assert [p.peer_id for p in peers] == [d.peer_id]
    assert (
        index(events, T.ADDING_PEER, ghost)
        < index(events, T.DIALING_PEER, ghost)
        < index(events, T.QUERY_ERROR, ghost)
    )
    assert not [e for e in events if e.type is T.SENDING_QUERY and e.peer == ghost]
    assert [e.peer for e in events if e.type is T.FINAL_PEER] == [d.peer_id]


async def test_adding_peer_skips_ourselves_in_raw_answers() -> None:
    async with Node(loopback_config()) as finder:
        d = await directory(lambda: [finder.self_info(), finder.self_info()]).start()
        try:
            finder.add_peer(d.multiaddr)
            await wait_for(lambda: in_table(finder, d.peer_id))
            events: list[QueryEvent] = []
            key, _ = make_pk_record(PrivateKey.generate().public_key)
            with pytest.raises(NotFoundError):
                await finder.get_value(key, timeout=10, on_event=events.append)
        finally:
            await d.close()
    response = events[index(events, T.PEER_RESPONSE, d.peer_id)]
    assert {r.peer_id for r in response.responses} == {finder.peer_id}  # named us, raw
    assert [e.peer for e in events if e.type is T.ADDING_PEER] == [d.peer_id]
