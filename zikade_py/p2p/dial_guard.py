"""The dial guard: an allowlist of IP networks the host may dial and ask for DNS.

Tests, benchmarks and CI must never send a packet beyond the machine, even by
mistake (a default bootstrap list, a DNS name in a record a peer handed us, a
misconfigured resolver). ``ZIKADE_DIAL_ALLOW`` holds a comma-separated list of
CIDR networks (``127.0.0.0/8``); when it is set, the host refuses every dial
to an IP outside it with one :class:`DialRefusedError`, and DNS is asked only
of a resolver configured explicitly (``ZIKADE_DNS_RESOLVER``) on an allowed
address: never the system's resolver. Unset (a user's machine), nothing is
refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NoReturn

DIAL_ALLOW_ENV: Final = "ZIKADE_DIAL_ALLOW"
"""The environment variable holding the allowlist (comma-separated CIDR networks)."""

REFUSED_LOG_ENV: Final = "ZIKADE_DIAL_REFUSED_LOG"
"""A file every refusal is appended to, one line each (the test suite sets it and fails
any test that caused a refusal it did not expect: a refused dial is a bug in a test)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DialRefusedError(ConnectionRefusedError):
    """The dial guard forbids this destination: nothing was sent.

    A ``ConnectionRefusedError`` (an ``OSError``) so every caller that already
    handles a failed TCP connect handles a refusal the same way.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class DialGuard:
    """Which IPs may be dialed (``networks``; ``None``: any, the guard is off)."""

    networks: tuple[IPNetwork, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> DialGuard:
        """The guard of an allowlist text (``"127.0.0.0/8, ::1/128"``); ValueError if malformed."""
        nets: list[IPNetwork] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(
                    f"{DIAL_ALLOW_ENV}: {part!r} is not a CIDR network: {exc}"
                ) from None
        if not nets:
            raise ValueError(f"{DIAL_ALLOW_ENV} is set but names no network")
        return cls(tuple(nets))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DialGuard:
        """The guard ``ZIKADE_DIAL_ALLOW`` asks for (off when the variable is unset or empty)."""
        text = (os.environ if environ is None else environ).get(DIAL_ALLOW_ENV, "").strip()
        return cls.parse(text) if text else cls()

    @property
    def active(self) -> bool:
        """Whether anything is refused at all."""
        return self.networks is not None

    def describe(self) -> str:
        """The allowlist as the variable would spell it (for error messages)."""
        return ",".join(str(n) for n in self.networks or ())

    def allows(self, ip: str) -> bool:
        """Whether ``ip`` (text) may be dialed; a name (not an IP) is never allowed when active."""
        if self.networks is None:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)

    def check(self, ip: str, port: int, *, what: str = "dial") -> None:
        """Raise :class:`DialRefusedError` unless ``ip`` may be contacted."""
        if not self.allows(ip):
            self.refuse(
                f"refusing to {what} {ip}:{port}: outside {DIAL_ALLOW_ENV}={self.describe()}"
            )

    def refuse(self, message: str) -> NoReturn:
        """Record the refusal (``ZIKADE_DIAL_REFUSED_LOG``) and raise :class:`DialRefusedError`."""
        log_path = os.environ.get(REFUSED_LOG_ENV)
        if log_path:
            with contextlib.suppress(OSError), open(log_path, "a") as f:
                f.write(message.replace("\n", " ") + "\n")
        raise DialRefusedError(message)


__all__ = ["DIAL_ALLOW_ENV", "REFUSED_LOG_ENV", "DialGuard", "DialRefusedError"]
