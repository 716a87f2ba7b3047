"""``zikade daemon``: run the node with its RPC, metrics and Delegated Routing V1 servers.

Like ``ipfs daemon``: it prints ``Swarm listening on …/p2p/<id>`` per listen
address (copy one into ``--bootstrap`` of another node), the API address,
then ``Daemon is ready``; it writes ``<repo>/api`` so other ``zikade``
invocations use it, and removes it on SIGINT/SIGTERM. Like ``ipfs daemon``
it needs a repo made by ``zikade init`` (``--init`` makes one if there is none).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import cast

import click

from zikade_py import __version__
from zikade_py.dht.config import BootstrapResult, Mode, NodeConfig
from zikade_py.http.args import parse_multiaddr
from zikade_py.http.daemon import Daemon, DaemonConfig, catch_signals
from zikade_py.http.errors import ArgumentError
from zikade_py.http.repo import (
    init_repo,
    is_initialized,
    load_config,
    validate_bootstrap_addr,
)
from zikade_py.p2p.addrscope import AddressPolicy
from zikade_py.p2p.host import HostConfig, limits_help

from .common import (
    fail,
    repo_option,
    resolve_repo,
    run_command,
    trace_option,
)
from .registry import summary
from .rpc import ThinClient

NO_BOOTSTRAP_NOTE = (
    "bootstrap: no bootstrap peers configured: joining only through the peers saved last "
    "time, or waiting for peers to dial us (add some with 'zikade bootstrap add', or "
    "'zikade bootstrap reset' for the public peers)"
)


def _report_bootstrap(outcome: BootstrapResult | BaseException) -> None:
    if isinstance(outcome, BaseException):
        click.echo(f"bootstrap failed: {outcome}", err=True)
        return
    failed = "".join(f"\n  unreachable: {addr} ({err})" for addr, err in outcome.failed)
    click.echo(
        f"bootstrap: reached {len(outcome.connected)} of "
        f"{len(outcome.connected) + len(outcome.failed)} peers, "
        f"routing table {outcome.routing_table_size} peers{failed}",
        err=True,
    )


@click.command("daemon", short_help=summary("daemon"), epilog=limits_help())
@click.option(
    "--listen",
    multiple=True,
    metavar="MULTIADDR",
    help="Swarm address to listen on (repeatable; default from the config: TCP and QUIC on 4001).",
)
@click.option(
    "--bootstrap",
    multiple=True,
    metavar="MULTIADDR",
    help="Peer to join through (repeatable; adds to the config's bootstrap list).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "server", "client"]),
    default=None,
    help="DHT mode: auto (a client until AutoNAT confirms we are publicly reachable, then "
    "a server), or force server or client (default from the config: auto).",
)
@click.option(
    "--public-net",
    "public_nets",
    multiple=True,
    metavar="CIDR",
    help="Treat addresses in CIDR as public for AutoNAT and address filtering (repeatable). "
    "For loopback test networks: --public-net 127.0.0.0/8 (loopback is never public "
    "otherwise; docs/autonat.md).",
)
@click.option(
    "--api", default=None, metavar="HOST:PORT", help="RPC API address (default 127.0.0.1:5001)."
)
@click.option(
    "--routing-api",
    default=None,
    metavar="HOST:PORT",
    help="Serve /routing/v1 on a separate address (default: on the API server).",
)
@click.option(
    "--api-allow-origin",
    "api_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Web origin (https://app.example) allowed to call the RPC API from a browser "
    "(repeatable; loopback pages on the API port always are).",
)
@click.option(
    "--api-allow-host",
    "api_hosts",
    multiple=True,
    metavar="NAME",
    help="Host name accepted in requests to the API besides its address and localhost "
    "(repeatable; '*' turns the DNS-rebinding check off).",
)
@click.option(
    "--routing-allow-host",
    "routing_hosts",
    multiple=True,
    metavar="NAME",
    help="Check the Host of requests to --routing-api too, accepting its address, "
    "localhost and NAME (repeatable; default: any Host).",
)
@click.option(
    "--reprovide",
    "reprovide",
    type=click.Choice(["sweep", "classic"]),
    default="sweep",
    show_default=True,
    help="How provided CIDs are re-announced: sweep (region by region, cost follows the "
    "network's size) or classic (one lookup per CID).",
)
@click.option(
    "--reprovide-interval",
    "reprovide_interval",
    type=click.FloatRange(min=1.0),
    default=22 * 3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between two announcements of a CID (the sweep's cycle).",
)
@click.option(
    "--storage-max",
    "storage_max",
    metavar="SIZE",
    help="Cap of the blockstore, e.g. 10GB, 512MiB (default: the config's "
    "Datastore.StorageMax, 10GB).",
)
@click.option(
    "--storage-gc-watermark",
    "storage_gc_watermark",
    type=click.IntRange(1, 100),
    metavar="PERCENT",
    help="Collect unpinned blocks once the blockstore passes this percent of its cap "
    "(default: the config's Datastore.StorageGCWatermark, 90).",
)
@click.option("--init", "init", is_flag=True, help="Initialise the repo first if it has none.")
@click.option(
    "--no-bootstrap",
    "no_bootstrap",
    is_flag=True,
    help="Leave the config's bootstrap list out of this run: join only through --bootstrap "
    "and the peers saved last time (with --init, the new repo's list is empty).",
)
@repo_option
@trace_option
def daemon_command(
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    mode: str | None,
    public_nets: tuple[str, ...],
    api: str | None,
    routing_api: str | None,
    api_origins: tuple[str, ...],
    api_hosts: tuple[str, ...],
    routing_hosts: tuple[str, ...],
    reprovide: str,
    reprovide_interval: float,
    storage_max: str | None,
    storage_gc_watermark: int | None,
    init: bool,
    no_bootstrap: bool,
    repo: str,
    trace: str | None,
) -> None:
    """Run a long-lived DHT node serving the RPC API (stop with Ctrl-C)."""
    repo_dir = resolve_repo(repo)
    if not init and not is_initialized(repo_dir):
        fail(f"no zikade repo found in {repo_dir} (run 'zikade init', or 'zikade daemon --init')")
    running = ThinClient.for_repo(repo_dir)
    if running is not None and running.reachable():
        fail(f"another daemon is running on {repo_dir} (API at {running.base_url})")

    async def go() -> None:
        for addr in listen:
            parse_multiaddr(addr)
        try:
            policy = AddressPolicy(public_nets=public_nets)
        except ValueError as exc:
            raise ArgumentError(f"--public-net: {exc}") from None
        for addr in bootstrap:
            try:
                validate_bootstrap_addr(addr)  # …/p2p/<id>, or a bare /dnsaddr/<name>
            except ValueError as exc:
                raise ArgumentError(str(exc)) from None
        if not is_initialized(repo_dir):
            init_repo(repo_dir, bootstrap=[] if no_bootstrap else None)
            click.echo(f"initialized zikade repo at {repo_dir}")
        cfg = load_config(repo_dir)
        cfg.storage_max = storage_max or cfg.storage_max
        cfg.storage_gc_watermark = storage_gc_watermark or cfg.storage_gc_watermark
        try:
            storage = cfg.storage_limits()
        except ValueError as exc:
            raise ArgumentError(f"storage limit: {exc}") from None
        node_cfg = NodeConfig(
            listen_addrs=list(listen or cfg.swarm),
            bootstrap=list(dict.fromkeys([*bootstrap, *([] if no_bootstrap else cfg.bootstrap)])),
            host=HostConfig(dns_resolvers=cfg.dns_resolvers, address_policy=policy),
            mode=_mode(mode or cfg.mode),
            repo=repo_dir,
            reprovide=reprovide,
            reprovide_interval=reprovide_interval,
        )
        daemon = Daemon(
            DaemonConfig(
                node=node_cfg,
                repo=repo_dir,
                api=api or cfg.api,
                routing_api=routing_api,
                api_allowed_origins=api_origins,
                api_allowed_hosts=api_hosts,
                routing_allowed_hosts=routing_hosts or None,
                storage=storage,
            )
        )
        daemon.on_bootstrap = _report_bootstrap
        daemon.node.mode_listeners.append(_report_mode)
        if policy.overridden:
            click.echo(f"treating as public: {', '.join(policy.public_nets)}")
        daemon.on_warning = lambda message: click.secho(message, err=True, fg="red", bold=True)
        click.echo(f"zikade daemon version {__version__}")
        with catch_signals() as stop:
            await _serve(daemon, node_cfg.mode, stop)

    async def _serve(daemon: Daemon, mode: str, stop: asyncio.Future[signal.Signals]) -> None:
        await daemon.start()
        try:
            click.echo(f"peer identity: {daemon.node.peer_id}")
            node = daemon.node
            if mode == "auto":
                click.echo(f"DHT mode: auto (now {node.effective_mode}; reachability "
                           f"{node.reachability}, learnt from AutoNAT)")
            else:
                click.echo(f"DHT mode: {mode}")
            for swarm_addr in daemon.swarm_addrs:
                click.echo(f"Swarm listening on {swarm_addr}")
            click.echo(f"RPC API server listening on {daemon.api_addr}")
            click.echo(f"Routing V1 API server listening on {daemon.routing_url}/routing/v1")
            click.echo(f"Metrics at {daemon.api_url}/debug/metrics/prometheus")
            click.echo("Daemon is ready")
            if not daemon.config.node.bootstrap:  # said once it runs: errors stay one line
                click.echo(NO_BOOTSTRAP_NOTE, err=True)
            sig = await stop
            click.echo(f"Received {sig.name}, shutting down...")
        finally:
            await daemon.close()

    run_command("daemon", go, trace=trace, service="zikade-daemon", root_span=False)
    sys.exit(0)


COMMANDS = (daemon_command,)
"""What ``cli.main`` registers."""


def _mode(value: str) -> Mode:
    """The DHT mode of a flag or config value (an unknown one is an error, not a server)."""
    if value not in ("auto", "server", "client"):
        raise ArgumentError(f"unknown DHT mode {value!r} (auto, server or client)")
    return cast(Mode, value)


def _report_mode(reachability: str, mode: str) -> None:
    """Print what AutoNAT learnt as the daemon runs (Kubo's daemon logs the same)."""
    click.echo(f"reachability: {reachability}; DHT mode: {mode}")
