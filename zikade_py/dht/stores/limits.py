"""How much a remote peer may make the stores keep (DESIGN.md §4a), and the refusal.

A public DHT server stores what strangers send it: provider records (ADD_PROVIDER)
and value records (PUT_VALUE). Without limits one peer fills the disk and the
memory; with limits per key, per sending peer and in total, a flood from one
identity is capped while everyone else's records are still taken.

Reference figures (none of go, js or Kubo caps the count; they rely on expiry):

* go-libp2p-kad-dht ``providers.ProviderManager``: records expire after the
  provide validity and a GC pass runs every hour (``defaultCleanupInterval``),
  writes are batched 256 at a time (``batchBufferSize``).
* rust-libp2p-kad ``MemoryStoreConfig``: ``max_records`` 1024,
  ``max_value_bytes`` 65 KiB, ``max_providers_per_key`` = K (20),
  ``max_provided_keys`` 1024 — the only implementation with counts, sized for
  a client; a bootstrap node needs far more room.
* boxo ``ipns.MaxRecordSize`` = 10 KiB: no valid IPNS record is larger, and a
  ``/pk/`` record (a public key) is smaller still.

Our defaults: as many providers per key as one GET_PROVIDERS answer serves
(100; storing more only feeds records nobody is shown), 50,000 provider records
and 1,000 value records per sending peer, 2,000,000 provider records / 512 MiB
and 100,000 value records / 256 MiB in total, 10 KiB per value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

MiB: Final = 1024 * 1024

RefusalReason = Literal["per_key", "per_peer", "total_records", "total_bytes", "too_large"]
"""Why a record was not stored (the ``reason`` attribute of the refusal metric)."""


class StoreFullError(Exception):
    """A record from a peer was not stored because a limit is reached (not the peer's fault:
    ADD_PROVIDER is dropped silently, PUT_VALUE gets its stream reset)."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RefusalReason = reason


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Caps on what peers may make the provider and value stores keep (module docstring).

    Records we store ourselves (``sender=None``) are counted but never refused.
    """

    max_providers_per_key: int = 100
    """Distinct providers kept for one multihash; a refresh of a known one always passes."""
    max_providers_per_peer: int = 50_000
    """Provider records one peer may have announced to us (keys it provides)."""
    max_providers: int = 2_000_000
    """Provider records in total."""
    max_provider_bytes: int = 512 * MiB
    """Bytes of provider records in total (key + peer id + addresses)."""
    max_values_per_peer: int = 1_000
    """Value records whose last PUT_VALUE came from one peer."""
    max_values: int = 100_000
    """Value records in total."""
    max_value_bytes: int = 256 * MiB
    """Bytes of value records in total (key + value)."""
    max_record_size: int = 10 * 1024
    """Largest value stored (boxo ``ipns.MaxRecordSize``)."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a limit no store can run with."""
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


UNLIMITED: Final = StoreLimits(
    max_providers_per_key=1 << 62,
    max_providers_per_peer=1 << 62,
    max_providers=1 << 62,
    max_provider_bytes=1 << 62,
    max_values_per_peer=1 << 62,
    max_values=1 << 62,
    max_value_bytes=1 << 62,
    max_record_size=1 << 62,
)
"""No limits (tests of other behaviour, tools that import records)."""


def provider_size(key: bytes, peer: bytes, addrs_blob_len: int) -> int:
    """The bytes one provider record is accounted for."""
    return len(key) + len(peer) + addrs_blob_len


@dataclass(slots=True)
class Usage:
    """Records and bytes held for one sender, or in total (mutable counters)."""

    records: int = 0
    bytes: int = 0


class Accounting:
    """Per-sender and total usage of one store, and the admission check.

    Owned by whoever serialises the store's writes (the event loop for the memory
    stores, the writer thread for SQLite): it is not locked.
    """

    __slots__ = ("_per_sender", "max_bytes", "max_per_sender", "max_records", "total")

    def __init__(self, max_per_sender: int, max_records: int, max_bytes: int) -> None:
        self.max_per_sender = max_per_sender
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._per_sender: dict[bytes, Usage] = {}
        self.total = Usage()

    def of(self, sender: bytes) -> Usage:
        """The usage charged to ``sender`` (zero if none)."""
        return self._per_sender.get(sender, Usage())

    def snapshot(self, sender: bytes | None = None) -> Usage:
        """A copy of the usage in total (``None``) or of ``sender``: what stores report."""
        u = self.total if sender is None else self.of(sender)
        return Usage(u.records, u.bytes)

    def senders(self) -> int:
        """How many senders hold records."""
        return len(self._per_sender)

    def check_new(self, sender: bytes | None, size: int) -> None:
        """Raise :class:`StoreFullError` if a new record of ``size`` bytes from ``sender``
        (None: ourselves, never refused) would exceed a limit."""
        if sender is None:
            return
        if self.of(sender).records >= self.max_per_sender:
            raise StoreFullError("per_peer", "this peer has stored its maximum of records")
        if self.total.records >= self.max_records:
            raise StoreFullError("total_records", "the store holds its maximum of records")
        if self.total.bytes + size > self.max_bytes:
            raise StoreFullError("total_bytes", "the store holds its maximum of bytes")

    def check_grow(self, sender: bytes | None, delta: int) -> None:
        """Raise :class:`StoreFullError` if replacing a record grows the total past the cap."""
        if sender is not None and delta > 0 and self.total.bytes + delta > self.max_bytes:
            raise StoreFullError("total_bytes", "the store holds its maximum of bytes")

    def charge(self, sender: bytes, records: int, size: int) -> None:
        """Add (or, negative, remove) records and bytes charged to ``sender``."""
        usage = self._per_sender.get(sender)
        if usage is None:
            usage = self._per_sender[sender] = Usage()
        usage.records += records
        usage.bytes += size
        self.total.records += records
        self.total.bytes += size
        if usage.records <= 0:
            del self._per_sender[sender]


__all__ = [
    "UNLIMITED",
    "Accounting",
    "RefusalReason",
    "StoreFullError",
    "StoreLimits",
    "Usage",
    "provider_size",
]
