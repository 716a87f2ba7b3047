"""AutoNAT v1 on the wire (``/libp2p/autonat/1.0.0``): ask a peer to dial us back, and
dial back peers that ask us (libp2p/specs autonat/autonat-v1.md, go and js behaviour).

One request per stream: the client writes a length-prefixed ``DIAL`` naming its
peer id and the addresses to try, the server answers one ``DIAL_RESPONSE`` and
closes. The server follows go's ``autoNATService`` (p2p/host/autonat/svc.go):

* the requester must name itself (``E_BAD_REQUEST`` otherwise);
* it must be observed on a public IP that is not ours (``E_DIAL_REFUSED``),
  and only that IP is ever dialed: each requested address has its IP replaced by
  the observed one (so we cannot be used to attack a third party), then
  non-TCP ones are skipped, at most 16 are kept, and the observed address
  itself is tried last;
* per-peer (3) and global (30) dial-backs per minute, a few at once;
* dial-backs use a separate throw-away identity and never the host's own
  connections (an open connection proves nothing about dialability); a failed
  dial is answered only once the dial budget is spent (no port scanner).

Scope decisions (public or not) go through the host's
:class:`~zikade_py.p2p.addrscope.AddressPolicy`, so loopback test networks
work only when they say so explicitly (docs/autonat.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from google.protobuf.message import DecodeError

from zikade_py.p2p.addrscope import AddressPolicy, Scope
from zikade_py.p2p.autonat_status import AutoNATConfig
from zikade_py.p2p.connection import Connection, Stream, upgrade_outbound
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.io import (
    IncompleteReadError,
    MessageTooLargeError,
    TcpStream,
    length_prefixed,
)
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.pb import autonat_pb2
from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID
from zikade_py.p2p.varint import VarintError

if TYPE_CHECKING:
    from zikade_py.p2p.host import Host

log = logging.getLogger(__name__)

AUTONAT_PROTOCOL: Final = "/libp2p/autonat/1.0.0"
"""AutoNAT v1 (go ``AutoNATProto``, js ``/libp2p/autonat/1.0.0``)."""

MAX_MESSAGE_SIZE: Final = 4096
"""Largest AutoNAT message read or written (go ``maxMsgSize``; js reads 8 KiB)."""

MAX_REQUEST_ADDRS: Final = 64
"""Addresses of a request that are decoded at all (16 of them are dialed)."""

Message = autonat_pb2.Message


class ResponseStatus(enum.IntEnum):
    """``DialResponse.status`` values."""

    OK = 0
    E_DIAL_ERROR = 100
    E_DIAL_REFUSED = 101
    E_BAD_REQUEST = 200
    E_INTERNAL_ERROR = 300


class AutoNATError(Exception):
    """A dial-back request failed before an answer arrived, or the answer was malformed."""


@dataclass(frozen=True, slots=True)
class DialBackResult:
    """A server's answer to our dial-back request."""

    status: ResponseStatus
    text: str = ""
    addr: Multiaddr | None = None
    """The address it dialed us at (OK), or the last it tried (js, on errors)."""


# --- codec -------------------------------------------------------------------------------------


def encode_dial(peer: PeerID, addrs: Sequence[Multiaddr]) -> bytes:
    """A length-prefixed ``DIAL`` for ``peer`` at ``addrs`` (``/p2p`` suffixes removed),
    trimmed to :data:`MAX_MESSAGE_SIZE`."""
    msg = Message(type=Message.DIAL)
    msg.dial.peer.id = peer.multihash
    for addr in addrs:
        msg.dial.peer.addrs.append(addr.without_peer_id().to_bytes())
        if msg.ByteSize() > MAX_MESSAGE_SIZE - 8:
            del msg.dial.peer.addrs[-1]
            break
    return length_prefixed(msg.SerializeToString())


def encode_response(status: ResponseStatus, text: str = "", addr: Multiaddr | None = None) -> bytes:
    """A length-prefixed ``DIAL_RESPONSE``."""
    msg = Message(type=Message.DIAL_RESPONSE)
    msg.dialResponse.status = int(status)  # type: ignore[assignment]
    if text:
        msg.dialResponse.statusText = text[:256]
    if addr is not None:
        msg.dialResponse.addr = addr.without_peer_id().to_bytes()
    return length_prefixed(msg.SerializeToString())


async def _read_message(stream: Stream) -> autonat_pb2.Message:
    try:
        body = await stream.reader.read_length_prefixed(MAX_MESSAGE_SIZE)
    except (IncompleteReadError, MessageTooLargeError, VarintError) as exc:
        raise AutoNATError(f"bad autonat framing: {exc}") from None
    msg = Message()
    try:
        msg.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise AutoNATError(f"undecodable autonat message: {exc}") from None
    return msg


