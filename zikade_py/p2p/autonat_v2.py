"""AutoNAT v2, client side: ask a peer to dial one of our addresses and prove it with a nonce
(libp2p/specs autonat/autonat-v2.md; ``/libp2p/autonat/2/dial-request`` and ``/dial-back``).

Why a v2 client next to v1: js-libp2p's v1 server cannot answer a peer that is
directly connected to it (docs/autonat.md), while its v2 server dials back on a new
connection. And v2 is better evidence: the server must deliver the nonce of our
request on a fresh connection to the address it reports, so a server cannot claim a
dial it did not make.

Exchange, one request per stream: we send ``DialRequest{addrs, nonce}``; the server
may ask for ``DialDataRequest{addrIdx, numBytes}`` (when the address's IP differs from
the one it sees us on: amplification protection) and we send that many bytes in
``DialDataResponse`` chunks of 4096, up to :data:`MAX_DIAL_DATA`; it dials the chosen
address, opens ``/libp2p/autonat/2/dial-back`` and sends ``DialBack{nonce}``, which
:class:`DialBackHandler` answers ``OK``; then it answers ``DialResponse{status,
addrIdx, dialStatus}``. A success counts only if our nonce arrived.

The server side of v2 is not implemented (v1's is; docs/autonat.md says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from google.protobuf.message import DecodeError

from zikade_py.p2p.autonat import AutoNATError
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.io import (
    IncompleteReadError,
    MessageTooLargeError,
    length_prefixed,
)
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.pb import autonat_v2_pb2 as pb
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.varint import VarintError

if TYPE_CHECKING:
    from zikade_py.p2p.host import Host

log = logging.getLogger(__name__)

DIAL_REQUEST_PROTOCOL: Final = "/libp2p/autonat/2/dial-request"
DIAL_BACK_PROTOCOL: Final = "/libp2p/autonat/2/dial-back"

MAX_MESSAGE_SIZE: Final = 8192
"""Largest v2 message read (js: 8 KiB; go: 8 KiB)."""

MAX_DIAL_DATA: Final = 100_000
"""Most bytes we pay for one dial (the spec tells servers to ask 30k..100k); a server
asking more gets the stream reset."""

DIAL_DATA_CHUNK: Final = 4096
"""``DialDataResponse.data`` is at most this long (spec)."""

MAX_PENDING: Final = 64
"""Nonces we wait for at once (each is one request in flight)."""

NONCE_GRACE: Final = 2.0
"""Seconds an ``OK`` answer waits for its nonce still being handled on the dial-back side."""


class DialStatus(enum.IntEnum):
    """What happened to the dial of the chosen address."""

    UNUSED = 0
    E_DIAL_ERROR = 100
    E_DIAL_BACK_ERROR = 101
    OK = 200


class ResponseStatusV2(enum.IntEnum):
    """Whether the server handled the request at all."""

    E_INTERNAL_ERROR = 0
    E_REQUEST_REJECTED = 100
    E_DIAL_REFUSED = 101
    OK = 200


@dataclass(frozen=True, slots=True)
class DialBackResultV2:
    """A server's answer to our v2 request."""

    status: ResponseStatusV2
    dial_status: DialStatus
    addr: Multiaddr | None
    """The address it chose (our list's ``addrIdx``), if the index was valid."""
    nonce_received: bool
    """Whether our nonce came back on a dial-back stream: an ``OK`` without it is a lie."""
    paid: int = 0
    """Bytes of dial data the server asked for and got."""

    @property
    def reachable(self) -> bool:
        """The chosen address was dialed and the nonce delivered."""
        return (
            self.status is ResponseStatusV2.OK
            and self.dial_status is DialStatus.OK
            and self.nonce_received
        )


