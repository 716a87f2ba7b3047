"""multistream-select 1.0.0: agreeing on a protocol for a connection or stream (WIRE.md §3).

Every raw connection (to pick ``/noise``), every secured connection (to pick
``/yamux/1.0.0``) and every yamux stream (``/ipfs/kad/1.0.0``, …) starts with
this exchange. Both roles are here:

* the initiator writes the header and its first proposal in one write without
  waiting (rust listeners wait for the dialer's header first), and on ``na``
  tries the next protocol;
* the responder writes its header at once, then answers each proposal with an
  echo or ``na`` (also for ``ls``, which go dropped too), and hands bytes the
  initiator pipelined after its proposal to the protocol handler through the
  returned :class:`~zikade_py.p2p.io.BufferedReader`.

Message framing: ``uvarint(len + 1) ‖ utf8 ‖ '\\n'``, at most 1024 bytes as in
go and js. Timeouts belong to the caller (the host wraps negotiation in one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from zikade_py.p2p.io import BufferedReader, ByteStream, IncompleteReadError
from zikade_py.p2p.varint import VarintError, encode_uvarint

MULTISTREAM_ID: Final = "/multistream/1.0.0"
"""The header both sides send first."""

NA: Final = "na"
"""The responder's answer to a protocol it does not speak."""

LS: Final = "ls"
"""The optional "list protocols" request; we answer it with ``na`` like go."""

MAX_MESSAGE_LENGTH: Final = 1024
"""Largest length prefix accepted (go ``lpReadBuf``, js ``MAX_PROTOCOL_LENGTH``)."""

MAX_PROPOSALS: Final = 32
"""Proposals a responder answers before giving up, so a peer cannot keep it busy forever."""


class NegotiationError(Exception):
    """The peer broke multistream-select (or the stream ended during it): a remote error."""


class ProtocolNotSupportedError(NegotiationError):
    """The responder answered ``na`` to every protocol we proposed."""


def encode_message(text: str) -> bytes:
    """One framed multistream message; ValueError for ids we must not send (local misuse)."""
    raw = text.encode()
    if "\n" in text or not raw:
        raise ValueError(f"invalid multistream message {text!r}")
    if len(raw) + 1 > MAX_MESSAGE_LENGTH:
        raise ValueError(f"multistream message of {len(raw) + 1} bytes exceeds the limit")
    return encode_uvarint(len(raw) + 1) + raw + b"\n"


async def read_message(reader: BufferedReader) -> str:
    """Read one framed message and return it without its newline (NegotiationError if bad)."""
    try:
        length = await reader.read_uvarint()
        if length > MAX_MESSAGE_LENGTH:
            raise NegotiationError(f"multistream message of {length} bytes exceeds the limit")
        if length == 0:
            raise NegotiationError("empty multistream message (missing newline)")
        raw = await reader.read_exactly(length)
    except VarintError as exc:
        raise NegotiationError(f"malformed multistream length: {exc}") from None
    except IncompleteReadError as exc:
        raise NegotiationError(f"stream ended during negotiation: {exc}") from None
    if raw[-1:] != b"\n":
        raise NegotiationError("multistream message does not end with a newline")
    try:
        return raw[:-1].decode()
    except UnicodeDecodeError:
        raise NegotiationError("multistream message is not UTF-8") from None


async def _expect_header(reader: BufferedReader) -> None:
    header = await read_message(reader)
    if header != MULTISTREAM_ID:
        raise NegotiationError(f"expected {MULTISTREAM_ID!r}, got {header[:64]!r}")


async def _read_reply(reader: BufferedReader, protocol: str) -> bool:
    """True for the echo of ``protocol``, False for ``na``, NegotiationError otherwise."""
    reply = await read_message(reader)
    if reply == protocol:
        return True
    if reply == NA:
        return False
    raise NegotiationError(f"proposed {protocol!r} but the peer answered {reply[:64]!r}")


async def select_protocol(
    stream: ByteStream, protocols: Sequence[str], *, reader: BufferedReader | None = None
) -> tuple[str, BufferedReader]:
    """Initiator: agree on the first of ``protocols`` the peer speaks.

    Returns the protocol and the reader to continue with (it may already hold
    the protocol's first bytes). Raises :class:`ProtocolNotSupportedError` if
    the peer refuses all of them, :class:`NegotiationError` if it breaks the
    protocol, and ValueError for an empty or unsendable list.
    """
    if not protocols:
        raise ValueError("no protocols to propose")
    framed = [encode_message(p) for p in protocols]
    reader = reader if reader is not None else BufferedReader(stream)
    await stream.write(encode_message(MULTISTREAM_ID) + framed[0])
    await _expect_header(reader)
    for i, protocol in enumerate(protocols):
        if i > 0:
            await stream.write(framed[i])
        if await _read_reply(reader, protocol):
            return protocol, reader
    raise ProtocolNotSupportedError(f"peer supports none of {list(protocols)}")