def decode_response(msg: autonat_pb2.Message) -> DialBackResult:
    """The result carried by a ``DIAL_RESPONSE`` (:class:`AutoNATError` if it is none)."""
    if msg.type != Message.DIAL_RESPONSE or not msg.HasField("dialResponse"):
        raise AutoNATError("the answer is not a DIAL_RESPONSE")
    resp = msg.dialResponse
    try:
        status = ResponseStatus(resp.status)
    except ValueError:
        raise AutoNATError(f"unknown autonat status {resp.status}") from None
    addr = None
    if resp.HasField("addr"):
        with contextlib.suppress(InvalidMultiaddrError):
            addr = Multiaddr.from_bytes(resp.addr)
    return DialBackResult(status, resp.statusText[:256], addr)


# --- client ------------------------------------------------------------------------------------


async def request_dial_back(
    host: Host, peer: PeerID, addrs: Sequence[Multiaddr], *, timeout: float
) -> DialBackResult:
    """Ask ``peer`` to dial us back at ``addrs`` over our connection to it.

    Raises :class:`AutoNATError` (or ``TimeoutError``) when no valid answer came.
    """
    try:
        async with asyncio.timeout(timeout):
            stream = await host.new_stream(peer, [AUTONAT_PROTOCOL], timeout=timeout)
            try:
                await stream.write(encode_dial(host.peer_id, addrs))
                result = decode_response(await _read_message(stream))
            except BaseException:
                with contextlib.suppress(Exception):
                    await stream.reset()
                raise
            with contextlib.suppress(Exception):
                await stream.close()
            return result
    except (AutoNATError, TimeoutError):
        raise
    except Exception as exc:  # dial errors, refused protocol, reset streams
        raise AutoNATError(f"autonat request to {peer} failed: {exc}") from exc


# --- server ------------------------------------------------------------------------------------


