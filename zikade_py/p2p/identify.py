"""Identify (``/ipfs/id/1.0.0``) and identify push (``/ipfs/id/push/1.0.0``), WIRE.md §6.

Peers decide whether we are a DHT server from the protocol list we send here,
and learn where to reach us from our listen addresses; we learn the same about
them. The opener of ``/ipfs/id/1.0.0`` reads; the handler writes one message
and closes. A push is the opener writing a complete message (go replaces its
whole protocol list with whatever a push carries, so a partial push would
erase ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from zikade_py import __version__
from zikade_py.p2p.addrscope import DEFAULT_POLICY, AddressPolicy, normalize_addrs
from zikade_py.p2p.connection import Connection, Stream
from zikade_py.p2p.crypto import InvalidKeyError, PublicKey
from zikade_py.p2p.events import PeerIdentified, ProtocolsUpdated
from zikade_py.p2p.io import (
    BufferedReader,
    IncompleteReadError,
    MessageTooLargeError,
    length_prefixed,
)
from zikade_py.p2p.localaddrs import LocalAddrs
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr, decode_addrs
from zikade_py.p2p.pb import identify_pb2
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import CONNECTED_ADDR_TTL
from zikade_py.p2p.varint import VarintError

if TYPE_CHECKING:
    from zikade_py.p2p.host import Host

log = logging.getLogger(__name__)

IDENTIFY_PROTOCOL_ID = "/ipfs/id/1.0.0"
IDENTIFY_PUSH_PROTOCOL_ID = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
AGENT_VERSION = f"zikade-py/{__version__}"
MAX_MESSAGE_SIZE = 8192
"""Largest identify message we accept (go ``signedIDSize``, js 8 KiB)."""
MAX_MESSAGES = 10
"""Delimited messages merged from one identify stream (go ``readAllIDMessages``, js)."""
MAX_SEND_SIZE = 4096
"""Largest message we send: rust refuses anything longer (WIRE.md §6)."""
MAX_PROTOCOL_LENGTH = 1024
"""Protocol ids longer than multistream's limit cannot be real; they are dropped."""
IDENTIFY_TIMEOUT = 10.0
"""Seconds for a whole identify exchange."""
PUSH_DELAY = 0.05
"""Protocol changes within this many seconds are sent in one push."""


class IdentifyError(Exception):
    """The peer's identify message was malformed, too large, or names another identity."""


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """What a peer said about itself in identify."""

    public_key: PublicKey | None
    listen_addrs: tuple[Multiaddr, ...]
    protocols: tuple[str, ...]
    observed_addr: Multiaddr | None
    protocol_version: str
    agent_version: str


def encode_identify(
    *,
    public_key: PublicKey,
    listen_addrs: Sequence[Multiaddr],
    protocols: Sequence[str],
    observed_addr: Multiaddr | None,
    agent_version: str = AGENT_VERSION,
) -> bytes:
    """A complete Identify protobuf of at most :data:`MAX_SEND_SIZE` bytes.

    Listen addresses are sent without ``/p2p``; if everything does not fit, the
    last addresses are left out (the key and protocols always fit in practice).
    """
    msg = identify_pb2.Identify(
        protocolVersion=PROTOCOL_VERSION,
        agentVersion=agent_version,
        publicKey=public_key.to_protobuf(),
        protocols=list(protocols),
    )
    if observed_addr is not None:
        msg.observedAddr = observed_addr.without_peer_id().to_bytes()
    for addr in listen_addrs:
        msg.listenAddrs.append(addr.without_peer_id().to_bytes())
        if msg.ByteSize() > MAX_SEND_SIZE:
            del msg.listenAddrs[-1]
            break
    data: bytes = msg.SerializeToString()
    return data


def decode_identify(data: bytes) -> IdentifyInfo:
    """Parse one (or several merged) Identify messages; bad addresses are dropped one by one.

    Raises :class:`IdentifyError` for an unparseable message or an invalid public key.
    """
    msg = identify_pb2.Identify()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise IdentifyError(f"undecodable identify message: {exc}") from None
    public_key = None
    if msg.HasField("publicKey"):
        try:
            public_key = PublicKey.from_protobuf(msg.publicKey)
        except InvalidKeyError as exc:
            raise IdentifyError(f"invalid public key in identify: {exc}") from None
    observed = None
    if msg.HasField("observedAddr"):
        with contextlib.suppress(InvalidMultiaddrError):
            observed = Multiaddr.from_bytes(msg.observedAddr)
    protocols = tuple(p for p in msg.protocols if 0 < len(p) <= MAX_PROTOCOL_LENGTH)
    return IdentifyInfo(
        public_key=public_key,
        listen_addrs=tuple(decode_addrs(msg.listenAddrs)),
        protocols=protocols,
        observed_addr=observed,
        protocol_version=msg.protocolVersion,
        agent_version=msg.agentVersion,
    )


