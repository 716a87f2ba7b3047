"""Value-record validation: the ``/pk/`` and ``/ipns/`` namespaces of the Amino DHT.

:func:`amino_validator` builds what go-libp2p-kad-dht configures for
``/ipfs/kad/1.0.0``: exactly those two namespaces, everything else rejected.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from zikade_py.dht.records.ipns import IpnsValidator, ipns_key, make_ipns_record
from zikade_py.dht.records.pk import PublicKeyValidator, make_pk_record, pk_key
from zikade_py.dht.records.validator import (
    InvalidRecordError,
    NamespacedValidator,
    Validator,
    split_key,
)


def amino_validator(
    clock: Callable[[], datetime.datetime] | None = None,
) -> NamespacedValidator:
    """``NamespacedValidator({"pk": …, "ipns": …})`` (``clock`` feeds the IPNS expiry check)."""
    ipns = IpnsValidator() if clock is None else IpnsValidator(clock)
    return NamespacedValidator({"pk": PublicKeyValidator(), "ipns": ipns})


__all__ = [
    "InvalidRecordError",
    "IpnsValidator",
    "NamespacedValidator",
    "PublicKeyValidator",
    "Validator",
    "amino_validator",
    "ipns_key",
    "make_ipns_record",
    "make_pk_record",
    "pk_key",
    "split_key",
]