class ServedProtocol:
    """Serving one protocol that can be switched on and off (the AutoNAT servers, v1 and
    v2, answer only while we are publicly reachable): identify lists it while enabled."""

    protocol: ClassVar[str]
    """The protocol id served."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.enabled = False

    def enable(self) -> None:
        """Serve the protocol (identify then lists it)."""
        if not self.enabled:
            self._host.set_stream_handler(self.protocol, self.handle_stream)
            self.enabled = True

    def disable(self) -> None:
        """Stop serving it."""
        if self.enabled:
            self._host.remove_stream_handler(self.protocol)
            self.enabled = False

    async def handle_stream(self, stream: Stream) -> None:
        """Serve one inbound stream of :attr:`protocol`."""
        raise NotImplementedError


class AutoNATServer(ServedProtocol):
    """Answers ``/libp2p/autonat/1.0.0`` dial-back requests (see the module docstring)."""

    protocol = AUTONAT_PROTOCOL

    def __init__(self, host: Host, config: AutoNATConfig | None = None) -> None:
        super().__init__(host)
        self.config = config or AutoNATConfig()
        self._dialer_key = PrivateKey.generate()
        self._window_start = time.monotonic()
        self._per_peer: dict[PeerID, int] = {}
        self._global = 0
        self._dialing = 0
        self.answered: dict[ResponseStatus, int] = {}
        """Answers sent, by status (for tests and the daemon's status)."""

    @property
    def policy(self) -> AddressPolicy:
        """The host's address policy (which IPs are public)."""
        return self._host.config.address_policy

    async def handle_stream(self, stream: Stream) -> None:
        """Read one ``DIAL``, answer one ``DIAL_RESPONSE``, close."""
        try:
            async with asyncio.timeout(self.config.dial_timeout + self.config.request_timeout):
                request = await _read_message(stream)
                if request.type != Message.DIAL:
                    raise AutoNATError("expected a DIAL")
                status, text, addr = await self._handle_dial(stream, request)
                self.answered[status] = self.answered.get(status, 0) + 1
                await stream.write(encode_response(status, text, addr))
        except (AutoNATError, TimeoutError) as exc:
            log.debug("autonat request from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()

    async def _handle_dial(
        self, stream: Stream, request: autonat_pb2.Message
    ) -> tuple[ResponseStatus, str, Multiaddr | None]:
        requester = stream.remote_peer
        if not request.HasField("dial") or not request.dial.HasField("peer"):
            return ResponseStatus.E_BAD_REQUEST, "missing peer info", None
        info = request.dial.peer
        if info.HasField("id"):
            try:
                named = PeerID.from_bytes(info.id)
            except InvalidPeerIDError:
                return ResponseStatus.E_BAD_REQUEST, "bad peer id", None
            if named != requester:
                return ResponseStatus.E_BAD_REQUEST, "peer id mismatch", None
        observed = stream.connection.remote_addr
        if observed is None or self._skip(observed):
            return (
                ResponseStatus.E_DIAL_REFUSED,
                "refusing to dial peer with blocked observed address",
                None,
            )
        targets = self.dial_targets(observed, list(info.addrs))
        if not targets:
            return ResponseStatus.E_DIAL_REFUSED, "no dialable addresses", None
        if not self.admit(requester):
            return ResponseStatus.E_DIAL_REFUSED, "too many dials", None
        with self.dial_slot():
            return await self._dial_back(requester, targets)

    def _own_ips(self) -> set[str]:
        return {str(ip) for a in self._host.listen_addrs if (ip := a.ip_address()) is not None}

    def _skip(self, addr: Multiaddr) -> bool:
        """go ``dialPolicy.skipDial``: not a public IP, or one of ours."""
        ip = addr.ip_address()
        if ip is None or self.policy.scope(addr) is not Scope.PUBLIC:
            return True
        return str(ip) in self._own_ips()

    def dial_targets(self, observed: Multiaddr, raw: Sequence[bytes]) -> list[Multiaddr]:
        """What to dial for a request from ``observed``: each requested TCP address with
        its IP replaced by the observed one, then the observed address; at most
        ``max_peer_addresses``, no duplicates, nothing :meth:`_skip` refuses."""
        ip = observed.ip_address()
        assert ip is not None
        out: dict[Multiaddr, None] = {}
        for data in raw[:MAX_REQUEST_ADDRS]:
            try:
                addr = Multiaddr.from_bytes(data)
            except InvalidMultiaddrError:
                continue
            endpoint = addr.tcp_endpoint()
            if endpoint is None or addr.ip_address() is None:
                continue
            target = Multiaddr.from_tcp(str(ip), endpoint[1])
            if not self._skip(target):
                out.setdefault(target, None)
            if len(out) >= self.config.max_peer_addresses:
                break
        endpoint = observed.tcp_endpoint()
        if endpoint is not None and len(out) < self.config.max_peer_addresses:
            out.setdefault(Multiaddr.from_tcp(str(ip), endpoint[1]), None)
        return list(out)

    @contextlib.contextmanager
    def dial_slot(self) -> Iterator[None]:
        """Count a dial-back under way (``max_concurrent_dials``; v1 and v2 share them)."""
        self._dialing += 1
        try:
            yield
        finally:
            self._dialing -= 1

    @property
    def dialer_key(self) -> PrivateKey:
        """The throw-away identity dial-backs are made under (never the host's)."""
        return self._dialer_key

    def admit(self, peer: PeerID) -> bool:
        """Whether a dial-back for ``peer`` fits the rate limits now (and count it)."""
        cfg = self.config
        now = time.monotonic()
        if now - self._window_start >= cfg.throttle_reset_period:
            self._window_start = now
            self._per_peer.clear()
            self._global = 0
        count = self._per_peer.get(peer, 0)
        if count >= cfg.throttle_peer_max:
            return False
        if cfg.throttle_global_max and self._global >= cfg.throttle_global_max:
            return False
        if self._dialing >= cfg.max_concurrent_dials:
            return False
        if peer not in self._per_peer and len(self._per_peer) >= 4 * max(
            cfg.throttle_global_max, 1
        ):
            return False
        self._per_peer[peer] = count + 1
        self._global += 1
        return True

    async def _dial_back(
        self, peer: PeerID, targets: Sequence[Multiaddr]
    ) -> tuple[ResponseStatus, str, Multiaddr | None]:
        budget = self.config.dial_timeout
        deadline = time.monotonic() + budget
        error = "dial failed"
        for addr in targets:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await self._dial_once(peer, addr, remaining)
            except Exception as exc:
                log.debug("autonat dial-back of %s at %s failed: %r", peer, addr, exc)
                continue
            return ResponseStatus.OK, "", addr
        if self.config.pad_failed_dials:
            await asyncio.sleep(max(deadline - time.monotonic(), 0.0))
        return ResponseStatus.E_DIAL_ERROR, error, None

    async def _dial_once(self, peer: PeerID, addr: Multiaddr, budget: float) -> None:
        """:meth:`dial_fresh`, then closed: the upgrade alone is the proof (v1)."""
        conn = await self.dial_fresh(peer, addr, budget)
        await conn.close()

    async def dial_fresh(self, peer: PeerID, addr: Multiaddr, budget: float) -> Connection:
        """A fresh TCP connection to ``addr`` (a TCP address) under the throw-away
        :attr:`dialer_key`, upgraded within ``budget`` seconds (which proves the peer id):
        a dial-back must not reuse, or be mistaken for, one of the host's connections.
        Both versions dial back this way; the host's dial guard applies."""
        endpoint = addr.tcp_endpoint()
        assert endpoint is not None
        guard = getattr(self._host, "dial_guard", None)
        if guard is not None:
            guard.check(*endpoint)
        async with asyncio.timeout(budget):
            reader, writer = await asyncio.open_connection(endpoint[0], endpoint[1])
            tcp = TcpStream(reader, writer)
            try:
                return await upgrade_outbound(
                    tcp, self._dialer_key, peer,
                    yamux_config=self._host.config.yamux_config(), timeout=budget,
                )
            except BaseException:
                tcp.abort()
                raise