async def read_identify(reader: BufferedReader, peer: PeerID) -> IdentifyInfo:
    """Read up to :data:`MAX_MESSAGES` length-prefixed messages until EOF and merge them.

    The public key, if sent, must be ``peer``'s; otherwise :class:`IdentifyError`.
    """
    merged = bytearray()
    try:
        for _ in range(MAX_MESSAGES):
            if await reader.at_eof():
                break
            merged += await reader.read_length_prefixed(MAX_MESSAGE_SIZE)
        else:
            if not await reader.at_eof():
                raise IdentifyError(f"more than {MAX_MESSAGES} identify messages")
    except (IncompleteReadError, MessageTooLargeError, VarintError) as exc:
        raise IdentifyError(f"bad identify framing: {exc}") from None
    if not merged:
        raise IdentifyError("empty identify")
    info = decode_identify(bytes(merged))  # protobuf concatenation == merge
    if info.public_key is not None and not peer.matches(info.public_key):
        raise IdentifyError("identify carries another peer's public key")
    return info


class IdentifyService:
    """Runs identify on every connection of a host, serves it, and pushes protocol changes.

    It also keeps the host's view of its own addresses (:attr:`addresses`): what peers
    observe of us feeds it, and what each peer is told comes from it (nothing narrower
    than the peer's own scope, and in auto mode only confirmed public addresses)."""

    __slots__ = ("_host", "_push_task", "_results", "addresses", "on_addrs_changed")

    def __init__(self, host: Host) -> None:
        self._host = host
        self._results: dict[Connection, asyncio.Future[IdentifyInfo]] = {}
        self._push_task: asyncio.Task[None] | None = None
        self.addresses = LocalAddrs(lambda: host.listen_addrs, host.config.address_policy)
        """Our addresses: listen, observed by peers, confirmed by AutoNAT (localaddrs.py)."""
        self.on_addrs_changed: list[Callable[[], None]] = []
        """Called when the set of activated observed addresses changes (AutoNAT re-checks)."""

    def _message(self, conn: Connection) -> bytes:
        host = self._host
        return encode_identify(
            public_key=host.public_key,
            listen_addrs=self.addresses.announce(conn.remote_addr),
            protocols=host.protocols,
            observed_addr=conn.remote_addr,
        )

    async def handle_identify(self, stream: Stream) -> None:
        """Serve ``/ipfs/id/1.0.0``: write our identify, then close."""
        await stream.write(length_prefixed(self._message(stream.connection)))
        await stream.close()

    async def handle_push(self, stream: Stream) -> None:
        """Serve ``/ipfs/id/push/1.0.0``: take the peer's updated identify."""
        try:
            async with asyncio.timeout(IDENTIFY_TIMEOUT):
                info = await read_identify(stream.reader, stream.remote_peer)
        except (IdentifyError, TimeoutError) as exc:
            log.debug("bad identify push from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()
        self._record(stream.connection, info)
        self._host.publish(ProtocolsUpdated(stream.remote_peer, info.protocols))
        self._observe(stream.connection, info)

    def identify(self, conn: Connection) -> asyncio.Future[IdentifyInfo]:
        """The identify result of ``conn``, starting the exchange if it has not run yet."""
        fut = self._results.get(conn)
        if fut is None:
            # its own context: the exchange outlives whichever caller happened to start it
            fut = asyncio.get_running_loop().create_task(
                self._run(conn), context=contextvars.Context()
            )
            fut.add_done_callback(_consume_exception)
            self._results[conn] = fut
        return fut

    def forget(self, conn: Connection) -> None:
        """Drop the result of a closed connection (and stop an exchange still running)."""
        fut = self._results.pop(conn, None)
        if fut is not None and not fut.done():
            fut.cancel()
        before = self.addresses.observed.addrs()
        self.addresses.forget_connection(conn)
        if self.addresses.observed.addrs() != before:
            self._addrs_changed()

    async def _run(self, conn: Connection) -> IdentifyInfo:
        async with asyncio.timeout(IDENTIFY_TIMEOUT):
            stream = await conn.open_stream([IDENTIFY_PROTOCOL_ID], timeout=IDENTIFY_TIMEOUT)
            try:
                info = await read_identify(stream.reader, conn.remote_peer)
            except BaseException:
                await stream.reset()
                raise
            await stream.close()
        self._record(conn, info)
        self._host.publish(
            PeerIdentified(conn.remote_peer, info.protocols, info.listen_addrs, info.agent_version)
        )
        self._observe(conn, info)
        return info

    def _observe(self, conn: Connection, info: IdentifyInfo) -> None:
        """Count where ``conn``'s peer saw us; a newly activated address is pushed."""
        observed = self.addresses.observed
        before = observed.addrs()
        self.addresses.record_observation(
            conn, conn.local_addr, conn.remote_addr, info.observed_addr
        )
        if observed.addrs() != before:
            self._addrs_changed()

    def _addrs_changed(self) -> None:
        for callback in list(self.on_addrs_changed):
            try:
                callback()
            except Exception:  # a listener's bug must not break identify
                log.exception("address change listener failed")
        if self._host.is_running:
            self.schedule_push()

    def _record(self, conn: Connection, info: IdentifyInfo) -> None:
        store = self._host.peerstore
        peer = conn.remote_peer
        store.set_protocols(peer, info.protocols)
        store.set_identify_info(
            peer,
            agent=info.agent_version,
            protocol_version=info.protocol_version,
            public_key=info.public_key or conn.remote_public_key,
        )
        addrs = filter_listen_addrs(
            normalize_addrs(info.listen_addrs, peer), conn.remote_addr, self.addresses.policy
        )
        store.add_addrs(peer, addrs, CONNECTED_ADDR_TTL)

    def schedule_push(self) -> None:
        """Push our identify to every identified peer soon (changes are coalesced)."""
        if self._push_task is None or self._push_task.done():
            self._push_task = asyncio.get_running_loop().create_task(
                self._push_all(), context=contextvars.Context()
            )

    async def _push_all(self) -> None:
        await asyncio.sleep(PUSH_DELAY)
        conns = [c for c, f in self._results.items() if f.done() and not c.is_closed]
        await asyncio.gather(*(self._push(c) for c in conns), return_exceptions=True)

    async def _push(self, conn: Connection) -> None:
        try:
            async with asyncio.timeout(IDENTIFY_TIMEOUT):
                stream = await conn.open_stream([IDENTIFY_PUSH_PROTOCOL_ID])
                await stream.write(length_prefixed(self._message(conn)))
                await stream.close()
        except Exception as exc:
            log.debug("identify push to %s failed: %s", conn.remote_peer, exc)

    async def close(self) -> None:
        """Stop pushes and pending exchanges."""
        tasks: list[asyncio.Future[object]] = []
        if self._push_task is not None:
            self._push_task.cancel()
            tasks.append(self._push_task)  # type: ignore[arg-type]
        for conn in list(self._results):
            fut = self._results.pop(conn)
            fut.cancel()
            tasks.append(fut)  # type: ignore[arg-type]
        await asyncio.gather(*tasks, return_exceptions=True)


def filter_listen_addrs(
    addrs: Sequence[Multiaddr], remote: Multiaddr | None, policy: AddressPolicy = DEFAULT_POLICY
) -> list[Multiaddr]:
    """The listen addresses worth keeping from a peer that reached us from ``remote``
    (go identify's ``filterAddrs``): dialable TCP or QUIC only, none unspecified, and none of a
    narrower scope than the connection's (a public peer's loopback or private addresses
    would make us dial inside our own network; addrscope.py, which also knows the
    loopback stand-ins of test networks)."""
    out = []
    for addr in addrs:
        ip = addr.ip_address()
        dialable = addr.tcp_endpoint() is not None or addr.quic_endpoint() is not None
        if ip is None or not dialable or addr.is_unspecified():
            continue
        if ip.is_multicast:
            continue
        out.append(addr)
    return policy.usable_from(out, remote)


def _consume_exception(fut: asyncio.Future[IdentifyInfo]) -> None:
    """Mark a failed exchange's exception as retrieved (a failed identify is not fatal)."""
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None:
            log.debug("identify failed: %r", exc)