def _is_protocol_id(proposal: str) -> bool:
    """Whether a proposal could name a protocol (not a control word, echoable as one line)."""
    return bool(proposal) and "\n" not in proposal and proposal not in (LS, MULTISTREAM_ID, NA)


async def handle_negotiation(
    stream: ByteStream,
    supported: Callable[[str], bool],
    *,
    reader: BufferedReader | None = None,
) -> tuple[str, BufferedReader]:
    """Responder: answer proposals until one is ``supported``; return it and the reader.

    Bytes the initiator sent after its accepted proposal stay in the reader for
    the protocol handler. Raises :class:`NegotiationError` when the peer breaks
    the protocol, ends the stream, or makes more than :data:`MAX_PROPOSALS`.
    """
    reader = reader if reader is not None else BufferedReader(stream)
    await stream.write(encode_message(MULTISTREAM_ID))
    await _expect_header(reader)
    for _ in range(MAX_PROPOSALS):
        proposal = await read_message(reader)
        if _is_protocol_id(proposal) and supported(proposal):
            await stream.write(encode_message(proposal))
            return proposal, reader
        await stream.write(encode_message(NA))
    raise NegotiationError(f"peer made more than {MAX_PROPOSALS} proposals")


class LazyNegotiatedReader(BufferedReader):
    """The reader of a lazily negotiated stream: checks the peer's answer before any data.

    The first read (of any kind) consumes and verifies the peer's header and
    echo, raising :class:`ProtocolNotSupportedError` for ``na`` and
    :class:`NegotiationError` for anything else wrong; later reads raise the
    same error again.
    """

    __slots__ = ("_error", "_protocol", "_verified", "_verifying")

    def __init__(self, stream: ByteStream, protocol: str) -> None:
        super().__init__(stream)
        self._protocol = protocol
        self._verified = False
        self._verifying = False
        self._error: NegotiationError | None = None

    @property
    def verified(self) -> bool:
        """Whether the peer has confirmed the protocol."""
        return self._verified

    async def verify(self) -> None:
        """Read and check the peer's header and echo (once); raise if it refused."""
        if self._verified or self._verifying:
            return  # _verifying: our own reads below come back through the overrides
        if self._error is not None:
            raise type(self._error)(str(self._error))
        self._verifying = True
        try:
            await _expect_header(self)
            if not await _read_reply(self, self._protocol):
                raise ProtocolNotSupportedError(f"peer does not support {self._protocol!r}")
        except NegotiationError as exc:
            self._error = exc
            raise
        finally:
            self._verifying = False
        self._verified = True

    async def read_exactly(self, n: int) -> bytes:
        """As :meth:`BufferedReader.read_exactly`, after :meth:`verify`."""
        await self.verify()
        return await super().read_exactly(n)

    async def read_some(self, max_bytes: int = 65536) -> bytes:
        """As :meth:`BufferedReader.read_some`, after :meth:`verify`."""
        await self.verify()
        return await super().read_some(max_bytes)

    async def read_uvarint(self) -> int:
        """As :meth:`BufferedReader.read_uvarint`, after :meth:`verify`."""
        await self.verify()
        return await super().read_uvarint()

    async def read_length_prefixed(self, max_size: int) -> bytes:
        """As :meth:`BufferedReader.read_length_prefixed`, after :meth:`verify`."""
        await self.verify()
        return await super().read_length_prefixed(max_size)

    async def at_eof(self) -> bool:
        """As :meth:`BufferedReader.at_eof`, after :meth:`verify`."""
        await self.verify()
        return await super().at_eof()

    def take_buffer(self) -> bytes:
        """As :meth:`BufferedReader.take_buffer`; only after :meth:`verify` (else RuntimeError)."""
        if not self._verified:
            raise RuntimeError("take_buffer() before the lazy negotiation was verified")
        return super().take_buffer()


def lazy_proposal(protocol: str) -> bytes:
    """Header and proposal of a pipelined selection, for a caller that writes them together
    with its protocol's first message (the connection upgrade does this for ``/noise``)."""
    return encode_message(MULTISTREAM_ID) + encode_message(protocol)


async def select_protocol_lazy(
    stream: ByteStream, protocol: str, first_payload: bytes
) -> LazyNegotiatedReader:
    """Pipelined initiator: header, proposal and ``first_payload`` in one write, no waiting.

    For protocols the peer is known to speak (go ``NewMSSelect``, rust
    ``V1Lazy``): saves a round trip. The returned reader verifies the peer's
    answer on first use; on ``na`` it raises and the stream must be reset.
    """
    await stream.write(lazy_proposal(protocol) + first_payload)
    return LazyNegotiatedReader(stream, protocol)
