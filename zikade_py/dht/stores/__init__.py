"""Storage for provider records, value records and the peer address book.

:mod:`.base` defines the protocols and the expiry constants, :mod:`.memory` the
in-memory stores for tests and the simulator, :mod:`.sqlite` the durable ones
a node keeps under its repo directory. Every method takes the time as ``now``
(seconds since the epoch); no store reads a clock itself, so tests and the
simulator drive expiry explicitly.
"""

from zikade_py.dht.stores.base import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
    PeerStore,
    ProviderStore,
    StoreError,
    ValueStore,
)
from zikade_py.dht.stores.memory import MemoryPeerStore, MemoryProviderStore, MemoryValueStore
from zikade_py.dht.stores.sqlite import SqliteDatastore

__all__ = [
    "MAX_RECORD_AGE",
    "PROVIDER_ADDR_TTL",
    "PROVIDER_VALIDITY",
    "REPUBLISH_INTERVAL",
    "MemoryPeerStore",
    "MemoryProviderStore",
    "MemoryValueStore",
    "PeerStore",
    "ProviderStore",
    "SqliteDatastore",
    "StoreError",
    "ValueStore",
]
