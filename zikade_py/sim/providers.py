"""Provider records in the simulation: the messages, and what a server keeps.

The core treats messages as opaque objects (it hands them back in
``SendMessage`` and takes the driver's decoded answer in ``RequestSucceeded``),
so the simulator brings its own vocabulary for the two provider RPCs:

* :class:`AddProvider` — "``provider`` has ``key``"; a server stores it. On the
  real wire nobody answers ADD_PROVIDER: the router writes it and closes the
  stream, and the driver reports success once it is written (``dht/router.py``).
  The simulation does the same: the sender's request succeeds when the message
  has left, whatever becomes of it.
* :class:`GetProviders` — "who has ``key``?"; a server answers with the
  providers it stores (:class:`ProvidersReply`) and its closest nodes.

A FIND_NODE is still sent as ``SendFindNode`` (or a ``SendMessage`` whose
message is a bare target :class:`~zikade_py.core.key.Key`).
"""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.core.key import Key


@dataclass(frozen=True, slots=True)
class AddProvider:
    """ADD_PROVIDER: ask a server to remember that ``provider`` has ``key``."""

    key: Key
    provider: Key


@dataclass(frozen=True, slots=True)
class GetProviders:
    """GET_PROVIDERS: ask a server who has ``key`` (and who is closer to it)."""

    key: Key


@dataclass(frozen=True, slots=True)
class ProvidersReply:
    """A server's answer to :class:`GetProviders`: the providers it knows of."""

    providers: tuple[Key, ...]


EMPTY_REPLY = ProvidersReply(())
"""The answer of a server that stores no provider for the key (shared, never copied)."""


class ProviderStore:
    """One server's provider records, created only once it stores its first one.

    Bounded per key like the real store (``max_per_key``); records never expire
    within a simulated run (minutes, against a 48 h validity).
    """

    __slots__ = ("_by_key", "max_per_key")

    def __init__(self, max_per_key: int = 100) -> None:
        self._by_key: dict[Key, list[Key]] = {}
        self.max_per_key = max_per_key

    def add(self, key: Key, provider: Key) -> None:
        """Remember ``provider`` for ``key`` (once; beyond the bound it is dropped)."""
        entries = self._by_key.setdefault(key, [])
        if provider not in entries and len(entries) < self.max_per_key:
            entries.append(provider)

    def reply(self, key: Key) -> ProvidersReply:
        """The answer to a GET_PROVIDERS for ``key``."""
        entries = self._by_key.get(key)
        return ProvidersReply(tuple(entries)) if entries else EMPTY_REPLY

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())
