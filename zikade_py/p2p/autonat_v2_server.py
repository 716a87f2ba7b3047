"""AutoNAT v2, server side: dial one of a requester's addresses and prove it with its nonce
(libp2p/specs autonat/autonat-v2.md; go ``p2p/protocol/autonatv2/server.go``).

Per request (one ``/libp2p/autonat/2/dial-request`` stream): the first address we
are willing to dial is chosen (TCP, public under the address policy, not on one of
our IPs; at most :data:`MAX_REQUEST_ADDRS` looked at). Its IP may differ from the
one the requester is observed on only if the requester first sends us 30..100 kB of
dial data (amplification protection: dialing a victim then costs the attacker more
than it costs us). We dial from a throw-away identity on a fresh connection, send
``DialBack{nonce}`` on ``/libp2p/autonat/2/dial-back``, wait for the acknowledgement,
close, and answer ``DialResponse{OK, addrIdx, dialStatus}``. Requests share the v1
server's rate limits (per peer, global, concurrent dials).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from zikade_py.p2p.addrscope import Scope
from zikade_py.p2p.autonat import AutoNATError, AutoNATServer, ServedProtocol
from zikade_py.p2p.autonat_v2 import (
    DIAL_BACK_PROTOCOL,
    DIAL_DATA_CHUNK,
    DIAL_REQUEST_PROTOCOL,
    MAX_MESSAGE_SIZE,
    DialStatus,
    ResponseStatusV2,
    read_message,
)
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.io import length_prefixed
from zikade_py.p2p.multiaddr import InvalidMultiaddrError, Multiaddr
from zikade_py.p2p.pb import autonat_v2_pb2 as pb
from zikade_py.p2p.peer_id import PeerID

if TYPE_CHECKING:
    from zikade_py.p2p.host import Host

log = logging.getLogger(__name__)

MAX_REQUEST_ADDRS: Final = 16
"""Addresses of one request looked at (go: the first it can dial among a few)."""

DIAL_DATA_MIN: Final = 30_000
DIAL_DATA_MAX: Final = 100_000
"""The range of dial data asked for a different IP (spec: 30k..100k)."""


class AutoNATv2Server(ServedProtocol):
    """Serves ``/libp2p/autonat/2/dial-request`` (see the module docstring); ``limits`` is
    the v1 server, whose rate limits and configuration it shares."""

    protocol = DIAL_REQUEST_PROTOCOL

    def __init__(self, host: Host, limits: AutoNATServer) -> None:
        super().__init__(host)
        self._limits = limits
        self.answered: dict[DialStatus, int] = {}
        """Dials made, by outcome (for tests and status)."""

    async def handle_stream(self, stream: Stream) -> None:
        """One request: choose, maybe charge, dial back, answer, close."""
        cfg = self._limits.config
        try:
            async with asyncio.timeout(cfg.dial_timeout + cfg.request_timeout):
                request = await read_message(stream)
                if request.WhichOneof("msg") != "dialRequest":
                    raise AutoNATError("expected a DialRequest")
                response = await self._serve(stream, request.dialRequest)
                await stream.write(length_prefixed(
                    pb.Message(dialResponse=response).SerializeToString()
                ))
        except (AutoNATError, TimeoutError) as exc:
            log.debug("autonat v2 request from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        await stream.close()

    async def _serve(self, stream: Stream, request: pb.DialRequest) -> pb.DialResponse:
        observed = stream.connection.remote_addr
        observed_ip = observed.ip_address() if observed is not None else None
        if observed_ip is None:
            return _response(ResponseStatusV2.E_DIAL_REFUSED)
        chosen = self._choose(request.addrs)
        if chosen is None:
            return _response(ResponseStatusV2.E_DIAL_REFUSED)
        index, addr = chosen
        if not self._limits.admit(stream.remote_peer):
            return _response(ResponseStatusV2.E_REQUEST_REJECTED)
        if addr.ip_address() != observed_ip:
            await self._charge(stream, index)
        with self._limits.dial_slot():
            status = await self._dial_back(stream.remote_peer, addr, request.nonce)
        self.answered[status] = self.answered.get(status, 0) + 1
        return _response(ResponseStatusV2.OK, index, status)

    def _choose(self, raw: Sequence[bytes]) -> tuple[int, Multiaddr] | None:
        """The first requested address we are willing to dial, with its index."""
        policy = self._host.config.address_policy
        own = {str(ip) for a in self._host.listen_addrs if (ip := a.ip_address()) is not None}
        for index, data in enumerate(raw[:MAX_REQUEST_ADDRS]):
            try:
                addr = Multiaddr.from_bytes(data)
            except InvalidMultiaddrError:
                continue
            ip = addr.ip_address()
            if addr.tcp_endpoint() is None or ip is None or addr.peer_id() is not None:
                continue
            if policy.scope(addr) is not Scope.PUBLIC or str(ip) in own:
                continue
            return index, addr
        return None

    async def _charge(self, stream: Stream, index: int) -> None:
        """Ask for 30..100 kB of dial data and read it (counted, then dropped)."""
        wanted = DIAL_DATA_MIN + secrets.randbelow(DIAL_DATA_MAX - DIAL_DATA_MIN + 1)
        await stream.write(length_prefixed(pb.Message(
            dialDataRequest=pb.DialDataRequest(addrIdx=index, numBytes=wanted)
        ).SerializeToString()))
        got = 0
        while got < wanted:
            msg = await read_message(stream)
            if msg.WhichOneof("msg") != "dialDataResponse":
                raise AutoNATError("expected DialDataResponse")
            size = len(msg.dialDataResponse.data)
            if size > DIAL_DATA_CHUNK:
                raise AutoNATError("dial data chunk over 4096 bytes")
            got += size

    async def _dial_back(self, peer: PeerID, addr: Multiaddr, nonce: int) -> DialStatus:
        budget = self._limits.config.dial_timeout
        try:
            conn = await self._limits.dial_fresh(peer, addr, budget)
        except Exception as exc:
            log.debug("autonat v2 dial of %s at %s failed: %r", peer, addr, exc)
            return DialStatus.E_DIAL_ERROR
        try:
            async with asyncio.timeout(budget):
                back = await conn.open_stream([DIAL_BACK_PROTOCOL], timeout=budget)
                await back.write(length_prefixed(pb.DialBack(nonce=nonce).SerializeToString()))
                await back.reader.read_length_prefixed(MAX_MESSAGE_SIZE)
                with contextlib.suppress(Exception):
                    await back.close()
        except Exception as exc:
            log.debug("autonat v2 dial-back to %s at %s failed: %r", peer, addr, exc)
            return DialStatus.E_DIAL_BACK_ERROR
        finally:
            await conn.close()
        return DialStatus.OK


def _response(
    status: ResponseStatusV2, index: int = 0, dial: DialStatus = DialStatus.UNUSED
) -> pb.DialResponse:
    response = pb.DialResponse(addrIdx=index)
    response.status = int(status)  # type: ignore[assignment]
    response.dialStatus = int(dial)  # type: ignore[assignment]
    return response
