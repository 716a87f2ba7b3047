"""The deciding parts with explicit time: session logic, want manager, engine; the wire
codec's limits; the notifier's check/subscribe race (forced)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zikade_py.bitswap import wire
from zikade_py.bitswap.engine import Engine
from zikade_py.bitswap.notifier import BlockNotifier
from zikade_py.bitswap.session_logic import (
    Broadcast,
    CancelWants,
    FindProviders,
    SendWantBlock,
    SendWantHave,
    SessionConfig,
    SessionLogic,
)
from zikade_py.bitswap.wantmanager import WantManager
from zikade_py.bitswap.wire import Message, WantEntry, WantType
from zikade_py.blocks import MemoryBlockstore
from zikade_py.blocks import cid as cids
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID


def peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate().public_key)


C1, C2, C3 = (cids.make(bytes([i])) for i in range(3))
CFG = SessionConfig(want_timeout=5.0, provider_search_delay=1.0, rebroadcast_interval=3.0)


# -- session logic ----------------------------------------------------------------------------


def test_no_peers_broadcasts_then_searches_providers() -> None:
    s = SessionLogic(CFG)
    s.want([C1, C2], now=0.0)
    assert s.poll() == [Broadcast((C1, C2))]
    assert s.next_due() == 1.0
    s.advance(1.0)
    assert s.poll() == [FindProviders(C1)]
    s.advance(3.0)
    assert s.poll() == [Broadcast((C1, C2))]


def test_have_brings_a_peer_and_a_want_block() -> None:
    s, p = SessionLogic(CFG), peer()
    s.want([C1], 0.0)
    s.poll()
    s.on_have(p, C1, 0.5)
    assert s.poll() == [SendWantBlock(p, (C1,))]
    assert s.asked(C1) == p and p in s.peers
    s.on_block(p, C1, 0.6)
    assert s.poll() == [CancelWants((C1,))]
    assert not s.wanted and s.next_due() is None


def test_want_block_to_least_busy_want_have_to_the_others() -> None:
    s, a, b = SessionLogic(CFG), peer(), peer()
    s.add_peer(a, 0.0)
    s.add_peer(b, 0.0)
    s.want([C1, C2], 0.0)
    acts = s.poll()
    blocks = [x for x in acts if isinstance(x, SendWantBlock)]
    haves = [x for x in acts if isinstance(x, SendWantHave)]
    assert {x.peer for x in blocks} == {a, b}, "spread over both peers"
    assert sum(len(x.cids) for x in blocks) == 2
    assert all(len(x.cids) == 1 for x in haves), "the other peer gets a want-have"


def test_dont_have_and_timeout_move_the_want_on() -> None:
    s, a, b = SessionLogic(CFG), peer(), peer()
    s.add_peer(a, 0.0)
    s.want([C1], 0.0)
    s.poll()
    s.add_peer(b, 0.1)
    s.poll()
    assert s.asked(C1) == a
    s.on_dont_have(a, C1, 0.2)
    assert s.poll() == [SendWantBlock(b, (C1,))]
    due = s.next_due()
    assert due is not None and due <= 5.2, "the provider search (1.0) or b's timeout (5.2)"
    s.advance(5.2)  # b never answers
    assert s.asked(C1) is None, "both failed: nobody to ask, wait for rebroadcast"
    assert s.next_due() is not None


def test_peer_leaving_moves_its_wants() -> None:
    s, a, b = SessionLogic(CFG), peer(), peer()
    s.add_peer(a, 0.0)
    s.want([C1], 0.0)
    s.poll()
    s.add_peer(b, 0.0)
    s.poll()
    s.remove_peer(a, 1.0)
    assert s.poll() == [SendWantBlock(b, (C1,))]


def test_cancel_emits_cancel_once() -> None:
    s = SessionLogic(CFG)
    s.want([C1, C2], 0.0)
    s.poll()
    s.cancel([C1, C3], 0.0)
    assert s.poll() == [CancelWants((C1,))]
    s.want([C2], 0.0)
    assert s.poll() == [], "already wanted: asked once"


# -- want manager -----------------------------------------------------------------------------


def test_want_manager_refcounts_across_sessions_and_upgrades() -> None:
    wm, p = WantManager(), peer()
    wm.connected(p)
    wm.want(1, p, [C1], WantType.HAVE)
    wm.want(2, p, [C1], WantType.BLOCK)
    [(to, msg)] = wm.poll()
    assert to == p and [(w.cid, w.want_type) for w in msg.wants] == [(C1, WantType.BLOCK)]
    wm.cancel(2, [C1])
    assert wm.poll() == [], "session 1 still wants it"
    wm.cancel(1, [C1])
    [(_, msg)] = wm.poll()
    assert msg.wants[0].cancel and wm.total_wants == 0 and not wm.peers_with_wants()


def test_new_peer_gets_broadcast_wants_as_full_list() -> None:
    wm, a, b = WantManager(), peer(), peer()
    wm.connected(a)
    wm.broadcast(1, [C1, C2])
    wm.poll()
    wm.connected(b)
    [(to, msg)] = wm.poll()
    assert to == b and msg.full and {w.cid for w in msg.wants} == {C1, C2}
    assert all(w.want_type is WantType.HAVE and w.send_dont_have for w in msg.wants)
    wm.disconnected(b)
    wm.cancel(1, [C1, C2])
    [(to, msg)] = wm.poll()
    assert to == a, "a gone peer gets no cancels"


# -- engine ------------------------------------------------------------------------------------


def test_engine_answers_blocks_haves_and_dont_haves() -> None:
    sizes = {cids.multihash_of(C1): 10, cids.multihash_of(C2): 20}
    eng, p = Engine(lambda c: sizes.get(cids.multihash_of(c))), peer()
    eng.receive(p, Message(wants=(
        WantEntry(C1), WantEntry(C2, WantType.HAVE), WantEntry(C3, send_dont_have=True),
    )))
    [task] = eng.poll()
    assert (task.blocks, task.haves, task.dont_haves) == ((C1,), (C2,), (C3,))
    assert set(eng.wantlist(p)) == {C3}, "unanswered want stays"
    assert eng.poll() == []
    sizes[cids.multihash_of(C3)] = 5
    eng.block_added(C3)
    [task] = eng.poll()
    assert task.blocks == (C3,) and not eng.wantlist(p)


def test_engine_limits_entries_budgets_bytes_and_forgets_peers() -> None:
    eng, p = Engine(lambda c: 600_000, max_entries=2, max_bytes_per_task=1_000_000), peer()
    refused = eng.receive(p, Message(wants=(WantEntry(C1), WantEntry(C2), WantEntry(C3))))
    assert refused == 1
    [t1] = eng.poll()
    [t2] = eng.poll()
    assert len(t1.blocks) == 1 and len(t2.blocks) == 1, "one 600 kB block per 1 MB task"
    eng.receive(p, Message(wants=(WantEntry(C1),)))
    eng.receive(p, Message(wants=(WantEntry(C2),), full=True))
    assert set(eng.wantlist(p)) == {C2}, "a full list replaces"
    eng.receive(p, Message(wants=(WantEntry(C2, cancel=True),)))
    assert not eng.wantlist(p)
    eng.receive(p, Message(wants=(WantEntry(C1),)))
    eng.peer_gone(p)
    assert eng.peers == set() and eng.poll() == []


# -- wire ---------------------------------------------------------------------------------------


def test_wire_roundtrip_and_versions() -> None:
    v0 = cids.make(b"pb", cids.DAG_PB, version=0)
    msg = Message(wants=(WantEntry(C1, WantType.HAVE, send_dont_have=True), WantEntry(C2)),
                  blocks=((C1, bytes([0])), (v0, b"pb")), haves=(C2,), dont_haves=(C3,))
    assert wire.decode(wire.encode(msg)) == msg
    old = wire.decode(wire.encode(msg, wire.PROTOCOL_110))
    assert [w.cid for w in old.wants] == [C2] and not old.haves and not old.dont_haves
    assert wire.decode(wire.encode(msg, wire.PROTOCOL_100)).blocks == ((v0, b"pb"),)


def test_wire_names_blocks_by_their_hash() -> None:
    msg = Message(blocks=((C1, b"not the bytes of C1"),))
    [(cid, _)] = wire.decode(wire.encode(msg)).blocks
    assert cid != C1 and cids.verify(cid, b"not the bytes of C1")


def test_wire_refuses_oversize_and_too_many_entries() -> None:
    with pytest.raises(wire.WireError):
        wire.decode(b"\0" * (wire.MAX_MESSAGE_SIZE + 1))
    many = Message(wants=tuple(WantEntry(cids.make(i.to_bytes(4, "big")))
                               for i in range(wire.MAX_WANTLIST_ENTRIES + 1)))
    with pytest.raises(wire.WireError):
        wire.decode(wire.encode(many))
    with pytest.raises(wire.WireError):
        wire.decode(b"\x0a\x05\x0a\x03\x0a\x01\xff")  # entry with a bad CID


@given(st.binary(max_size=300))
def test_wire_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire.decode(data)


# -- notifier -----------------------------------------------------------------------------------


class RacyStore(MemoryBlockstore):
    """Publishes the block from inside the notifier's store check (the forced race)."""

    def __init__(self) -> None:
        super().__init__()
        self.notifier: BlockNotifier | None = None
        self.during_get = False
        self.races: list[asyncio.Future[None]] = []

    def has(self, cid: bytes) -> bool:
        if not self.races and not self.during_get and self.notifier is not None:
            # arrives after interest was registered, right at the check (which misses it)
            self.races.append(asyncio.ensure_future(self.notifier.publish([(cid, bytes([0]))])))
        return super().has(cid)

    async def get(self, cid: bytes) -> bytes | None:
        if self.during_get and not self.races and self.notifier is not None:
            # the check found it; the network delivers it again while we read it
            await self.notifier.publish([(cid, bytes([0]))])
            self.races.append(asyncio.ensure_future(asyncio.sleep(0)))
        return await super().get(cid)


