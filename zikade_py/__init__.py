"""zikade-py: a Kademlia DHT node that speaks the libp2p wire protocol.

The package is layered (DESIGN.md §1): ``core`` is the sans-IO Kademlia logic,
``p2p`` the libp2p host on asyncio, ``dht`` the Kademlia protocol on that host,
``sim`` a discrete-event simulator driving the core in virtual time.

The public API (``Node``, ``NodeConfig``, ``session`` …) is re-exported here
lazily, so ``import zikade_py.core`` (the simulator) does not load the network
stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from zikade_py.dht import (
        BootstrapResult,
        BroadcastResult,
        CoordinatorConfig,
        FinishReason,
        InvalidRecordError,
        LookupResult,
        Node,
        NodeClosedError,
        NodeConfig,
        NotFoundError,
        PeerInfo,
        ProvideResult,
        PutResult,
        QueryEvent,
        QueryEventType,
        RoutingEntry,
        Session,
        SessionCancelledError,
    )
    from zikade_py.dht.session import session

__all__ = [
    "BootstrapResult",
    "BroadcastResult",
    "CoordinatorConfig",
    "FinishReason",
    "InvalidRecordError",
    "LookupResult",
    "Node",
    "NodeClosedError",
    "NodeConfig",
    "NotFoundError",
    "PeerInfo",
    "ProvideResult",
    "PutResult",
    "QueryEvent",
    "QueryEventType",
    "RoutingEntry",
    "Session",
    "SessionCancelledError",
    "__version__",
    "session",
]

_LAZY = frozenset(__all__) - {"__version__"}
"""Names loaded from ``zikade_py.dht`` on first use (the CLI starts faster without them)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("zikade_py.dht"), name)
    raise AttributeError(f"module 'zikade_py' has no attribute {name!r}")
