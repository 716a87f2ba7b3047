"""``zikade id`` and ``zikade ping``: the host's identity and reachability, shaped like Kubo's.

They exist so a person can check the wire stack by hand against any libp2p
peer: ``zikade id /ip4/…/tcp/…/p2p/…`` dials, runs identify and prints what the
peer says about itself; ``zikade ping`` measures round trips with
``/ipfs/ping/1.0.0``. Output mirrors ``ipfs id`` / ``ipfs ping`` (ECOSYSTEM.md).
Failures print one ``Error: …`` line on stderr and exit with status 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from zikade_py.p2p.crypto import InvalidKeyError, PrivateKey, PublicKey
from zikade_py.p2p.host import Host, HostConfig
from zikade_py.p2p.identify import AGENT_VERSION
from zikade_py.p2p.keystore import load_or_create_identity
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.ping import ping_stream

T = TypeVar("T")

DEFAULT_REPO = "~/.zikade"
IDENTITY_FILE = "identity.key"
"""The identity key file inside the repo directory (a libp2p ``PrivateKey`` protobuf)."""
DEFAULT_TIMEOUT = 30.0


class CommandError(Exception):
    """A failure to report as one line (bad input, unreachable peer)."""


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` (one line) on stderr and exit with status 1."""
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(1)


def repo_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--repo PATH`` (env ``ZIKADE_PATH``, default ``~/.zikade``)."""
    return click.option(
        "--repo",
        envvar="ZIKADE_PATH",
        default=DEFAULT_REPO,
        show_default=True,
        help="Repo directory holding the identity key (env ZIKADE_PATH).",
    )(func)


def timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--timeout SECONDS`` for the whole command."""
    return click.option(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Give up after this many seconds.",
    )(func)


def load_identity(repo: str) -> PrivateKey:
    """The repo's identity, created on first use."""
    path = pathlib.Path(os.path.expanduser(repo)) / IDENTITY_FILE
    try:
        return load_or_create_identity(path)
    except (OSError, InvalidKeyError) as exc:
        raise CommandError(f"cannot load the identity in {path}: {exc}") from None


def parse_peer_addr(text: str) -> tuple[Multiaddr, PeerID]:
    """A multiaddr that names its peer with ``/p2p/``."""
    if not text.startswith("/"):
        raise CommandError(
            f"invalid multiaddr {text!r}: expected /ip4/<host>/tcp/<port>/p2p/<peer-id>"
            " (find a peer's addresses with 'zikade find-peer')"
        )
    try:
        addr = Multiaddr.parse(text)
    except (InvalidMultiaddrError, ValueError) as exc:
        raise CommandError(f"invalid multiaddr {text!r}: {exc}") from None
    peer = addr.peer_id()
    if peer is None:
        raise CommandError(f"multiaddr {text!r} has no /p2p/<peer-id> component")
    if addr.tcp_endpoint() is None:
        raise CommandError(f"multiaddr {text!r} is not a TCP address")
    return addr, peer


def identity_json(
    peer: PeerID,
    public_key: PublicKey | None,
    addrs: Sequence[Multiaddr],
    agent: str,
    protocols: Sequence[str],
) -> str:
    """The ``ipfs id`` JSON shape."""
    doc = {
        "ID": str(peer),
        "PublicKey": base64.b64encode(public_key.to_protobuf()).decode() if public_key else "",
        "Addresses": [str(a.with_peer_id(peer)) for a in addrs],
        "AgentVersion": agent,
        "Protocols": sorted(protocols),
    }
    return json.dumps(doc, indent=2)


def run(coro_factory: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run a coroutine with an overall timeout; every failure becomes :class:`CommandError`."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro_factory()

    try:
        return asyncio.run(bounded())
    except CommandError:
        raise
    except TimeoutError:
        raise CommandError(f"timed out after {timeout:g}s") from None
    except Exception as exc:
        raise CommandError(str(exc) or type(exc).__name__) from None


@click.command("id")
@click.argument("multiaddr", required=False)
@repo_option
@timeout_option
def id_command(multiaddr: str | None, repo: str, timeout: float) -> None:
    """Show our identity, or dial MULTIADDR (with /p2p/) and show the peer's."""
    try:
        key = load_identity(repo)
        if multiaddr is None:
            host = Host(key)
            doc = identity_json(host.peer_id, key.public_key, [], AGENT_VERSION, host.protocols)
            click.echo(doc)
            return
        addr, peer = parse_peer_addr(multiaddr)

        async def identify() -> str:
            host = Host(key, HostConfig(dial_timeout=timeout))
            await host.start([])
            try:
                conn = await host.connect(peer, [addr], timeout=timeout)
                info = await host.identify.identify(conn)
            finally:
                await host.close()
            return identity_json(
                peer,
                info.public_key or conn.remote_public_key,
                info.listen_addrs,
                info.agent_version,
                info.protocols,
            )

        click.echo(run(identify, timeout))
    except CommandError as exc:
        fail(str(exc))


@click.command("ping")
@click.argument("multiaddr")
@click.option("-n", "--count", type=int, default=10, show_default=True, help="Pings to send.")
@click.option(
    "-i", "--interval", type=float, default=1.0, show_default=True, help="Seconds between pings."
)
@repo_option
@timeout_option
def ping_command(multiaddr: str, count: int, interval: float, repo: str, timeout: float) -> None:
    """Ping MULTIADDR (with /p2p/) over /ipfs/ping/1.0.0 and print each round trip."""
    try:
        if count < 1:
            raise CommandError("ping count must be at least 1")
        if interval < 0:
            raise CommandError("interval must not be negative")
        addr, peer = parse_peer_addr(multiaddr)
        key = load_identity(repo)

        async def pings() -> list[float]:
            host = Host(key, HostConfig(dial_timeout=timeout))
            await host.start([])
            rtts: list[float] = []
            try:
                click.echo(f"PING {peer}.")
                await host.connect(peer, [addr], timeout=timeout)
                stream = await host.new_stream(peer, ["/ipfs/ping/1.0.0"], timeout=timeout)
                async for rtt in ping_stream(stream, count):
                    rtts.append(rtt)
                    click.echo(f"Pong received: time={rtt * 1000:.2f} ms")
                    if len(rtts) < count and interval:
                        await asyncio.sleep(interval)
            finally:
                await host.close()
            return rtts

        rtts = run(pings, timeout)
        click.echo(f"Average latency: {sum(rtts) / len(rtts) * 1000:.2f}ms")
    except CommandError as exc:
        fail(str(exc))


COMMANDS = (id_command, ping_command)
"""What ``cli.main`` registers."""
