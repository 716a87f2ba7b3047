"""The value API of the Node: validated ``/pk/`` and ``/ipns/`` records.

* ``put_value`` — validated (``InvalidRecordError`` for a bad record or one
  worse than ours), stored locally, then PUT_VALUE to the k closest peers
  (FollowUp).
* ``get_value`` — the best valid record: ours, then from a GET_VALUE walk
  (selection by the namespace's validator); peers that sent a worse record or
  none get the best one back (corrective PUT_VALUE, a Static broadcast in the
  background, as go does).

Records we put are remembered (:attr:`ValueAPI.local_records`) and put again
every 22 h by the node's value republisher (:meth:`ValueAPI._reput`), so they
outlive the 48 h the peers keep them.
"""

from __future__ import annotations

import contextlib
import time

from zikade_py import telemetry
from zikade_py.core.coordinator_events import BroadcastStrategy, StartMessageQuery
from zikade_py.core.event import FinishReason
from zikade_py.core.key import Key
from zikade_py.dht import keys as keyfmt
from zikade_py.dht.config import BroadcastResult, NodeConfig, NotFoundError
from zikade_py.dht.driver import QueryHandle, peer_key
from zikade_py.dht.messages import Message, get_value, make_record, put_value
from zikade_py.dht.node_core import NodeCore
from zikade_py.dht.query_events import (
    EventCallback,
    QueryEvent,
    QueryEventType,
    emit,
)
from zikade_py.dht.records import InvalidRecordError
from zikade_py.dht.republisher import LocalRecords
from zikade_py.p2p.peer_id import PeerID


class ValueAPI(NodeCore):
    """Value records (see the module docstring)."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        super().__init__(config)
        self.local_records = LocalRecords()
        """The keys of the records we put, for the value republisher."""

    async def put_value(
        self,
        key: bytes | str,
        value: bytes,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> BroadcastResult:
        """Validate the record (``InvalidRecordError`` if bad or worse than ours), store it,
        then PUT_VALUE it to the k closest peers."""
        k = keyfmt.record_key(key)
        self.validator.validate(k, value)
        now = time.time()
        existing = await self.values.get_async(k, now)
        if (
            existing is not None
            and existing[0] != value
            and self._valid(k, existing[0])
            and self.validator.select(k, [value, existing[0]]) != 0
        ):
            raise InvalidRecordError("a better record is already stored under this key")
        await self.values.put_async(k, value, now)
        self.local_records.add(k, now)
        message = put_value(k, make_record(k, value))
        return await self._broadcast(
            "DHT.PutValue", k, message, BroadcastStrategy.FOLLOW_UP, timeout, on_event
        )

    async def _reput(self, key: bytes, now: float) -> BroadcastResult | None:
        """Put a record we put before again (the value republisher's hook): the record as
        the store has it now, refreshed there too so it does not age out locally. ``None``
        (and the key forgotten) when it is gone or no longer valid."""
        stored = await self.values.get_async(key, now)
        if stored is None or not self._valid(key, stored[0]):
            self.local_records.discard(key)
            return None
        value = stored[0]
        await self.values.put_async(key, value, now)
        return await self._broadcast(
            "DHT.PutValue", key, put_value(key, make_record(key, value)),
            BroadcastStrategy.FOLLOW_UP, None, None,
        )

    def _valid(self, key: bytes, value: bytes) -> bool:
        try:
            self.validator.validate(key, value)
        except InvalidRecordError:
            return False
        return True

    def _better(self, key: bytes, best: bytes | None, candidate: bytes) -> bool:
        if best is None:
            return True
        if candidate == best:
            return False
        try:
            return self.validator.select(key, [best, candidate]) == 1
        except InvalidRecordError:
            return False

    async def get_value(
        self,
        key: bytes | str,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        quorum: int = 0,
    ) -> bytes:
        """The best valid record under ``key``: local, then from a GET_VALUE walk (stopped
        once ``quorum`` peers returned the best; 0 asks the k closest). Peers that sent a
        worse record or none get the best one back (corrective PUT_VALUE, in the
        background). Raises :class:`NotFoundError`, or ``TimeoutError`` if nothing came
        before the deadline."""
        k = keyfmt.record_key(key)
        self.validator.validator_for(k)  # refuse namespaces nobody would store
        best: bytes | None = None
        local = await self.values.get_async(k, time.time())
        if local is not None and self._valid(k, local[0]):
            best = local[0]
            emit(on_event, QueryEvent(QueryEventType.VALUE, self.peer_id, extra=str(len(best))))
        answers: dict[PeerID, bytes | None] = {}
        handle: QueryHandle | None = None

        def collect(frm: PeerID, response: object) -> None:
            nonlocal best
            if not isinstance(response, Message) or handle is None:
                return
            value: bytes | None = None
            if response.HasField("record") and response.record.key == k:
                candidate = response.record.value
                if self._valid(k, candidate):
                    value = candidate
                    emit(on_event, QueryEvent(QueryEventType.VALUE, frm, extra=str(len(value))))
                    if self._better(k, best, value):
                        best = value
            answers[frm] = value
            if quorum and sum(1 for v in answers.values() if v == best) >= quorum:
                self.driver.stop(handle)

        with self._root_span("DHT.GetValue", key=telemetry.key_attribute(k)) as span:
            handle = self._open("get-value", span, timeout, self._observer(on_event, collect))
            result = await self.driver.run(
                handle,
                StartMessageQuery(
                    handle.query_id, Key.from_preimage(k), get_value(k), trace=handle.trace
                ),
            )
            span.set_attributes({"reason": result.reason.value, "answers": len(answers)})
            if best is None:
                if result.reason is FinishReason.TIMEOUT:
                    raise TimeoutError("no record found before the deadline")
                raise NotFoundError("no valid record found")
            stale = tuple(peer_key(p) for p, v in answers.items() if v != best)
            if stale:
                self._spawn(self._correct(k, best, stale), "dht-corrective-put")
            return best

    async def _correct(self, key: bytes, value: bytes, peers: tuple[Key, ...]) -> None:
        """Give the best record to peers that had a worse one or none (Static broadcast)."""
        with contextlib.suppress(Exception):
            await self._broadcast(
                "DHT.PutValue", key, put_value(key, make_record(key, value)),
                BroadcastStrategy.STATIC, self.config.request_timeout * 2, None, seeds=peers,
            )



__all__ = ["ValueAPI"]
