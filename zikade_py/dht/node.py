"""The Node: a Kademlia DHT node on the libp2p host, and its public Python API.

``async with Node(NodeConfig(...)) as node: await node.find_peer(pid)``

:class:`Node` is assembled from one module per idea:

* :mod:`.node_core` — the parts (host, stores, server, router, coordinator and
  driver), their lifecycle, the routing view the server reads, and the
  plumbing every call shares;
* :mod:`.node_peers` — ``find_peer``, ``lookup`` / ``get_closest_peers``,
  ``bootstrap``, the routing table, ``add_peer``, ``ping``;
* :mod:`.node_content` — ``provide`` and ``find_providers``;
* :mod:`.node_values` — ``put_value`` and ``get_value``;
* :mod:`.node_provide` — ``provide_many``, ``provide_stat``, ``provide_clear``;
* :mod:`.republisher` — what we provide and the records we put are announced
  again every 22 h (``provider_republisher``, ``value_republisher``).

Each API call turns into one coordinator query or broadcast (DESIGN.md §7).
Every call runs under a deadline (``timeout``, default ``query_timeout``), has a
root span ``DHT.<Op>`` (attribute ``session_id`` inside a
:func:`~zikade_py.dht.session.session`) that parents its ``Query.Run``, and
reports progress to ``on_event``. Cancelling the calling task stops the query
and cancels every request before the cancellation propagates. Calls that
return lists return partial results at the deadline; ``find_peer`` and
``get_value`` raise ``TimeoutError`` only if they found nothing.
"""

from __future__ import annotations

from zikade_py.core.sweep_events import SweepStats
from zikade_py.dht.node_content import ContentAPI
from zikade_py.dht.node_core import ROUTING_ADDR_TTL
from zikade_py.dht.node_peers import PeerAPI
from zikade_py.dht.node_provide import ProvideAPI
from zikade_py.dht.node_values import ValueAPI
from zikade_py.dht.reprovide import SweepReprovider
from zikade_py.dht.reprovide_send import BatchSender
from zikade_py.dht.republisher import ProviderKeys, Republisher
from zikade_py.dht.stores.provide_keys import MemoryProvideKeys, ProvideKeyStore
from zikade_py.dht.stores.sqlite_provide import SqliteProvideKeys


class Node(PeerAPI, ContentAPI, ValueAPI, ProvideAPI):
    """A zikade-py DHT node (see the module docstring)."""

    async def _start(self) -> None:
        await super()._start()
        driver = self.driver
        driver.batch_sender = BatchSender(
            self.host, self.self_info, request_timeout=self.config.request_timeout
        )
        if self.config.republish and self.config.reprovide == "sweep":
            store: ProvideKeyStore = (
                SqliteProvideKeys(self._datastore)
                if self._datastore is not None
                else MemoryProvideKeys()
            )
            coordinator = driver.coordinator

            def sweep_stats(now: float) -> SweepStats | None:
                sweep = coordinator.sweep
                return sweep.stats(now) if sweep is not None else None

            self.reprovider = SweepReprovider(store, driver.notify, self._spawn, sweep_stats)
            await self.reprovider.start()
        elif self.config.republish:
            self.provider_republisher = Republisher(
                ProviderKeys(self.providers), self._announce, name="provider-republisher"
            )
            self.provider_republisher.start()
        if self.config.republish:
            self.value_republisher = Republisher(
                self.local_records, self._reput, name="value-republisher"
            )
            self.value_republisher.start()

    # -- views -------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters for the daemon's status output and metrics."""
        driver = self.driver
        return {
            "routing_table_size": len(driver.coordinator.routing_table),
            "connections": len(self.host.connmgr),
            "queries_running": driver.queries_running,
            "requests_running": driver.requests_running,
            "requests_dropped": driver.coordinator.requests_dropped,
            "requests_sent": self.router.requests_sent,
            "requests_failed": self.router.requests_failed,
            "messages_sent": self.router.messages_sent,
            "messages_failed": self.router.messages_failed,
            "requests_cancelled": self.router.requests_cancelled,
        }


__all__ = ["ROUTING_ADDR_TTL", "Node"]
