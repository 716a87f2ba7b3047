"""The AutoNAT driver: probes peers on go's schedule, tracks reachability, serves others.

:class:`AutoNAT` runs on a :class:`~zikade_py.p2p.host.Host`. It asks connected
peers that speak ``/libp2p/autonat/1.0.0`` to dial us back at our public
candidate addresses (listen addresses and activated observed ones), feeds the
answers to the sans-IO :class:`~zikade_py.p2p.autonat_status.ReachabilityTracker`
(go's confidence rules), marks the addresses a peer dialed as confirmed
(:class:`~zikade_py.p2p.localaddrs.LocalAddrs`), and tells listeners when the
status changes (the DHT switches between client and server on it). Like go, it
answers other peers' requests unless it believes itself private.

Which peers are asked (go ``getPeerToProbe``): connected, speaking AutoNAT,
with a public address whose IP is not ours, not asked in the last
``throttle_peer_period``; at most ``max_pending_probes`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zikade_py.p2p.addrscope import Scope
from zikade_py.p2p.autonat import (
    AUTONAT_PROTOCOL,
    AutoNATError,
    AutoNATServer,
    DialBackResult,
    ResponseStatus,
    request_dial_back,
)
from zikade_py.p2p.autonat_status import AutoNATConfig, Reachability, ReachabilityTracker
from zikade_py.p2p.autonat_v2 import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    DialBackHandler,
    DialBackResultV2,
    DialStatus,
    ResponseStatusV2,
    request_dial_back_v2,
)
from zikade_py.p2p.autonat_v2_server import AutoNATv2Server
from zikade_py.p2p.events import Direction, HostEvent, PeerConnected, PeerIdentified
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.nbqueue import NonBlockingQueue
from zikade_py.p2p.peer_id import PeerID

if TYPE_CHECKING:
    from zikade_py.p2p.host import Host

log = logging.getLogger(__name__)

ReachabilityListener = Callable[[Reachability], None]
"""Called with the new status whenever it changes."""

AUTONAT_PROTOCOLS = (AUTONAT_PROTOCOL, DIAL_REQUEST_PROTOCOL)
"""A peer that lists either can be asked (v2 preferred)."""


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One dial-back request we made: whom we asked and what came of it."""

    peer: PeerID
    at: float
    """Wall-clock seconds."""
    outcome: str
    """``ok``, ``dial_error``, ``refused``, ``bad_request``, ``internal_error`` or ``failed``."""
    detail: str = ""


_Verdict = tuple[ProbeRecord, Reachability | None, list[Multiaddr]]

_OUTCOMES = {
    ResponseStatus.OK: "ok",
    ResponseStatus.E_DIAL_ERROR: "dial_error",
    ResponseStatus.E_DIAL_REFUSED: "refused",
    ResponseStatus.E_BAD_REQUEST: "bad_request",
    ResponseStatus.E_INTERNAL_ERROR: "internal_error",
}

MAX_PROBE_HISTORY = 32
"""Probe records kept for ``zikade id`` and tests."""


