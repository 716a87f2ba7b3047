"""The Kademlia protocol on the libp2p host: messages, router, inbound handlers,
records and validators, stores, and the :class:`Node` with its public API.

Import the public names from here (or from :mod:`zikade_py`); the CLI and the
HTTP API use nothing else (DESIGN.md §1).
"""

from zikade_py.core.coordinator import CoordinatorConfig
from zikade_py.dht.config import (
    BootstrapResult,
    BroadcastResult,
    FinishReason,
    LookupResult,
    NodeClosedError,
    NodeConfig,
    NotFoundError,
    ProvideResult,
    PutResult,
    QueryStats,
    RoutingEntry,
)
from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.node import Node
from zikade_py.dht.notifier import Notifier, ProviderRecord, Subscription
from zikade_py.dht.query_events import QueryEvent, QueryEventType
from zikade_py.dht.records import InvalidRecordError
from zikade_py.dht.router import RequestError, Router
from zikade_py.dht.session import Session, SessionCancelledError, current_session, session

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
    "Notifier",
    "PeerInfo",
    "ProvideResult",
    "ProviderRecord",
    "PutResult",
    "QueryEvent",
    "QueryEventType",
    "QueryStats",
    "RequestError",
    "Router",
    "RoutingEntry",
    "Session",
    "SessionCancelledError",
    "Subscription",
    "current_session",
    "session",
]
