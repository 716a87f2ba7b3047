"""Multiaddrs: self-describing network addresses (WIRE.md §2).

Peers exchange addresses in binary (kad ``Peer.addrs``, identify
``listenAddrs``) and people write them as text. The ``multiformats`` package's
own Multiaddr class lacks ``p2p`` and the ``dns*`` protocols and raises a wide
range of exception types on bad input, so this is a small immutable class of
our own, using our strict varints (go rejects non-minimal ones) and
``multiformats`` multibase for the text forms of peer ids and cert hashes.

Only protocols whose value we can both check and print are known; an address
that uses anything else is invalid *as a whole*, and :func:`decode_addrs` drops
such addresses one by one so one odd address never costs us the peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from multiformats import multibase

from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError, decode_uvarint, encode_uvarint

MAX_MULTIADDR_BYTES: Final = 1024
"""Longest binary multiaddr accepted; real ones (even relayed, with cert hashes) are far shorter."""

MAX_MULTIADDR_TEXT: Final = 4096
"""Longest text form accepted by :meth:`Multiaddr.parse`."""

VARIABLE: Final = -1
"""Marks protocols whose value is length-prefixed rather than fixed-size."""


class InvalidMultiaddrError(ValueError):
    """Text or bytes that are not a multiaddr we understand."""


def _parse_port(text: str) -> bytes:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 0xFFFF:
        raise InvalidMultiaddrError(f"invalid port {text!r}")
    return int(text).to_bytes(2, "big")


def _print_port(value: bytes) -> str:
    return str(int.from_bytes(value, "big"))


def _parse_ip4(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise InvalidMultiaddrError(f"invalid IPv4 address {text!r}") from None


def _print_ip4(value: bytes) -> str:
    return str(ipaddress.IPv4Address(value))


def _parse_ip6(text: str) -> bytes:
    if "%" in text:  # zones are a separate /ip6zone component
        raise InvalidMultiaddrError(f"IPv6 address with a zone {text!r}")
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise InvalidMultiaddrError(f"invalid IPv6 address {text!r}") from None


def _print_ip6(value: bytes) -> str:
    return str(ipaddress.IPv6Address(value))


def _parse_name(text: str) -> bytes:
    if not text or "/" in text:
        raise InvalidMultiaddrError(f"invalid name {text!r}")
    return text.encode()


def _print_name(value: bytes) -> str:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise InvalidMultiaddrError("name is not UTF-8") from None
    if not text or "/" in text:
        raise InvalidMultiaddrError(f"invalid name {text!r}")
    return text


def _parse_p2p(text: str) -> bytes:
    try:
        return PeerID.from_string(text).multihash
    except InvalidPeerIDError as exc:
        raise InvalidMultiaddrError(f"invalid /p2p/ value: {exc}") from None


def _print_p2p(value: bytes) -> str:
    try:
        return PeerID.from_bytes(value).to_base58()
    except InvalidPeerIDError as exc:
        raise InvalidMultiaddrError(f"invalid /p2p/ value: {exc}") from None


def _check_multihash(value: bytes) -> bytes:
    try:
        _, pos = decode_uvarint(value)
        length, pos = decode_uvarint(value, pos)
    except VarintError:
        raise InvalidMultiaddrError("certhash is not a multihash") from None
    if len(value) - pos != length:
        raise InvalidMultiaddrError("certhash multihash has the wrong length")
    return value


def _parse_certhash(text: str) -> bytes:
    try:
        raw: bytes = multibase.decode(text)
    except (ValueError, KeyError):
        raise InvalidMultiaddrError(f"certhash is not multibase: {text!r}") from None
    return _check_multihash(raw)


def _print_certhash(value: bytes) -> str:
    encoded: str = multibase.encode(_check_multihash(value), "base64url")
    return encoded


def _parse_cidr(text: str) -> bytes:
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) > 255:
        raise InvalidMultiaddrError(f"invalid CIDR mask {text!r}")
    return bytes((int(text),))


def _print_cidr(value: bytes) -> str:
    return str(value[0])


@dataclass(frozen=True, slots=True)
class Protocol:
    """One multiaddr protocol of protocols.csv: its code, name, value size and text codec."""

    code: int
    name: str
    size: int
    """Value size in bytes, 0 for none, or :data:`VARIABLE`."""
    parse: Callable[[str], bytes] | None = field(default=None, repr=False)
    show: Callable[[bytes], str] | None = field(default=None, repr=False)


_PROTOCOLS: Final = (
    Protocol(4, "ip4", 4, _parse_ip4, _print_ip4),
    Protocol(6, "tcp", 2, _parse_port, _print_port),
    Protocol(273, "udp", 2, _parse_port, _print_port),
    Protocol(33, "dccp", 2, _parse_port, _print_port),
    Protocol(41, "ip6", 16, _parse_ip6, _print_ip6),
    Protocol(42, "ip6zone", VARIABLE, _parse_name, _print_name),
    Protocol(43, "ipcidr", 1, _parse_cidr, _print_cidr),
    Protocol(53, "dns", VARIABLE, _parse_name, _print_name),
    Protocol(54, "dns4", VARIABLE, _parse_name, _print_name),
    Protocol(55, "dns6", VARIABLE, _parse_name, _print_name),
    Protocol(56, "dnsaddr", VARIABLE, _parse_name, _print_name),
    Protocol(132, "sctp", 2, _parse_port, _print_port),
    Protocol(421, "p2p", VARIABLE, _parse_p2p, _print_p2p),
    Protocol(449, "sni", VARIABLE, _parse_name, _print_name),
    Protocol(466, "certhash", VARIABLE, _parse_certhash, _print_certhash),
    *(
        Protocol(code, name, 0)
        for code, name in (
            (301, "udt"),
            (302, "utp"),
            (448, "tls"),
            (454, "noise"),
            (460, "quic"),
            (461, "quic-v1"),
            (465, "webtransport"),
            (480, "http"),
            (443, "https"),
            (477, "ws"),
            (478, "wss"),
            (479, "p2p-websocket-star"),
            (277, "p2p-stardust"),
            (275, "p2p-webrtc-star"),
            (276, "p2p-webrtc-direct"),
            (280, "webrtc-direct"),
            (281, "webrtc"),
            (290, "p2p-circuit"),
        )
    ),
)

PROTOCOLS_BY_CODE: Final[dict[int, Protocol]] = {p.code: p for p in _PROTOCOLS}
"""Every protocol we can decode, by multicodec code."""

PROTOCOLS_BY_NAME: Final[dict[str, Protocol]] = {
    **{p.name: p for p in _PROTOCOLS},
    "ipfs": PROTOCOLS_BY_CODE[421],  # legacy alias of p2p; always printed as /p2p/
}
"""Every protocol we can parse, by text name (including the ``ipfs`` alias)."""

_HOST_PROTOCOLS: Final = frozenset(("ip4", "ip6", "dns", "dns4", "dns6"))
_LOOPBACK_NAMES: Final = frozenset(("localhost", "localhost."))


@dataclass(frozen=True, slots=True)
class Component:
    """One ``/<protocol>/<value>`` step of a multiaddr; ``value`` is the binary value."""

    protocol: Protocol
    value: bytes = b""

    @property
    def name(self) -> str:
        """The protocol's text name."""
        return self.protocol.name

    @property
    def code(self) -> int:
        """The protocol's multicodec code."""
        return self.protocol.code

    def value_text(self) -> str:
        """The value as it appears in the text form ('' for value-less protocols)."""
        return self.protocol.show(self.value) if self.protocol.show else ""

    def to_bytes(self) -> bytes:
        """The binary form: code, then the value (length-prefixed if variable)."""
        out = encode_uvarint(self.protocol.code)
        if self.protocol.size == VARIABLE:
            out += encode_uvarint(len(self.value))
        return out + self.value

    def __str__(self) -> str:
        if self.protocol.size == 0:
            return f"/{self.protocol.name}"
        return f"/{self.protocol.name}/{self.value_text()}"


