"""This machine's interface addresses, to turn a wildcard listen address into dialable ones.

Peers must never be told ``0.0.0.0`` or ``::`` (WIRE.md §10.8): go drops peers
without usable addresses from FIND_NODE answers. The standard library has no
portable interface listing, so on Linux we ask the kernel (``SIOCGIFCONF`` for
IPv4, ``/proc/net/if_inet6`` for IPv6) and elsewhere fall back to what the host
name resolves to; loopback is always included so local peers can dial us.
"""

from __future__ import annotations

import array
import contextlib
import ipaddress
import socket
import struct
import sys

_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux
_IF_INET6 = "/proc/net/if_inet6"


def _linux_ipv4() -> list[str]:
    buf = array.array("B", bytes(_IFREQ_SIZE * 128))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        import fcntl  # POSIX only; imported here so the module loads everywhere

        request = struct.pack("iL", len(buf), buf.buffer_info()[0])
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request)
    size = struct.unpack("iL", reply)[0]
    data = buf.tobytes()[:size]
    return [
        socket.inet_ntoa(data[off + 20 : off + 24]) for off in range(0, size, _IFREQ_SIZE)
    ]


def _linux_ipv6() -> list[str]:
    out = []
    with open(_IF_INET6, encoding="ascii") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4:
                out.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return out


def _resolved(family: socket.AddressFamily) -> list[str]:
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]
    return []


def interface_addresses(version: int) -> list[str]:
    """Usable unicast addresses of IP ``version`` (4 or 6), loopback first, no link-local."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    found: list[str] = []
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, ValueError, struct.error):
            found = _linux_ipv4() if version == 4 else _linux_ipv6()
    if not found:
        found = _resolved(family)
    loopback = "127.0.0.1" if version == 4 else "::1"
    out = [loopback]
    for text in found:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if ip.version != version or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        if str(ip) not in out:
            out.append(str(ip))
    return out