class DialBackHandler:
    """Serves ``/libp2p/autonat/2/dial-back``: takes a nonce, answers OK, and wakes the
    request that sent it. Unknown nonces are answered too (the server cannot tell)."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[Multiaddr | None]] = {}

    def expect(self, nonce: int) -> asyncio.Future[Multiaddr | None]:
        """A future resolved with the local address the nonce arrived on."""
        if len(self._pending) >= MAX_PENDING:
            raise AutoNATError("too many AutoNAT v2 requests in flight")
        fut: asyncio.Future[Multiaddr | None] = asyncio.get_running_loop().create_future()
        self._pending[nonce] = fut
        return fut

    def forget(self, nonce: int) -> None:
        """The request of ``nonce`` is over."""
        fut = self._pending.pop(nonce, None)
        if fut is not None and not fut.done():
            fut.cancel()

    async def handle_stream(self, stream: Stream) -> None:
        """Read ``DialBack{nonce}``, answer ``DialBackResponse{OK}``, close."""
        try:
            async with asyncio.timeout(10.0):
                body = await stream.reader.read_length_prefixed(MAX_MESSAGE_SIZE)
                msg = pb.DialBack()
                msg.ParseFromString(body)
                await stream.write(length_prefixed(pb.DialBackResponse().SerializeToString()))
        except (IncompleteReadError, MessageTooLargeError, VarintError, DecodeError,
                TimeoutError) as exc:
            log.debug("bad autonat v2 dial-back from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()
        fut = self._pending.get(msg.nonce)
        if fut is not None and not fut.done():
            fut.set_result(stream.connection.local_addr)


async def read_message(stream: Stream) -> pb.Message:
    """One length-prefixed v2 ``Message``, for the client and the server alike: whatever
    the peer sent wrong (framing, size, protobuf) comes out as :class:`AutoNATError`."""
    try:
        body = await stream.reader.read_length_prefixed(MAX_MESSAGE_SIZE)
    except (IncompleteReadError, MessageTooLargeError, VarintError) as exc:
        raise AutoNATError(f"bad autonat v2 framing: {exc}") from None
    msg = pb.Message()
    try:
        msg.ParseFromString(body)
    except Exception as exc:  # DecodeError and friends
        raise AutoNATError(f"undecodable autonat v2 message: {exc}") from None
    return msg


async def _pay(stream: Stream, num_bytes: int) -> None:
    chunk = length_prefixed(
        pb.Message(dialDataResponse=pb.DialDataResponse(data=bytes(DIAL_DATA_CHUNK)))
        .SerializeToString()
    )
    for _ in range(-(-num_bytes // DIAL_DATA_CHUNK)):
        await stream.write(chunk)


async def request_dial_back_v2(
    host: Host,
    handler: DialBackHandler,
    peer: PeerID,
    addrs: Sequence[Multiaddr],
    *,
    timeout: float,
) -> DialBackResultV2:
    """Ask ``peer`` to dial the first of ``addrs`` it is willing to (priority order).

    Raises :class:`AutoNATError` (or ``TimeoutError``) when no valid answer came.
    """
    if not addrs:
        raise AutoNATError("nothing to ask about: no public address")
    nonce = secrets.randbits(64)
    arrived = handler.expect(nonce)
    paid = 0
    try:
        async with asyncio.timeout(timeout):
            try:
                stream = await host.new_stream(peer, [DIAL_REQUEST_PROTOCOL], timeout=timeout)
            except Exception as exc:
                raise AutoNATError(f"autonat v2 request to {peer} failed: {exc}") from exc
            try:
                request = pb.Message(dialRequest=pb.DialRequest(
                    addrs=[a.without_peer_id().to_bytes() for a in addrs], nonce=nonce
                ))
                await stream.write(length_prefixed(request.SerializeToString()))
                while True:
                    msg = await read_message(stream)
                    kind = msg.WhichOneof("msg")
                    if kind == "dialDataRequest":
                        wanted = msg.dialDataRequest.numBytes
                        if paid + wanted > MAX_DIAL_DATA:
                            raise AutoNATError(f"server wants {wanted} bytes of dial data")
                        await _pay(stream, wanted)
                        paid += wanted
                        continue
                    if kind != "dialResponse":
                        raise AutoNATError(f"unexpected autonat v2 message {kind}")
                    break
            except BaseException:
                with contextlib.suppress(Exception):
                    await stream.reset()
                raise
            with contextlib.suppress(Exception):
                await stream.close()
        resp = msg.dialResponse
        try:
            status = ResponseStatusV2(resp.status)
            dial_status = DialStatus(resp.dialStatus)
        except ValueError:
            raise AutoNATError("autonat v2 answer with an unknown status") from None
        index = resp.addrIdx
        chosen = addrs[index] if 0 <= index < len(addrs) else None
        if status is ResponseStatusV2.OK and dial_status is DialStatus.OK:
            # the nonce came first, on another connection whose task may not have run yet
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(NONCE_GRACE):
                    await asyncio.shield(arrived)
        received = arrived.done() and not arrived.cancelled()
        return DialBackResultV2(status, dial_status, chosen, received, paid)
    except AutoNATError:
        raise
    except TimeoutError:
        raise
    except Exception as exc:  # yamux resets, closed connections
        raise AutoNATError(f"autonat v2 request to {peer} failed: {exc}") from exc
    finally:
        handler.forget(nonce)
