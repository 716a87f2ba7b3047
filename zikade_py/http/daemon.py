"""The long-running daemon: a Node plus its HTTP servers, announced in ``<repo>/api``.

Why a daemon: a DHT node is only useful to others while it stays up (a good
bootstrap node serves many peers and keeps its table and records across
restarts through the Node's repo), and CLI commands answer fastest when they
ride on a node that has already joined the network. :class:`Daemon` starts the
Node, serves the RPC API (:mod:`.rpc`), ``/metrics`` and Delegated Routing V1
(on the API server unless a separate ``routing_api`` address is given), writes
the API multiaddr to ``<repo>/api`` for other invocations, and removes it
when it stops (:func:`run_until_signal` handles SIGINT/SIGTERM).

The RPC API has no authentication: it follows Kubo's browser rules
(:mod:`.api_guard`) and says loudly when it is bound beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from zikade_py.blocks.limits import UNLIMITED, StorageLimits
from zikade_py.dht.config import BootstrapResult, NodeConfig
from zikade_py.dht.node import Node
from zikade_py.files import ContentNode
from zikade_py.http.api_guard import ApiGuard, HostCheck
from zikade_py.http.client import api_base_url
from zikade_py.http.errors import DaemonError
from zikade_py.http.metrics import add_metrics_route, install_meter_provider
from zikade_py.http.repo import remove_api_file, write_api_file
from zikade_py.http.routing_v1 import RoutingV1Config, add_routing_v1_routes
from zikade_py.http.rpc import add_rpc_routes
from zikade_py.http.tracing import tracing_middleware
from zikade_py.p2p.multiaddr import Multiaddr

log = logging.getLogger(__name__)

DEFAULT_API_ADDRESS = "127.0.0.1:5001"
"""Kubo's default RPC API port, on loopback only (the API has no authentication)."""


@dataclass
class DaemonConfig:
    """What a daemon runs: the node's configuration and where its HTTP servers listen."""

    node: NodeConfig = field(default_factory=NodeConfig)
    repo: Path | None = None
    """Where the ``api`` file goes and ``bootstrap/*`` edits the list (None: nowhere)."""
    api: str = DEFAULT_API_ADDRESS
    """``HOST:PORT`` or ``/ip4/…/tcp/…`` of the RPC API (port 0 picks a free one)."""
    routing_api: str | None = None
    """A separate ``HOST:PORT`` for ``/routing/v1``; None serves it on the API server."""
    bootstrap_timeout: float | None = None
    api_allowed_origins: tuple[str, ...] = ()
    """Web origins (``https://app.example``) allowed to call the RPC API besides loopback
    pages on its port (Kubo's ``API.HTTPHeaders.Access-Control-Allow-Origin``; ``*``: any)."""
    api_allowed_hosts: tuple[str, ...] = ()
    """Host names accepted in the API's ``Host`` header besides its bound address and
    ``localhost`` (``*`` turns the DNS-rebinding check off)."""
    routing_allowed_hosts: tuple[str, ...] | None = None
    """The same Host check for a separate ``routing_api`` server: None leaves it open
    to any Host (it is public and read-only); a tuple accepts its bound address,
    ``localhost`` and these names."""
    storage: StorageLimits | None = None
    """The blockstore's cap and GC watermark (the repo's ``Datastore``; ``None``: unlimited)."""


def is_loopback_host(host: str) -> bool:
    """Whether a bind address keeps a server on this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name may resolve to any interface


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for an RPC API reachable beyond this machine, or None on loopback."""
    if is_loopback_host(host):
        return None
    shown = f"[{host}]" if ":" in host else host
    return (
        f"WARNING: the RPC API is listening on {shown}:{port}, beyond loopback. It has no "
        "authentication: anyone who can reach this address controls the node (edits its "
        "bootstrap list, announces keys, makes it dial any host). NEVER EXPOSE it to the "
        "internet; keep it on 127.0.0.1 or behind a firewall or an authenticating proxy."
    )


def _host_port(address: str) -> tuple[str, int]:
    try:
        url = api_base_url(address)
    except ValueError as exc:
        raise DaemonError(str(exc)) from None
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host.strip("[]"), int(port)


