"""Hand-written ``/ipfs/kad/1.0.0`` peers for the HTTP tests (a directory and a black hole).

They make a query last as long as a test needs: a directory answers every request
with a black hole as the closer peer, and the black hole reads requests and never
answers, so a query through them runs until its deadline or until it is cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from zikade_py.dht.messages import Message, MessageError, PeerInfo, encode_message, read_message
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.host import Host
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.yamux import StreamResetError

Responder = Callable[[Message], Awaitable[Message | None]]


class FakeKadPeer:
    """A bare host speaking kad through ``responder`` (None: write nothing)."""

    def __init__(self, responder: Responder) -> None:
        self.host = Host(PrivateKey.generate())
        self.responder = responder
        self.requests: list[Message] = []
        self.reset_types: list[int] = []
        """Types of the last request read on each stream the other side reset."""
        self.host.set_stream_handler(KAD_PROTOCOL, self._handle)

    async def _handle(self, stream: Stream) -> None:
        last: Message | None = None
        try:
            while (request := await read_message(stream.reader)) is not None:
                last = request
                self.requests.append(request)
                response = await self.responder(request)
                if response is not None:
                    await stream.write(encode_message(response))
        except StreamResetError:
            if last is not None:
                self.reset_types.append(last.type)
        except (MessageError, ConnectionError):
            pass

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.host.peer_id, tuple(self.host.listen_addrs))

    @property
    def multiaddr(self) -> str:
        return str(self.host.listen_addrs[0].with_peer_id(self.host.peer_id))

    async def __aenter__(self) -> FakeKadPeer:
        await self.host.start([Multiaddr.parse("/ip4/127.0.0.1/tcp/0")])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.host.close()


def black_hole() -> FakeKadPeer:
    """Reads requests, never answers."""

    async def never(_request: Message) -> Message | None:
        return None

    return FakeKadPeer(never)


def directory(peers: Callable[[], list[PeerInfo]]) -> FakeKadPeer:
    """Answers every request (but ADD_PROVIDER) with ``peers()`` as closer peers."""

    async def answer(request: Message) -> Message | None:
        if request.type == Message.ADD_PROVIDER:
            return None
        response = Message(type=request.type, key=request.key)
        response.closerPeers.extend(p.to_pb() for p in peers())
        return response

    return FakeKadPeer(answer)