class AutoNAT:
    """AutoNAT v1 client and server on a host (see the module docstring).

    ``forced`` fixes the status (go ``WithReachability``): no probes are made, the
    server still runs unless forced private.
    """

    def __init__(
        self,
        host: Host,
        config: AutoNATConfig | None = None,
        *,
        forced: Reachability | None = None,
    ) -> None:
        self._host = host
        self.config = config or AutoNATConfig()
        self.config.validate()
        self.tracker = ReachabilityTracker(self.config)
        """Status and confidence (go's rules)."""
        self.server = AutoNATServer(host, self.config)
        """Answers other peers' v1 requests."""
        self.server_v2 = AutoNATv2Server(host, self.server)
        """Answers v2 requests (same limits)."""
        self.dial_back = DialBackHandler()
        """Takes v2 servers' nonces (``/libp2p/autonat/2/dial-back``)."""
        self.forced = forced
        if forced is not None:
            self.tracker.status = forced
        self._listeners: list[ReachabilityListener] = []
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._host_events: NonBlockingQueue[HostEvent] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recent: dict[PeerID, float] = {}
        self._pending = 0
        self._forced_probe = False
        self._started = False
        self.history: list[ProbeRecord] = []
        """The latest dial-back requests we made (newest last)."""

    # -- views --------------------------------------------------------------------------------

    @property
    def status(self) -> Reachability:
        """What we believe: unknown, public or private."""
        return self.tracker.status

    @property
    def confidence(self) -> int:
        """0..3 (go's confidence)."""
        return self.tracker.confidence

    def subscribe(self, listener: ReachabilityListener) -> None:
        """Call ``listener(status)`` on every change of status."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Serve requests (unless disabled or forced private) and start probing (unless
        forced). Call once the host runs."""
        if self._started:
            return
        self._started = True
        if self.config.server and self.forced is not Reachability.PRIVATE:
            self.server.enable()
            self.server_v2.enable()
        if self.forced is not None:
            return
        self._host.set_stream_handler(DIAL_BACK_PROTOCOL, self.dial_back.handle_stream)
        self._host_events = self._host.events()
        self._host.identify.on_addrs_changed.append(self._addrs_changed)
        self._spawn(self._watch_host(self._host_events), "autonat-host-events")
        self._spawn(self._run(), "autonat")

    async def close(self) -> None:
        """Stop probing and serving; wait for every task it started."""
        if self._host_events is not None:
            self._host_events.close()
        with contextlib.suppress(ValueError):
            self._host.identify.on_addrs_changed.remove(self._addrs_changed)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._host.is_running:
            self.server.disable()
            self.server_v2.disable()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(
            coro, name=name, context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- inputs -------------------------------------------------------------------------------

    def _addrs_changed(self) -> None:
        self._events.put_nowait(("addrs", None))

    async def _watch_host(self, events: NonBlockingQueue[HostEvent]) -> None:
        policy = self._host.config.address_policy
        async for event in events:
            match event:
                case PeerIdentified(protocols=protocols) if set(AUTONAT_PROTOCOLS) & set(
                    protocols
                ):
                    self._events.put_nowait(("identified", event.peer))
                case PeerConnected(direction=Direction.INBOUND, addr=addr):
                    ip = addr.ip_address() if addr is not None else None
                    if (
                        ip is not None
                        and policy.scope(addr) is Scope.PUBLIC
                        and str(ip) not in self._own_ips()
                    ):
                        self._events.put_nowait(("inbound", None))
                case _:
                    pass

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        due = time.monotonic() + self.config.boot_delay
        while True:
            try:
                async with asyncio.timeout(max(due - time.monotonic(), 0.0)):
                    kind, value = await self._events.get()
            except TimeoutError:
                kind, value = "timer", None
            now = time.monotonic()
            match kind:
                case "timer":
                    self._forced_probe = False
                    self.tracker.probed(now)
                    peer = self._pick(now)
                    if peer is not None and self._pending <= self.config.max_pending_probes:
                        self._recent[peer] = now
                        self._pending += 1
                        self._spawn(self._probe(peer), "autonat-probe")
                case "identified":
                    self._forced_probe = True
                case "inbound":
                    self.tracker.inbound_from_public_peer(now)
                case "result":
                    self._pending -= 1
                    self._handle_result(*value)
                case "addrs":
                    self.tracker.addresses_changed()
            due = self.tracker.next_probe(now, forced=self._forced_probe)

    def _own_ips(self) -> set[str]:
        return {str(ip) for a in self._host.listen_addrs if (ip := a.ip_address()) is not None}

    def _pick(self, now: float) -> PeerID | None:
        """A connected AutoNAT peer worth asking (go ``getPeerToProbe``), or ``None``."""
        period = self.config.throttle_peer_period
        self._recent = {p: t for p, t in self._recent.items() if now - t <= period}
        book = self._host.peerstore
        policy = self._host.config.address_policy
        own = self._own_ips()
        peers = list(self._host.connmgr.peers())
        random.shuffle(peers)
        for peer in peers:
            if peer in self._recent or book.first_supported(peer, AUTONAT_PROTOCOLS) is None:
                continue
            public = [a for a in book.addrs(peer) if policy.scope(a) is Scope.PUBLIC]
            ips = {str(ip) for a in public if (ip := a.ip_address()) is not None}
            if not ips or ips & own:
                continue  # go skipPeer: no public address, or one of ours
            return peer
        return None

    async def _probe(self, peer: PeerID) -> None:
        """Ask ``peer`` (v2 when it speaks it: the nonce proves the dial) and post the
        verdict: ``(record, observation or None for "no verdict, ask another", confirmed)``."""
        addrs = self._host.identify.addresses.public_candidates()
        book = self._host.peerstore
        try:
            if addrs and book.supports(peer, DIAL_REQUEST_PROTOCOL):
                verdict = self._judge_v2(peer, await request_dial_back_v2(
                    self._host, self.dial_back, peer, addrs,
                    timeout=self.config.request_timeout,
                ))
            else:
                verdict = self._judge_v1(peer, addrs, await request_dial_back(
                    self._host, peer, addrs, timeout=self.config.request_timeout
                ))
        except (AutoNATError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            verdict = (ProbeRecord(peer, time.time(), "failed", detail), Reachability.UNKNOWN, [])
        self._events.put_nowait(("result", verdict))

    @staticmethod
    def _judge_v1(peer: PeerID, sent: list[Multiaddr], result: DialBackResult) -> _Verdict:
        record = ProbeRecord(peer, time.time(), _OUTCOMES[result.status], result.text)
        match result.status:
            case ResponseStatus.OK:
                dialed = [result.addr] if result.addr is not None else sent
                return record, Reachability.PUBLIC, dialed
            case ResponseStatus.E_DIAL_ERROR:
                return record, Reachability.PRIVATE, []
            case ResponseStatus.E_DIAL_REFUSED:
                return record, None, []
            case _:
                return record, Reachability.UNKNOWN, []

    @staticmethod
    def _judge_v2(peer: PeerID, result: DialBackResultV2) -> _Verdict:
        at = time.time()
        chosen = str(result.addr) if result.addr is not None else ""
        if result.status is not ResponseStatusV2.OK:
            outcome = {
                ResponseStatusV2.E_DIAL_REFUSED: "refused",
                ResponseStatusV2.E_REQUEST_REJECTED: "refused",
            }.get(result.status, "internal_error")
            observation = None if outcome == "refused" else Reachability.UNKNOWN
            return ProbeRecord(peer, at, outcome, "v2"), observation, []
        if result.reachable and result.addr is not None:
            return ProbeRecord(peer, at, "ok", f"v2 {chosen}"), Reachability.PUBLIC, [result.addr]
        if result.dial_status is DialStatus.E_DIAL_ERROR:
            return ProbeRecord(peer, at, "dial_error", f"v2 {chosen}"), Reachability.PRIVATE, []
        detail = "v2: OK without our nonce" if result.dial_status is DialStatus.OK else (
            f"v2 {result.dial_status.name}"
        )
        return ProbeRecord(peer, at, "failed", detail), Reachability.UNKNOWN, []

    def _handle_result(
        self, record: ProbeRecord, observation: Reachability | None, confirmed: list[Multiaddr]
    ) -> None:
        self.history.append(record)
        del self.history[:-MAX_PROBE_HISTORY]
        log.debug("autonat: %s answered %s %s", record.peer, record.outcome, record.detail)
        if observation is None:  # refused: no verdict, ask someone else soon
            self._forced_probe = True
            return
        if observation is Reachability.PUBLIC:
            addresses = self._host.identify.addresses
            new = [a for a in confirmed if addresses.confirm(a)]
            if new and self._host.is_running:
                self._host.identify.schedule_push()
        self.record(observation)

    def record(self, observation: Reachability) -> None:
        """Take one observation (a probe's result; tests feed them directly)."""
        before = self.tracker.status
        if not self.tracker.observe(observation):
            return
        status = self.tracker.status
        log.info("reachability: %s (was %s)", status.value, before.value)
        if status is Reachability.PRIVATE:
            if self._host.identify.addresses.unconfirm_all() and self._host.is_running:
                self._host.identify.schedule_push()
            self.server.disable()
            self.server_v2.disable()
        elif self.config.server:
            self.server.enable()
            self.server_v2.enable()
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                log.exception("reachability listener failed")
