"""Bitswap messages: what travels, as plain values, and the checks on what we receive.

One :class:`Message` value serves every protocol version; :func:`encode` writes
it for the version negotiated on the stream:

* ``/ipfs/bitswap/1.2.0`` — want-have, want-block, sendDontHave, HAVE / DONT_HAVE
  presences, payload blocks with a CID prefix;
* ``/ipfs/bitswap/1.1.0`` — payload blocks with prefix; want-haves are dropped
  (they mean nothing there) and presences are not sent;
* ``/ipfs/bitswap/1.0.0`` and ``/ipfs/bitswap`` — whole blocks (CIDv0 implied),
  so only CIDv0-addressable blocks (dag-pb, sha2-256) can be sent.

:func:`decode` refuses what we will not use: messages over
:data:`MAX_MESSAGE_SIZE`, more entries than :data:`MAX_WANTLIST_ENTRIES`, bad
CIDs. Every received block's CID is computed from its bytes (1.0.0: CIDv0;
1.1.0+: from the prefix), so a block is always named by what it hashes to; the
exchange then drops any block nobody wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from google.protobuf.message import DecodeError

from zikade_py.bitswap.pb import message_pb2 as pb
from zikade_py.blocks import cid as cids

PROTOCOL_120: Final = "/ipfs/bitswap/1.2.0"
PROTOCOL_110: Final = "/ipfs/bitswap/1.1.0"
PROTOCOL_100: Final = "/ipfs/bitswap/1.0.0"
PROTOCOL_LEGACY: Final = "/ipfs/bitswap"
PROTOCOLS: Final = (PROTOCOL_120, PROTOCOL_110, PROTOCOL_100, PROTOCOL_LEGACY)
"""Offered in this order: the newest first (Helia speaks only 1.2.0)."""

MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
"""Largest message we read or write (boxo and Helia use 4 MiB)."""
MAX_BLOCK_SIZE: Final = 2 * 1024 * 1024
"""Largest block we accept or serve (the ecosystem's 2 MiB bound)."""
MAX_WANTLIST_ENTRIES: Final = 1024
"""Want-list entries one message may carry, and one peer may keep with us."""


class WireError(ValueError):
    """A peer sent a message that breaks the protocol or our limits (reset its stream)."""


class WantType(Enum):
    """Want the block itself, or only to know whether the peer has it (1.2.0)."""

    BLOCK = pb.Message.Wantlist.Block
    HAVE = pb.Message.Wantlist.Have


@dataclass(frozen=True, slots=True)
class WantEntry:
    """One want-list entry (``cancel=True`` removes ``cid`` instead)."""

    cid: bytes
    want_type: WantType = WantType.BLOCK
    priority: int = 1
    cancel: bool = False
    send_dont_have: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A Bitswap message, version-independent."""

    wants: tuple[WantEntry, ...] = ()
    full: bool = False
    """The want list replaces the peer's previous one."""
    blocks: tuple[tuple[bytes, bytes], ...] = ()
    """(CID, data): the CID computed from the data on receipt."""
    haves: tuple[bytes, ...] = ()
    dont_haves: tuple[bytes, ...] = ()
    pending_bytes: int = 0
    skipped: int = field(default=0, compare=False)
    """Received blocks dropped by :func:`decode` (bad prefix, oversize, unhashable)."""

    @property
    def empty(self) -> bool:
        """Nothing to send."""
        return not (self.wants or self.full or self.blocks or self.haves or self.dont_haves)


def encode(msg: Message, protocol: str = PROTOCOL_120) -> bytes:
    """``msg`` as protobuf bytes for ``protocol`` (see the module docstring)."""
    out = pb.Message()
    v12 = protocol == PROTOCOL_120
    if msg.wants or msg.full:
        wl = out.wantlist
        wl.full = msg.full
        for w in msg.wants:
            if w.want_type is WantType.HAVE and not v12 and not w.cancel:
                continue
            e = wl.entries.add()
            e.block = w.cid
            e.priority = w.priority
            e.cancel = w.cancel
            if v12:
                e.wantType = w.want_type.value
                e.sendDontHave = w.send_dont_have
    for cid, data in msg.blocks:
        if protocol in (PROTOCOL_100, PROTOCOL_LEGACY):
            if cids.parse(cid)[0] == 0:
                out.blocks.append(data)
        else:
            p = out.payload.add()
            p.prefix = cids.prefix(cid)
            p.data = data
    if v12:
        for cid in msg.haves:
            out.blockPresences.add(cid=cid, type=pb.Message.Have)
        for cid in msg.dont_haves:
            out.blockPresences.add(cid=cid, type=pb.Message.DontHave)
        out.pendingBytes = msg.pending_bytes
    return out.SerializeToString()


def decode(data: bytes) -> Message:
    """A received message, checked against our limits; raises :class:`WireError`."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise WireError(f"message of {len(data)} bytes over the {MAX_MESSAGE_SIZE} limit")
    try:
        raw = pb.Message.FromString(data)
    except DecodeError as exc:
        raise WireError(f"not a bitswap message: {exc}") from None
    if len(raw.wantlist.entries) > MAX_WANTLIST_ENTRIES:
        raise WireError(f"{len(raw.wantlist.entries)} want-list entries, limit "
                        f"{MAX_WANTLIST_ENTRIES}")
    wants = []
    for e in raw.wantlist.entries:
        _check_cid(e.block)
        try:
            want_type = WantType(e.wantType)
        except ValueError:
            raise WireError(f"unknown want type {e.wantType}") from None
        wants.append(WantEntry(e.block, want_type, e.priority, e.cancel, e.sendDontHave))
    blocks: list[tuple[bytes, bytes]] = []
    skipped = 0
    for blob in raw.blocks:
        if len(blob) > MAX_BLOCK_SIZE:
            skipped += 1
            continue
        blocks.append((cids.make(blob, cids.DAG_PB, version=0), blob))
    for p in raw.payload:
        if len(p.data) > MAX_BLOCK_SIZE:
            skipped += 1
            continue
        try:
            blocks.append((cids.from_prefix(p.prefix, p.data), p.data))
        except cids.InvalidCIDError:
            skipped += 1
    haves: list[bytes] = []
    dont: list[bytes] = []
    for bp in raw.blockPresences:
        _check_cid(bp.cid)
        if bp.type == pb.Message.Have:
            haves.append(bp.cid)
        elif bp.type == pb.Message.DontHave:
            dont.append(bp.cid)
    return Message(
        tuple(wants), raw.wantlist.full, tuple(blocks), tuple(haves), tuple(dont),
        max(raw.pendingBytes, 0), skipped,
    )


def _check_cid(cid: bytes) -> None:
    try:
        cids.parse(cid)
    except cids.InvalidCIDError as exc:
        raise WireError(f"bad CID in message: {exc}") from None


def split_blocks(
    blocks: Sequence[tuple[bytes, bytes]], limit: int = MAX_MESSAGE_SIZE - 64 * 1024
) -> list[list[tuple[bytes, bytes]]]:
    """Group blocks into messages that stay under ``limit`` bytes each."""
    out: list[list[tuple[bytes, bytes]]] = []
    size = limit + 1
    for block in blocks:
        n = len(block[1]) + 64
        if size + n > limit:
            out.append([])
            size = 0
        out[-1].append(block)
        size += n
    return out


__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_WANTLIST_ENTRIES",
    "PROTOCOLS",
    "PROTOCOL_100",
    "PROTOCOL_110",
    "PROTOCOL_120",
    "PROTOCOL_LEGACY",
    "Message",
    "WantEntry",
    "WantType",
    "WireError",
    "decode",
    "encode",
    "split_blocks",
]
