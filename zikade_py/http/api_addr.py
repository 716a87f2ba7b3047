"""The daemon's API address as the CLI and the daemon write it: multiaddr, ``host:port`` or URL.

Standard library only: the command line turns ``<repo>/api`` into a URL on every
invocation that talks to a daemon, and that path must not load the p2p stack
(multiaddr codecs, protobuf) just to read ``/ip4/127.0.0.1/tcp/5001``.
"""

from __future__ import annotations

_HOST_PROTOCOLS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})


def api_base_url(address: str) -> str:
    """``http://host:port`` for an API address; :class:`ValueError` if it is none of the forms.

    Multiaddrs are ``/<ip4|ip6|dns|dns4|dns6>/<host>/tcp/<port>`` (Kubo's
    ``Addresses.API``), optionally followed by ``/http``.
    """
    text = address.strip()
    if text.startswith(("http://", "https://")):
        return text.rstrip("/")
    if text.startswith("/"):
        host, port = _multiaddr_endpoint(text, address)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"invalid API address {address!r} (expected HOST:PORT)")
        host, port = host.strip("[]"), int(port_text)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _multiaddr_endpoint(text: str, address: str) -> tuple[str, int]:
    parts = text.split("/")[1:]
    if parts and parts[-1] == "http":
        parts = parts[:-1]
    if len(parts) != 4 or parts[0] not in _HOST_PROTOCOLS or parts[2] != "tcp":
        raise ValueError(f"API address {address!r} is not a TCP address")
    if not parts[1] or not parts[3].isdigit() or not 0 < int(parts[3]) < 65536:
        raise ValueError(f"invalid API address {address!r}")
    return parts[1], int(parts[3])