class Daemon:
    """A started Node with the RPC, metrics and routing HTTP servers; an async context manager."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        # a ContentNode is a Node that also stores and serves blocks (Bitswap); it
        # announces what is pinned in the repo once it runs
        self.node: Node = ContentNode(
            config.node, announce_pins=True, storage=config.storage or UNLIMITED
        )
        self._runners: list[web.AppRunner] = []
        self._api_addr: str | None = None
        self._routing_url: str | None = None
        self._bootstrap_task: asyncio.Task[BootstrapResult] | None = None
        self.on_bootstrap: Callable[[BootstrapResult | BaseException], None] | None = None
        """Told how the initial bootstrap went (the CLI prints it)."""
        self.on_warning: Callable[[str], None] | None = None
        """Told about a risky set-up (API beyond loopback); None logs it as a warning."""

    @property
    def api_addr(self) -> str:
        """The RPC API's multiaddr (``/ip4/127.0.0.1/tcp/PORT``), as written to ``<repo>/api``."""
        if self._api_addr is None:
            raise RuntimeError("daemon not started")
        return self._api_addr

    @property
    def api_url(self) -> str:
        """``http://host:port`` of the RPC API."""
        return api_base_url(self.api_addr)

    @property
    def routing_url(self) -> str:
        """``http://host:port`` serving ``/routing/v1``."""
        if self._routing_url is None:
            raise RuntimeError("daemon not started")
        return self._routing_url

    @property
    def swarm_addrs(self) -> list[Multiaddr]:
        """The node's listen addresses with ``/p2p/<id>``, as ``Swarm listening on`` shows them."""
        return [a.with_peer_id(self.node.peer_id) for a in self.node.listen_addrs]

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the node and the servers, write the API file, begin bootstrapping."""
        install_meter_provider()
        await self.node.start()
        try:
            api_app = self._app()
            api_host, _ = _host_port(self.config.api)
            guard = ApiGuard.for_bind(
                api_host,
                hosts=self.config.api_allowed_hosts,
                origins=self.config.api_allowed_origins,
            )
            add_rpc_routes(api_app, self.node, repo=self.config.repo, guard=guard)
            add_metrics_route(api_app, self.node)
            if self.config.routing_api is None:
                add_routing_v1_routes(api_app, self.node)
            host, port = await self._serve(api_app, self.config.api, "RPC API")
            self._warn(exposure_warning(host, port))
            self._api_addr = str(Multiaddr.from_tcp(host, port))
            self._routing_url = api_base_url(self._api_addr)
            if self.config.routing_api is not None:
                routing_app = self._app()
                add_routing_v1_routes(routing_app, self.node, self._routing_config())
                r_host, r_port = await self._serve(
                    routing_app, self.config.routing_api, "routing API"
                )
                self._routing_url = api_base_url(f"{r_host}:{r_port}")
        except BaseException:
            await self.close()
            raise
        if self.config.repo is not None:
            write_api_file(self.config.repo, self._api_addr)
        # also without seeds: the peers saved in the repo rejoin us to the network
        self._bootstrap_task = asyncio.create_task(self._bootstrap())

    def _warn(self, message: str | None) -> None:
        if message is None:
            return
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            log.warning("%s", message)

    def _routing_config(self) -> RoutingV1Config:
        names = self.config.routing_allowed_hosts
        if names is None or self.config.routing_api is None:
            return RoutingV1Config()
        return RoutingV1Config(
            host_check=HostCheck.for_bind(_host_port(self.config.routing_api)[0], names)
        )

    def _app(self) -> web.Application:
        return web.Application(middlewares=[tracing_middleware], client_max_size=4 * 1024 * 1024)

    async def _serve(self, app: web.Application, address: str, what: str) -> tuple[str, int]:
        host, port = _host_port(address)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise DaemonError(
                f"cannot serve the {what} on {host}:{port}: {exc.strerror or exc}"
            ) from None
        bound = runner.addresses[0]
        return str(bound[0]), int(bound[1])

    async def _bootstrap(self) -> BootstrapResult:
        try:
            result = await self.node.bootstrap(timeout=self.config.bootstrap_timeout)
            if not result.connected and not result.failed:
                return result  # nobody to join through: a first node, nothing to report
        except Exception as exc:
            log.warning("bootstrap failed: %s", exc)
            if self.on_bootstrap is not None:
                self.on_bootstrap(exc)
            raise
        if self.on_bootstrap is not None:
            self.on_bootstrap(result)
        return result

    async def close(self) -> None:
        """Remove the API file, stop the servers and the node. Idempotent."""
        if self.config.repo is not None and self._api_addr is not None:
            remove_api_file(self.config.repo, self._api_addr)
        task, self._bootstrap_task = self._bootstrap_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await self.node.close()


@contextlib.contextmanager
def catch_signals(*signals: signal.Signals) -> Iterator[asyncio.Future[signal.Signals]]:
    """Within the block, ``signals`` (default SIGINT, SIGTERM) resolve the yielded future
    instead of killing the process. Enter it before announcing readiness, so a signal
    sent right after the announcement is never lost."""
    wanted = signals or (signal.SIGINT, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()

    def deliver(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig)

    for sig in wanted:
        loop.add_signal_handler(sig, deliver, sig)
    try:
        yield got
    finally:
        for sig in wanted:
            loop.remove_signal_handler(sig)


async def wait_for_signal(*signals: signal.Signals) -> signal.Signals:
    """Wait until one of ``signals`` (default SIGINT, SIGTERM) arrives; return it."""
    with catch_signals(*signals) as got:
        return await got


async def run_until_signal(daemon: Daemon) -> signal.Signals:
    """Run a started daemon until SIGINT/SIGTERM, then close it."""
    try:
        return await wait_for_signal()
    finally:
        await daemon.close()