def _decode_components(data: bytes) -> tuple[Component, ...]:
    if not data:
        raise InvalidMultiaddrError("empty multiaddr")
    if len(data) > MAX_MULTIADDR_BYTES:
        raise InvalidMultiaddrError(f"multiaddr of {len(data)} bytes is too long")
    out: list[Component] = []
    pos = 0
    try:
        while pos < len(data):
            code, pos = decode_uvarint(data, pos)
            proto = PROTOCOLS_BY_CODE.get(code)
            if proto is None:
                raise InvalidMultiaddrError(f"unknown multiaddr protocol code {code}")
            size = proto.size
            if size == VARIABLE:
                size, pos = decode_uvarint(data, pos)
            if pos + size > len(data):
                raise InvalidMultiaddrError(f"/{proto.name} value is truncated")
            component = Component(proto, data[pos : pos + size])
            component.value_text()  # validates the value
            out.append(component)
            pos += size
    except VarintError as exc:
        raise InvalidMultiaddrError(f"malformed varint in multiaddr: {exc}") from None
    return tuple(out)


def _parse_components(text: str) -> tuple[Component, ...]:
    if not isinstance(text, str) or len(text) > MAX_MULTIADDR_TEXT:
        raise InvalidMultiaddrError("not a multiaddr string")
    if not text.startswith("/"):
        raise InvalidMultiaddrError(f"multiaddr must start with '/': {text!r}")
    parts = text.rstrip("/").split("/")[1:]
    if not parts:
        raise InvalidMultiaddrError("empty multiaddr")
    out: list[Component] = []
    i = 0
    while i < len(parts):
        proto = PROTOCOLS_BY_NAME.get(parts[i])
        if proto is None:
            raise InvalidMultiaddrError(f"unknown multiaddr protocol {parts[i]!r}")
        i += 1
        if proto.size == 0:
            out.append(Component(proto))
            continue
        if i >= len(parts) or proto.parse is None:
            raise InvalidMultiaddrError(f"/{proto.name} needs a value")
        value = proto.parse(parts[i])
        if proto.size != VARIABLE and len(value) != proto.size:
            raise InvalidMultiaddrError(f"/{proto.name} value has the wrong size")
        out.append(Component(proto, value))
        i += 1
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Multiaddr:
    """An immutable multiaddr; equal and hashed by its binary form.

    Build one with :meth:`parse`, :meth:`from_bytes` or :meth:`from_tcp`; all
    of them validate every component.
    """

    components: tuple[Component, ...] = field(compare=False)
    _bytes: bytes = field(repr=False)

    @classmethod
    def from_components(cls, components: Iterable[Component]) -> Multiaddr:
        """A multiaddr of already-validated components (InvalidMultiaddrError if none)."""
        parts = tuple(components)
        if not parts:
            raise InvalidMultiaddrError("empty multiaddr")
        return cls(parts, b"".join(c.to_bytes() for c in parts))

    @classmethod
    def parse(cls, text: str) -> Multiaddr:
        """Parse the text form, e.g. ``/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…``."""
        return cls.from_components(_parse_components(text))

    @classmethod
    def from_bytes(cls, data: bytes) -> Multiaddr:
        """Decode the binary form a peer sent (InvalidMultiaddrError if anything is off)."""
        data = bytes(data)
        return cls(_decode_components(data), data)

    @classmethod
    def from_tcp(cls, host: str, port: int) -> Multiaddr:
        """``/ip4|ip6/<host>/tcp/<port>`` for an IP, else ``/dns/<host>/tcp/<port>``."""
        if not 0 <= port <= 0xFFFF:
            raise InvalidMultiaddrError(f"invalid port {port}")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            first = Component(PROTOCOLS_BY_NAME["dns"], _parse_name(host))
        else:
            name = "ip4" if ip.version == 4 else "ip6"
            first = Component(PROTOCOLS_BY_NAME[name], ip.packed)
        return cls.from_components(
            (first, Component(PROTOCOLS_BY_NAME["tcp"], port.to_bytes(2, "big")))
        )

    @classmethod
    def from_quic(cls, host: str, port: int) -> Multiaddr:
        """``/ip4|ip6/<ip>/udp/<port>/quic-v1``: a QUIC (RFC 9000) libp2p address."""
        if not 0 <= port <= 0xFFFF:
            raise InvalidMultiaddrError(f"invalid port {port}")
        ip = ipaddress.ip_address(host)
        first = Component(PROTOCOLS_BY_NAME["ip4" if ip.version == 4 else "ip6"], ip.packed)
        return cls.from_components(
            (
                first,
                Component(PROTOCOLS_BY_NAME["udp"], port.to_bytes(2, "big")),
                Component(PROTOCOLS_BY_NAME["quic-v1"], b""),
            )
        )

    def to_bytes(self) -> bytes:
        """The binary form, as sent on the wire."""
        return self._bytes

    def __str__(self) -> str:
        return "".join(str(c) for c in self.components)

    def __repr__(self) -> str:
        return f"Multiaddr({self})"

    def protocols(self) -> tuple[str, ...]:
        """The protocol names in order, e.g. ``("ip4", "tcp", "p2p")``."""
        return tuple(c.name for c in self.components)

    def encapsulate(self, other: Multiaddr) -> Multiaddr:
        """``self`` followed by ``other`` (e.g. an address plus ``/p2p-circuit``)."""
        return Multiaddr.from_components(self.components + other.components)

    def peer_id(self) -> PeerID | None:
        """The peer id of the trailing ``/p2p/`` component, if there is one."""
        last = self.components[-1]
        if last.name != "p2p":
            return None
        return PeerID(last.value)  # validated when the component was built

    def without_peer_id(self) -> Multiaddr:
        """This address without its trailing ``/p2p/`` component (what we advertise)."""
        if self.components[-1].name != "p2p":
            return self
        if len(self.components) == 1:
            raise InvalidMultiaddrError("a bare /p2p/ address has nothing left without it")
        return Multiaddr.from_components(self.components[:-1])

    def with_peer_id(self, peer: PeerID) -> Multiaddr:
        """This address ending in ``/p2p/<peer>`` (replacing a trailing ``/p2p/`` already there)."""
        base = self.components
        if base[-1].name == "p2p":
            base = base[:-1]
        return Multiaddr.from_components(
            (*base, Component(PROTOCOLS_BY_NAME["p2p"], peer.multihash))
        )

    def tcp_endpoint(self) -> tuple[str, int] | None:
        """``(ip-or-name, port)`` if this is a plain TCP address we can dial, else None.

        Only ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>``, optionally followed by
        ``/p2p/<id>``; anything layered on top (ws, tls, p2p-circuit, …) is not plain TCP.
        """
        comps = self.components
        if len(comps) == 3 and comps[2].name == "p2p":
            comps = comps[:2]
        if len(comps) != 2 or comps[0].name not in _HOST_PROTOCOLS or comps[1].name != "tcp":
            return None
        return comps[0].value_text(), int.from_bytes(comps[1].value, "big")

    def quic_endpoint(self) -> tuple[str, int] | None:
        """``(ip, port)`` if this is ``/ip4|ip6/<ip>/udp/<port>/quic-v1`` (optionally with
        ``/p2p/<id>``), the only QUIC form we dial: draft-29 ``/quic`` is phased out, and
        names must be resolved first (a QUIC dial needs one IP)."""
        comps = self.components
        if len(comps) == 4 and comps[3].name == "p2p":
            comps = comps[:3]
        if (
            len(comps) != 3
            or comps[0].name not in ("ip4", "ip6")
            or comps[1].name != "udp"
            or comps[2].name != "quic-v1"
        ):
            return None
        return comps[0].value_text(), int.from_bytes(comps[1].value, "big")

    def ip_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP of a leading ``/ip4`` or ``/ip6`` component, else None."""
        first = self.components[0]
        if first.name == "ip4":
            return ipaddress.IPv4Address(first.value)
        if first.name == "ip6":
            return ipaddress.IPv6Address(first.value)
        return None

    def is_loopback(self) -> bool:
        """Whether this points at this machine: 127/8, ::1 (or v4-mapped), or ``localhost``."""
        ip = self.ip_address()
        if ip is None:
            first = self.components[0]
            return first.name in _HOST_PROTOCOLS and first.value.lower() in {
                n.encode() for n in _LOOPBACK_NAMES
            }
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    def is_unspecified(self) -> bool:
        """Whether this is a wildcard listen address (0.0.0.0 or ::) that must not be advertised."""
        ip = self.ip_address()
        return ip is not None and ip.is_unspecified


def decode_addrs(raw: Iterable[bytes]) -> list[Multiaddr]:
    """Decode a peer's address list, dropping each undecodable address on its own.

    go and rust keep the peer and skip bad addresses (WIRE.md §2); so do we.
    """
    out: list[Multiaddr] = []
    for data in raw:
        try:
            out.append(Multiaddr.from_bytes(data))
        except InvalidMultiaddrError:
            continue
    return out
