"""Republishing: what we provide and the records we put are announced again every 22 h.

The republishers take time as an argument, so these tests hand them clock
values 22 h ahead instead of sleeping; the network traffic is real.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from multiformats import CID, multihash

from zikade_py.dht import Node
from zikade_py.dht.keys import content_multihash
from zikade_py.dht.records import make_pk_record
from zikade_py.dht.republisher import LocalRecords, Republisher
from zikade_py.dht.stores.base import REPUBLISH_INTERVAL

from .conftest import loopback_config, wait_for

pytestmark = pytest.mark.timeout(60)

DAY = REPUBLISH_INTERVAL  # 22 h


def in_table(node: Node, other: Node) -> bool:
    return any(e.peer.peer_id == other.peer_id for e in node.routing_table())


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    """``a`` republishes (its loops wait 60 s first: only the tests drive them), ``b`` stores."""
    a, b = Node(loopback_config(republish=True, reprovide="classic")), Node(loopback_config())
    try:
        await a.start()
        await b.start()
        a.add_peer(str(b.multiaddrs[0]))
        await wait_for(lambda: in_table(a, b) and in_table(b, a))
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_records_we_put_are_put_again_when_due_and_only_those(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    rep = a.value_republisher
    assert rep is not None
    theirs, their_value = make_pk_record(b.host.public_key)
    assert (await b.put_value(theirs, their_value)).ok
    assert a.values.get(theirs, time.time()) is not None  # stored at a, but not a's record
    ours, value = make_pk_record(a.host.public_key)
    t0 = time.time()
    assert (await a.put_value(ours, value)).ok
    assert list(a.local_records) == [ours]
    assert b.values.delete(ours)  # b forgot it (as it would 48 h later)

    assert await rep.run_once(now=t0 + 3600) == 0  # not due yet
    assert b.values.get(ours, time.time()) is None
    assert await rep.run_once(now=t0 + DAY + 1) == 1  # due: put again, theirs is not
    stored = b.values.get(ours, time.time())
    assert stored is not None and stored[0] == value
    assert await rep.run_once(now=t0 + DAY + 2) == 0  # just put: due again a day later
    assert rep.announced == 1 and rep.failed == 0

    # our copy was refreshed by that put: 66 h after put_value (> 48 h) it is still ours
    assert await rep.run_once(now=t0 + 3 * DAY) == 1
    # a record gone from our store is forgotten, not put
    assert a.values.delete(ours)
    assert await rep.run_once(now=t0 + 5 * DAY) == 0
    assert ours not in a.local_records and rep.retired == 1


async def test_content_we_provide_is_announced_again_when_due(pair: tuple[Node, Node]) -> None:
    a, b = pair
    rep = a.provider_republisher
    assert rep is not None
    cid = CID("base32", 1, "raw", multihash.digest(b"republished content", "sha2-256"))
    mh = content_multihash(cid)
    t0 = time.time()
    sent = a.router.messages_sent

    def b_has_it() -> bool:
        return [p.peer_id for p in b.providers.get(mh, time.time())] == [a.peer_id]

    assert (await a.provide(cid)).ok
    await wait_for(b_has_it)  # ADD_PROVIDER is not answered: b stores it a bit later
    assert b.providers.gc(time.time() + 3 * DAY) == 1  # b's copy expired
    assert a.router.messages_sent == sent + 1

    assert await rep.run_once(now=t0 + 3600) == 0
    assert a.router.messages_sent == sent + 1  # nothing sent
    assert await rep.run_once(now=t0 + DAY + 1) == 1
    await wait_for(b_has_it)
    assert a.router.messages_sent == sent + 2
    assert await rep.run_once(now=t0 + DAY + 2) == 0
    assert a.providers.list_local_due(t0 + DAY + 2, DAY) == []  # marked in the store


async def test_a_failed_announcement_stays_due_and_a_retired_key_is_dropped() -> None:
    records = LocalRecords()
    calls: list[tuple[bytes, float]] = []
    outcomes: dict[bytes, list[object]] = {
        b"ok": ["done"],
        b"flaky": [OSError("unreachable"), "done"],
        b"gone": [None],
    }

    async def announce(key: bytes, now: float) -> object | None:
        """Like the node's hook: raises on failure, forgets a key whose record is gone."""
        calls.append((key, now))
        outcome = outcomes[key].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is None:
            records.discard(key)
        return outcome

    for i, key in enumerate((b"ok", b"flaky", b"gone")):
        records.add(key, 100.0 + i)
    rep = Republisher(records, announce, interval=10.0, clock=lambda: pytest.fail("clock used"))
    assert await rep.run_once(now=105.0) == 0 and calls == []
    assert await rep.run_once(now=112.0) == 1  # oldest first; all three tried
    assert calls == [(b"ok", 112.0), (b"flaky", 112.0), (b"gone", 112.0)]
    assert (rep.announced, rep.failed, rep.retired) == (1, 1, 1)
    assert b"gone" not in records and records.list_due(112.0, 10.0) == [b"flaky"]
    calls.clear()
    assert await rep.run_once(now=113.0) == 1  # the failed one is still due, "ok" is not
    assert calls == [(b"flaky", 113.0)]
    assert records.list_due(122.9, 10.0) == [b"ok"]  # marked at 112
    assert records.list_due(123.0, 10.0) == [b"ok", b"flaky"]  # marked at 113
    assert len(records) == 2 and list(records) == [b"ok", b"flaky"]


def test_a_put_moves_the_next_republish() -> None:
    records = LocalRecords()
    records.add(b"k", 0.0)
    records.add(b"k", 50.0)
    assert records.list_due(59.0, 10.0) == [] and records.list_due(60.0, 10.0) == [b"k"]
    records.discard(b"k")
    records.mark(b"k", 70.0)  # marking a discarded key does not bring it back
    assert b"k" not in records and records.list_due(1e9, 10.0) == []