@pytest.mark.parametrize("during_get", [False, True])
async def test_block_arriving_between_subscribe_and_check_is_delivered_once(
    during_get: bool,
) -> None:
    store = RacyStore()
    notifier = store.notifier = BlockNotifier(store)
    store.during_get = during_get
    if during_get:
        await MemoryBlockstore.put(store, C1, bytes([0]))
    sub = notifier.subscribe()
    await sub.subscribe([C1])
    await asyncio.gather(*store.races)
    assert store.races, "the race was forced"
    await notifier.publish([(C1, bytes([0]))])  # and once more later: still one delivery
    assert await sub.future(C1) == bytes([0])
    assert sub.delivered == 1


async def test_subscribe_finds_local_blocks_and_unsubscribe_cleans_up() -> None:
    store = MemoryBlockstore()
    notifier = BlockNotifier(store)
    await store.put(C1, bytes([0]))
    sub = notifier.subscribe()
    missing = await sub.subscribe([C1, C2])
    assert missing == [C2] and await sub.future(C1) == bytes([0])
    assert notifier.subscribers(C2) == 1
    sub.remove()
    assert notifier.subscribers(C2) == 0 and notifier.subscribers(C1) == 0


def test_engine_skips_peers_still_sending() -> None:
    eng, slow, fast = Engine(lambda c: 10), peer(), peer()
    eng.receive(slow, Message(wants=(WantEntry(C1),)))
    eng.receive(fast, Message(wants=(WantEntry(C2),)))
    [task] = eng.poll(skip={slow})
    assert task.peer == fast
    assert eng.pending_except({slow}) is False and eng.pending
    [task] = eng.poll()
    assert task.peer == slow and task.blocks == (C1,)


def test_engine_serves_by_ledger_debt_ratio() -> None:
    eng, taker, giver, new = Engine(lambda c: 10), peer(), peer(), peer()
    eng.ledger.sent(taker, 10, 10_000_000)  # we gave it 10 MB, it gave us nothing
    eng.ledger.sent(giver, 1, 1_000_000)
    eng.ledger.received(giver, 2, 2_000_000)  # it gave more than it took
    eng.receive(taker, Message(wants=(WantEntry(C1),)))  # asked first
    eng.receive(giver, Message(wants=(WantEntry(C2),)))
    eng.receive(new, Message(wants=(WantEntry(C3),)))
    assert [t.peer for t in eng.poll()] == [new, giver, taker]
    assert eng.ledger.debt_ratio(new) == 0.0 and eng.ledger.debt_ratio(taker) > 1
