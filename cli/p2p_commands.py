"""``zikade id`` and ``zikade ping``: identity and reachability, shaped like Kubo's.

``zikade id`` prints our ``ipfs id`` document (the daemon's, with its listen
addresses, when one runs; read from the repo otherwise, without starting
anything). ``zikade id PEER`` and ``zikade ping PEER`` take a multiaddr with
``/p2p/`` or a bare peer ID, which is found through the DHT when its addresses
are unknown: on the daemon when one runs, else on an ephemeral node that joins
through the bootstrap list. ``-i`` takes a Go duration like every other
duration flag.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import click

from zikade_py import __version__
from zikade_py.http.repo import CONFIG_FILE, IDENTITY_FILE

from .backend import run_anywhere, timeout_options
from .common import (
    Duration,
    QueryOptions,
    fail,
    network_options,
    one_line_errors,
    print_json,
    require_repo,
)
from .output import JSONObj
from .registry import summary

__all__ = ["CONFIG_FILE", "IDENTITY_FILE", "id_command", "ping_command"]

AGENT_VERSION = f"zikade-py/{__version__}"
"""What identify says we run (``zikade_py.p2p.identify.AGENT_VERSION``, without loading p2p)."""

SERVED_PROTOCOLS = (
    "/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0",
    # AutoNAT v1 and v2 servers, v2 client (p2p/autonat*.py; literals: importing those modules
    # would load protobuf into every daemon-backed command)
    "/libp2p/autonat/1.0.0", "/libp2p/autonat/2/dial-request", "/libp2p/autonat/2/dial-back",
    # Bitswap, served by the daemon's ContentNode (zikade_py.bitswap.wire.PROTOCOLS)
    "/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap",
)
"""What a daemon serves besides ``/ipfs/kad/1.0.0`` (which only DHT servers serve)."""

KAD_PROTOCOL = "/ipfs/kad/1.0.0"

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(text: str) -> bytes:
    num = 0
    for ch in text:
        num = num * 58 + _B58.index(ch)
    body = num.to_bytes((num.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def _public_key_of(peer_id: str) -> bytes | None:
    """The public key protobuf inlined in an identity-multihash peer ID (Ed25519), else None."""
    try:
        raw = _b58decode(peer_id)
    except ValueError:
        return None
    if len(raw) > 2 and raw[0] == 0x00 and raw[1] == len(raw) - 2:
        return raw[2:]
    return None


def offline_identity(repo_doc: JSONObj) -> JSONObj:
    """Our ``ipfs id`` document from the repo's config, as Kubo prints it offline.

    No node starts: the peer ID is in the config and an Ed25519 peer ID carries
    its public key. No addresses (nothing listens); the protocols are those the
    daemon would serve in the configured mode.
    """
    peer_id = str((repo_doc.get("Identity") or {}).get("PeerID", ""))
    key = _public_key_of(peer_id)
    if key is None:  # not an inlined key (RSA): read it from the key file
        raise LookupError(peer_id)
    mode = str((repo_doc.get("Routing") or {}).get("Mode", "auto"))  # auto: a client at first
    protocols = [*SERVED_PROTOCOLS, *([KAD_PROTOCOL] if mode == "server" else [])]
    return {
        "ID": peer_id,
        "PublicKey": base64.b64encode(key).decode(),
        "Addresses": [],
        "AgentVersion": AGENT_VERSION,
        "Protocols": sorted(protocols),
    }


def _print_id(doc: JSONObj, as_json: bool) -> None:
    if as_json:
        print_json(doc)
    else:
        click.echo(json.dumps(doc, indent=2))


@click.command("id", short_help=summary("id"))
@click.argument("peer", required=False)
@network_options
def id_command(peer: str | None, opts: QueryOptions) -> None:
    """Show our identity, or that of PEER (a peer ID or a multiaddr with /p2p/).

    A bare peer ID is found through the DHT when its addresses are unknown.
    Prints the 'ipfs id' JSON document (one line with --json).
    """
    repo = require_repo(opts.repo)
    docs: list[JSONObj] = []
    args = [peer] if peer else []
    if peer is None:
        from .backend import via_daemon

        if not via_daemon(repo, "id", "id", [], {}, docs.append, timeout=opts.timeout):
            with one_line_errors():
                docs.append(_local_identity(repo))
    else:
        options = timeout_options(opts.timeout)
        run_anywhere(
            "id", "id", args, options, docs.append, opts,
            repo=repo, join=_needs_dht(peer), check=lambda: _check_target(peer),
        )  # fmt: skip
    if not docs:
        fail(f"no answer from {peer}")
    _print_id(docs[0], opts.as_json)


def _local_identity(repo: Path) -> JSONObj:
    try:
        return offline_identity(json.loads((repo / CONFIG_FILE).read_text()))
    except (OSError, ValueError, AttributeError, LookupError):
        return _identity_from_key(repo)


def _identity_from_key(repo: Path) -> JSONObj:
    """The slow path (RSA keys, odd configs): load the key with the p2p stack."""
    from zikade_py.http.repo import RepoError
    from zikade_py.p2p.crypto import InvalidKeyError
    from zikade_py.p2p.keystore import load_or_create_identity
    from zikade_py.p2p.peer_id import PeerID

    path = repo / IDENTITY_FILE
    if not path.is_file():
        raise RepoError(f"no identity key at {path} (run 'zikade init' in a new repo)")
    try:
        key = load_or_create_identity(path).public_key
    except (OSError, InvalidKeyError) as exc:
        raise RepoError(f"cannot load the identity in {path}: {exc}") from None
    return offline_identity(
        {"Identity": {"PeerID": str(PeerID.from_public_key(key))}}
    ) | {"PublicKey": base64.b64encode(key.to_protobuf()).decode()}


def _check_target(target: str) -> None:
    """A peer ID or a multiaddr with ``/p2p/`` (checked here only before a local node starts)."""
    from zikade_py.http.args import parse_peer_or_addr

    parse_peer_or_addr(target)


def _needs_dht(target: str) -> bool:
    """A bare peer ID (no ``/p2p/`` multiaddr) may have to be found through the DHT."""
    return not target.startswith("/")


@click.command("ping", short_help=summary("ping"))
@click.argument("peer")
@click.option("-n", "--count", type=int, default=10, show_default=True,
              help="Pings to send.")  # fmt: skip
@click.option("-i", "--interval", type=Duration(allow_zero=True), default="1s", show_default=True,
              help="Time between pings (e.g. 500ms, 1s).")  # fmt: skip
@network_options
def ping_command(peer: str, count: int, interval: float, opts: QueryOptions) -> None:
    """Ping PEER (a peer ID or a multiaddr with /p2p/) over /ipfs/ping/1.0.0.

    A bare peer ID is found through the DHT when its addresses are unknown.
    Prints each round trip and the average (NDJSON events with --json).
    """
    if count < 1:
        fail("ping count must be at least 1")
    repo = require_repo(opts.repo)
    pongs: list[JSONObj] = []
    options = timeout_options(opts.timeout, count=str(count), interval=f"{interval:g}s")
    on_event = _ping_printer(opts.as_json, pongs.append)
    run_anywhere(
        "ping", "ping", [peer], options, on_event, opts,
        repo=repo, join=_needs_dht(peer), check=lambda: _check_target(peer),
    )  # fmt: skip
    if not pongs:
        fail(f"no pong from {peer}")


def _ping_printer(as_json: bool, pong: Callable[[JSONObj], None]) -> Callable[[JSONObj], None]:
    def on_event(doc: JSONObj) -> None:
        if doc.get("Success") and doc.get("Time"):
            pong(doc)
        if as_json:
            print_json(doc)
        elif doc.get("Text"):
            click.echo(str(doc["Text"]))
        elif doc.get("Success"):
            click.echo(f"Pong received: time={int(doc.get('Time', 0)) / 1e6:.2f} ms")

    return on_event
