"""The record-validation interface and the namespace dispatcher of the Amino DHT.

A DHT server must refuse records it cannot check (WIRE.md §8.9): go's Amino
configuration accepts exactly ``/pk/…`` and ``/ipns/…``, and any other namespace
is rejected. Validators are pure functions of the key and value (plus a clock
for IPNS expiry), so the PUT_VALUE handler, the GET_VALUE lookup and the CLI
share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class InvalidRecordError(ValueError):
    """A record that must not be stored or returned: bad key, bad value, bad signature, expired."""


class Validator(Protocol):
    """Checks and orders the values stored under one namespace (go ``record.Validator``)."""

    def validate(self, key: bytes, value: bytes) -> None:
        """Raise :class:`InvalidRecordError` unless ``value`` is acceptable under ``key``."""
        ...

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """The index of the best of ``values`` (already validated) for ``key``.

        Raises :class:`InvalidRecordError` if ``values`` is empty.
        """
        ...


def split_key(key: bytes) -> tuple[str, bytes]:
    """Split ``/<namespace>/<rest>`` at the second ``/`` (go ``record.SplitKey``).

    The namespace must be non-empty UTF-8; ``rest`` may be empty or contain ``/``.
    """
    if not key.startswith(b"/"):
        raise InvalidRecordError("record key does not start with '/'")
    end = key.find(b"/", 1)
    if end <= 1:
        raise InvalidRecordError("record key has no namespace")
    try:
        namespace = key[1:end].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecordError("record namespace is not UTF-8") from None
    return namespace, key[end + 1 :]


class NamespacedValidator:
    """Dispatches on the key's namespace; unknown namespaces are invalid.

    ``NamespacedValidator({"pk": PublicKeyValidator(), "ipns": IpnsValidator()})``
    is the Amino configuration (see :func:`zikade_py.dht.records.amino_validator`).
    """

    __slots__ = ("_validators",)

    def __init__(self, validators: Mapping[str, Validator]) -> None:
        self._validators = dict(validators)

    @property
    def namespaces(self) -> frozenset[str]:
        """The namespaces this validator accepts."""
        return frozenset(self._validators)

    def validator_for(self, key: bytes) -> Validator:
        """The validator responsible for ``key`` (InvalidRecordError if none)."""
        namespace, _ = split_key(key)
        found = self._validators.get(namespace)
        if found is None:
            raise InvalidRecordError(f"records of namespace {namespace!r} are not accepted")
        return found

    def validate(self, key: bytes, value: bytes) -> None:
        """Validate with the namespace's validator."""
        self.validator_for(key).validate(key, value)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """Select with the namespace's validator."""
        return self.validator_for(key).select(key, values)
